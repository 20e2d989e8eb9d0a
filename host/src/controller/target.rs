//! [`AdmissionTarget`]: what the admission webhooks need of a running
//! controller: its registration (module, limits, config, scope), its parent
//! kind as served, the caches of its related kinds, and the host's call
//! gate, so admission calls take their turns beside reconciles.

use super::{CallGate, Context, Registration, ServedKind};
use crate::metrics::Metrics;
use std::sync::Arc;

/// A running controller, as the webhooks see it. Cheap to clone.
#[derive(Clone)]
pub struct AdmissionTarget {
    context: Arc<Context>,
}

impl AdmissionTarget {
    pub(super) fn new(context: Arc<Context>) -> Self {
        Self { context }
    }

    /// The registration in force (a swapped module shows at once).
    pub fn registration(&self) -> Arc<Registration> {
        self.context.registration()
    }

    /// The parent kind, as the API serves it.
    pub fn parent(&self) -> &ServedKind {
        &self.context.parent
    }

    /// The cached objects of the related kinds that a parent in
    /// `namespace` sees, as JSON text (what `reconcile` gets).
    pub fn related(&self, namespace: Option<&str>) -> Vec<Arc<str>> {
        super::related::of_namespace(&self.context.related, namespace)
            .iter()
            .map(|r| r.text.clone())
            .collect()
    }

    /// The parents in `namespace` (all of them for a cluster-scoped parent
    /// kind), as JSON text: what `default-related` is handed.
    pub fn parents(&self, namespace: Option<&str>) -> Vec<Arc<str>> {
        let namespaced = self.context.parent.namespaced;
        self.context
            .parents
            .state()
            .iter()
            .filter(|p| !namespaced || p.metadata.namespace.as_deref() == namespace)
            .map(|p| p.text.clone())
            .collect()
    }

    /// A related kind, as the API serves it.
    pub fn related_kind(&self, kind: &crate::runtime::KindRef) -> Option<&ServedKind> {
        self.context.related.iter().map(|(k, _)| k).find(|k| k.kind == *kind)
    }

    /// The host's gate of plugin calls.
    pub fn calls(&self) -> &CallGate {
        &self.context.shared.calls
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.context.shared.metrics
    }
}
