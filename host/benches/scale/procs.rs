//! The controller processes under test, and what /proc says about them
//! and the apiserver.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// CPU time and peak memory of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    pub cpu: Duration,
    pub peak_rss_kib: u64,
}

/// The usage of `pid` so far (zero when it is gone).
pub fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ")".
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    let cpu = Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks() as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    Usage { cpu, peak_rss_kib }
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100)
    })
}

/// The workspace's target folder (`CARGO_TARGET_DIR` or `target/`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// A loopback address nobody listens on now, for a controller's /metrics.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().expect("its address")
}

/// The two controllers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controller {
    /// `trellis-reference`: hand-written kube-rs, msdeploy linked natively.
    Reference,
    /// `trellis run` serving `msdeploy.wasm`.
    Trellis,
}

impl Controller {
    pub fn name(self) -> &'static str {
        match self {
            Self::Reference => "reference",
            Self::Trellis => "trellis",
        }
    }

    /// The metric counting its reconciles.
    pub fn reconciles_metric(self) -> &'static str {
        match self {
            Self::Reference => "trellis_reference_reconciles_total",
            Self::Trellis => "trellis_reconciles_total",
        }
    }

    /// The metric counting its writes (label `write`).
    pub fn writes_metric(self) -> &'static str {
        match self {
            Self::Reference => "trellis_reference_writes_total",
            Self::Trellis => "trellis_writes_total",
        }
    }

    fn binary(self) -> PathBuf {
        let (name, package) = match self {
            Self::Reference => ("trellis-reference", "trellis-bench-reference"),
            Self::Trellis => ("trellis", "trellis"),
        };
        let binary = target_dir().join("release").join(name);
        assert!(
            binary.exists(),
            "{} is missing: cargo build --release -p {package}",
            binary.display()
        );
        binary
    }

    /// Starts it on `namespace`, shipped defaults except the metrics address.
    pub fn start(self, kubeconfig: &Path, namespace: &str, metrics: SocketAddr, plugins: &Path) -> Running {
        self.start_with(kubeconfig, namespace, metrics, plugins, &[])
    }

    /// [`Controller::start`] with more arguments (Trellis only).
    pub fn start_with(
        self,
        kubeconfig: &Path,
        namespace: &str,
        metrics: SocketAddr,
        plugins: &Path,
        extra: &[String],
    ) -> Running {
        let mut command = Command::new(self.binary());
        if self == Self::Trellis {
            command.arg("run").arg("--plugins-dir").arg(plugins).args(extra);
        }
        let child = command
            .args(["--watch-namespace", namespace, "--metrics-addr", &metrics.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .env("TRELLIS_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.name()));
        Running {
            controller: self,
            child,
            metrics,
        }
    }
}

/// A controller process.
pub struct Running {
    pub controller: Controller,
    child: Child,
    pub metrics: SocketAddr,
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until it says it is ready (panics if it exits first): the
    /// host's /readyz (its registrations read, controllers started), the
    /// reference's /healthz (its controller runs once it serves).
    pub async fn wait_ready(&mut self) {
        let path = match self.controller {
            Controller::Reference => "/healthz",
            Controller::Trellis => "/readyz",
        };
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited while starting: {status}", self.controller.name());
            }
            if http_get(self.metrics, path).await.is_ok() {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{} is not ready after 60 s",
                self.controller.name()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Its /metrics text (empty when it does not answer).
    pub async fn scrape(&self) -> String {
        http_get(self.metrics, "/metrics").await.unwrap_or_default()
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback; the body.
async fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        return Err(std::io::Error::other(
            head.lines().next().unwrap_or_default().to_owned(),
        ));
    }
    Ok(body.to_owned())
}
