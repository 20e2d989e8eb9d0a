//! A TCP proxy in front of the API server that a test can cut, as a
//! network partition would: once cut, every open connection goes silent
//! (nothing more is forwarded either way) and new ones are accepted but
//! never answered, so a client's requests hang rather than fail fast.

use std::net::SocketAddr;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A running proxy; it stops when dropped.
pub struct CuttableProxy {
    addr: SocketAddr,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl CuttableProxy {
    /// Listens on a free loopback port and forwards to `upstream`.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let addr = listener.local_addr().expect("the proxy's address");
        let (cut, is_cut) = watch::channel(false);
        let task = tokio::spawn(async move {
            // Silent connections are kept here until the proxy stops.
            let mut silent = Vec::new();
            while let Ok((client, _)) = listener.accept().await {
                if *is_cut.borrow() {
                    silent.push(client);
                    continue;
                }
                tokio::spawn(forward(client, upstream, is_cut.clone()));
            }
        });
        Self { addr, cut, task }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the network: nothing is forwarded from now on.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// `config` with its server URL pointed at this proxy (TLS names the
    /// loopback address, so the API server's certificate still verifies).
    ///
    /// # Panics
    /// If the config's URL cannot take the proxy's port.
    pub fn config_through(&self, mut config: kube::Config) -> kube::Config {
        let url = format!("https://{}", self.addr);
        config.cluster_url = url.parse().expect("the proxy's URL");
        config
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes or the proxy is cut; once cut,
/// the connection is held open and silent until the proxy's runtime ends.
async fn forward(mut client: TcpStream, upstream: SocketAddr, mut is_cut: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {
            let _ = client.shutdown().await;
        }
        _ = async { is_cut.wait_for(|cut| *cut).await.map(|_| ()) } => {
            // Silent from now on: both sockets stay open, nothing moves.
            std::future::pending::<()>().await;
        }
    }
}
