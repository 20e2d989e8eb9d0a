//! `trellis run`: connects to the cluster, serves metrics and health, and
//! runs the host until SIGTERM or Ctrl-C.

use crate::host::{HostError, HostOptions, run_host};
use crate::metrics::Metrics;
use crate::server::{self, Readiness};
use std::net::SocketAddr;

/// Settings of `trellis run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// What the host serves.
    pub host: HostOptions,
    /// Address of /metrics, /healthz, /readyz.
    pub metrics_addr: SocketAddr,
}

/// Why the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to a cluster (set KUBECONFIG or run in a pod): {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Host(#[from] HostError),
    #[error("cannot serve on {addr}: {source}")]
    Serve { addr: SocketAddr, source: std::io::Error },
}

/// Runs the host until a shutdown signal.
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    let config = kube::Config::infer().await.map_err(kube::Error::InferConfig)?;
    let client = kube::Client::try_from(config.clone())?;
    let mut host = options.host;
    host.client_config = Some(config);
    let metrics = Metrics::new();
    let ready = Readiness::default();
    let shutdown = shutdown_signal();
    let addr = options.metrics_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Serve { addr, source })?;
    let server = {
        let (metrics, ready) = (metrics.clone(), ready.clone());
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            server::serve(listener, metrics, ready, async move {
                let _ = stop.changed().await;
            })
            .await
            .map_err(|source| RunError::Serve { addr, source })
        })
    };
    run_host(client, host, metrics, ready, shutdown).await?;
    match server.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// A watch channel that flips on SIGTERM or Ctrl-C.
fn shutdown_signal() -> tokio::sync::watch::Receiver<bool> {
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = tx.send(true);
    });
    rx
}
