//! The status of `ReconcilerPlugin` objects: `Ready` with a reason, the
//! digest and plugin that serve. Written by server-side apply on the status
//! subresource, and only when it changed, so a steady state makes no writes.

use crate::crd::{ReconcilerPlugin, ReconcilerPluginStatus, RegistrationCondition};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;

/// Field manager of the host's writes to `ReconcilerPlugin` status.
const MANAGER: &str = "trellis";

/// What a registration's `Ready` condition should say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    pub reason: String,
    pub message: String,
    /// `sha256` of the serving module.
    pub digest: Option<String>,
    /// `name version` of the serving plugin.
    pub plugin: Option<String>,
}

/// The status `object` should have, keeping the transition time of an
/// unchanged condition.
pub fn desired_status(object: &ReconcilerPlugin, readiness: &Readiness, now: &str) -> ReconcilerPluginStatus {
    let generation = object.metadata.generation;
    let status = if readiness.ready { "True" } else { "False" };
    let previous = object
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
    let last_transition_time = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => now.to_owned(),
    };
    ReconcilerPluginStatus {
        conditions: vec![RegistrationCondition {
            type_: "Ready".into(),
            status: status.into(),
            reason: readiness.reason.clone(),
            message: readiness.message.clone(),
            last_transition_time,
            observed_generation: generation,
        }],
        digest: readiness.digest.clone(),
        plugin: readiness.plugin.clone(),
        observed_generation: generation,
    }
}

/// Writes the status if it differs from what the object has.
pub async fn write_status(api: &Api<ReconcilerPlugin>, object: &ReconcilerPlugin, readiness: &Readiness) {
    let name = object.metadata.name.clone().unwrap_or_default();
    let wanted = desired_status(object, readiness, &crate::status::now());
    if object.status.as_ref() == Some(&wanted) {
        return;
    }
    let patch = json!({
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "ReconcilerPlugin",
        "status": wanted,
    });
    match api
        .patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(registration = %name, ready = readiness.ready, reason = %readiness.reason, "registration status written")
        }
        Err(e) => tracing::warn!(registration = %name, error = %e, "could not write the registration status"),
    }
}
