//! One reconcile of one parent: its children from the index, the plugin
//! called natively, then the writes; a failure turns `Ready` to `False`.

use crate::write::{self, Owner, WriteError};
use crate::{Context, Plugin, status};
use kube::api::DynamicObject;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use trellis_sdk::{Reconciler, Request};

/// Why a reconcile failed; the controller retries with per-parent backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("the plugin failed: {0}")]
    Plugin(trellis_sdk::Error),
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("the parent has no name or uid")]
    NoIdentity,
}

impl ReconcileError {
    /// The reason shown on the parent's `Ready` condition.
    fn reason(&self) -> String {
        match self {
            Self::Plugin(trellis_sdk::Error::InvalidSpec(_)) => "InvalidSpec".to_owned(),
            Self::Plugin(trellis_sdk::Error::Transient(_)) => "PluginTransient".to_owned(),
            Self::Plugin(trellis_sdk::Error::Fatal(_)) => "PluginFatal".to_owned(),
            Self::Write(e) => e.reason(),
            Self::NoIdentity => "NoIdentity".to_owned(),
        }
    }
}

/// Exponential retry delays per parent, reset by a success.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const LONGEST: Duration = Duration::from_secs(300);

    fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("backoff lock");
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        Self::FIRST.saturating_mul(1 << (*n - 1).min(10)).min(Self::LONGEST)
    }

    fn succeeded(&self, key: &str) {
        self.failures.lock().expect("backoff lock").remove(key);
    }
}

fn key(parent: &DynamicObject) -> String {
    format!(
        "{}/{}",
        parent.metadata.namespace.as_deref().unwrap_or_default(),
        parent.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The reconcile function handed to kube-runtime's `Controller`.
pub async fn reconcile(parent: Arc<DynamicObject>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.index.ready().await;
    if let Some(namespaces) = &ctx.namespaces {
        let _ = namespaces.wait_until_ready().await;
    }
    ctx.metrics.reconciled();
    let key = key(&parent);
    let parent_json = ctx.kinds.parent.to_json(&parent);
    match run(&ctx, parent_json.clone()).await {
        Ok(()) => {
            ctx.backoff.succeeded(&key);
            Ok(Action::await_change())
        }
        Err(error) => {
            let reason = error.reason();
            tracing::warn!(object = %key, reason = %reason, error = %error, "reconcile failed");
            let failed = status::failed(&parent_json, &reason, &error.to_string(), &status::now());
            if let Err(e) = write::status(&ctx, &parent_json, failed).await {
                tracing::debug!(object = %key, error = %e, "could not write the failure status");
            }
            match error {
                // A spec error waits for the user to edit the parent.
                ReconcileError::Plugin(trellis_sdk::Error::InvalidSpec(_)) => {
                    ctx.backoff.succeeded(&key);
                    Ok(Action::await_change())
                }
                error => Err(error),
            }
        }
    }
}

async fn run(ctx: &Context, parent: serde_json::Value) -> Result<(), ReconcileError> {
    let owner = Owner::of(&parent).ok_or(ReconcileError::NoIdentity)?;
    let observed = ctx.index.owned_by(&owner.uid);
    let namespace = owner.namespace.as_deref().and_then(|ns| {
        let namespaces = ctx.namespaces.as_ref()?;
        namespaces.get(&ObjectRef::new(ns))
    });
    let mut request = Request::new(parent);
    for child in &observed {
        request = request.with_child(serde_json::Value::clone(child));
    }
    if let Some(namespace) = namespace {
        request = request.with_related(serde_json::to_value(&*namespace).unwrap_or_default());
    }
    let response = <Plugin as Reconciler>::reconcile(&request).map_err(ReconcileError::Plugin)?;

    let writes = write::children(ctx, &owner, &response.children_json(), &observed).await?;
    let status = status::desired(request.parent_json(), &response, &status::now());
    let wrote_status = write::status(ctx, request.parent_json(), status).await?;
    ctx.metrics.wrote(&writes, wrote_status);
    tracing::debug!(object = %owner.name, applied = writes.applied, skipped = writes.skipped, pruned = writes.pruned, status = wrote_status, "reconciled");
    Ok(())
}

/// How long to wait after a failure.
pub fn error_policy(parent: Arc<DynamicObject>, _error: &ReconcileError, ctx: Arc<Context>) -> Action {
    Action::requeue(ctx.backoff.failed(&key(&parent)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The plugin crate linked natively: its WIT exports and imports are
    /// never called, only the Rust trait.
    #[test]
    fn the_plugin_runs_natively() {
        let info = trellis_sdk::glue::info::<Plugin>();
        assert_eq!(info.parent.kind, "MicroServiceDeploy");
        let parent = json!({
            "apiVersion": "custom.ops/v1",
            "kind": "MicroServiceDeploy",
            "metadata": {"name": "ms", "namespace": "ns", "uid": "u-1", "generation": 1},
            "spec": {"image": "registry.example/ms:1", "replicas": 3, "autoscaling": true, "config": "a=1"}
        });
        let related = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}});
        let response = <Plugin as Reconciler>::reconcile(&Request::new(parent.clone()).with_related(related))
            .expect("the sample reconciles");
        let kinds: Vec<String> = response
            .children_json()
            .iter()
            .map(|c| c["kind"].as_str().unwrap_or_default().to_owned())
            .collect();
        for kind in [
            "ServiceAccount",
            "ConfigMap",
            "Deployment",
            "Service",
            "HorizontalPodAutoscaler",
        ] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
        let status = status::desired(&parent, &response, "2026-01-01T00:00:00Z");
        assert_eq!(status["observedGeneration"], 1);
        assert!(
            status["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready"))
        );
    }
}
