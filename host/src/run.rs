//! `trellis run`: connects to the cluster, serves metrics and health, and
//! keeps the registry's controllers running until SIGTERM or Ctrl-C.

use crate::controller::Shared;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::runtime::{Limits, Runtime, RuntimeConfig, RuntimeError};
use crate::server::{self, Readiness};
use kube::runtime::events::Reporter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of `trellis run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Folder of drop-in `.wasm` plugins.
    pub plugins_dir: PathBuf,
    /// Address of /metrics, /healthz, /readyz.
    pub metrics_addr: SocketAddr,
    /// Reconciles of one kind at once.
    pub concurrency: u16,
    /// Default limits of plugin calls.
    pub limits: Limits,
    /// How often the plugins folder is read.
    pub poll: Duration,
}

/// Why the host could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot connect to a cluster (set KUBECONFIG or run in a pod): {0}")]
    Client(#[from] kube::Error),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("cannot serve on {addr}: {source}")]
    Serve { addr: SocketAddr, source: std::io::Error },
}

/// Runs the host until a shutdown signal.
pub async fn run(options: RunOptions) -> Result<(), RunError> {
    let client = kube::Client::try_default().await?;
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: u32::from(options.concurrency).saturating_mul(4).max(16),
        ..RuntimeConfig::default()
    })?;
    let metrics = Metrics::new();
    let ready = Readiness::default();
    let shutdown = tokio_util_shutdown();

    let server = {
        let (metrics, ready, addr) = (metrics.clone(), ready.clone(), options.metrics_addr);
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            server::serve(addr, metrics, ready, async move {
                let _ = stop.changed().await;
            })
            .await
            .map_err(|source| RunError::Serve { addr, source })
        })
    };

    let shared = Shared {
        client,
        metrics,
        reporter: Reporter {
            controller: "trellis".into(),
            instance: std::env::var("POD_NAME").ok(),
        },
        concurrency: options.concurrency,
    };
    let mut registry = Registry::new(runtime, shared, &options.plugins_dir, options.limits);
    tracing::info!(plugins_dir = %options.plugins_dir.display(), "trellis host starting");
    let mut tick = tokio::time::interval(options.poll);
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                registry.sync().await;
                ready.set_ready();
            }
            _ = stop.changed() => break,
        }
    }
    tracing::info!("shutting down");
    drop(registry);
    match server.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// A watch channel that flips on SIGTERM or Ctrl-C.
fn tokio_util_shutdown() -> tokio::sync::watch::Receiver<bool> {
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
