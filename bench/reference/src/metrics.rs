//! Prometheus metrics of the controller: `trellis_reference_reconciles_total`
//! and `trellis_reference_writes_total{write=applied|skipped|pruned|status}`,
//! the counterparts of the host's `trellis_reconciles_total` and
//! `trellis_writes_total`; served on `/metrics` beside `/healthz`.

use crate::write::Writes;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabel {
    /// `applied`, `skipped` (unchanged), `pruned` or `status`.
    write: String,
}

/// The controller's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Counter,
    writes: Family<WriteLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trellis_reference");
        let reconciles = Counter::default();
        let writes = Family::<WriteLabel, Counter>::default();
        registry.register("reconciles", "Reconciles run", reconciles.clone());
        registry.register(
            "writes",
            "Child and status writes, and the ones skipped as unchanged",
            writes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            reconciles,
            writes,
        }
    }

    /// Counts one reconcile.
    pub fn reconciled(&self) {
        self.reconciles.inc();
    }

    /// Counts one reconcile's writes.
    pub fn wrote(&self, writes: &Writes, status: bool) {
        for (write, n) in [
            ("applied", writes.applied),
            ("skipped", writes.skipped),
            ("pruned", writes.pruned),
            ("status", u64::from(status)),
        ] {
            if n > 0 {
                self.writes
                    .get_or_create(&WriteLabel {
                        write: write.to_owned(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Serves `/metrics` and `/healthz` on `listener` for as long as the process runs.
pub async fn serve(listener: tokio::net::TcpListener, metrics: Metrics) {
    let app = Router::new()
        .route(
            "/metrics",
            get(|State(metrics): State<Metrics>| async move { metrics.encode() }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics);
    if let Err(e) = axum::serve(listener, app).await {
        tracing::warn!(error = %e, "the metrics server stopped");
    }
}
