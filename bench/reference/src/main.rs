//! The `trellis-reference` binary: the reference controller of the scale
//! benchmark on the cluster of `KUBECONFIG` (or the pod's). Logs go to
//! stderr, filtered by `TRELLIS_LOG` (default `info`).

use anyhow::Context as _;
use clap::Parser;
use std::net::SocketAddr;

/// A hand-written kube-rs controller for MicroServiceDeploy, running the
/// msdeploy logic natively.
#[derive(Debug, Parser)]
#[command(name = "trellis-reference", version, about)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "TRELLIS_WATCH_NAMESPACE")]
    watch_namespace: Option<String>,
    /// Reconciles running at once (as `trellis run --concurrency`).
    #[arg(long, default_value_t = 16)]
    concurrency: u16,
    /// Address of /metrics and /healthz.
    #[arg(long, default_value = "127.0.0.1:8081")]
    metrics_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("TRELLIS_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let client = kube::Client::try_default()
        .await
        .context("cannot connect to a cluster (set KUBECONFIG or run in a pod)")?;
    let options = trellis_reference::Options {
        namespace: args.watch_namespace,
        concurrency: args.concurrency,
        metrics_addr: args.metrics_addr,
    };
    trellis_reference::run(client, options).await?;
    Ok(())
}
