//! The status of registration objects (`ClusterReconcilerPlugin`,
//! `ReconcilerPlugin`): `Ready` with a reason, the digest, plugin and OCI
//! artifact that serve. Written by server-side apply on the status
//! subresource, and only when it changed, so a steady state makes no writes.
//! Folder plugins have no object: why one is not served is logged, once
//! per change.

use super::declared::{Declaration, Refusal};
use super::{REGISTRATION_FINALIZER, Registry};
use crate::controller::KindController;
use crate::crd::{ReconcilerPlugin, ReconcilerPluginStatus, RegistrationCondition};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::collections::BTreeMap;

/// Field manager of the host's writes to registration status.
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
    /// The OCI artifact of the serving module, pinned by digest.
    pub artifact: Option<String>,
}

/// The status `object` should have, keeping the transition time of an
/// unchanged condition.
pub fn desired_status(object: &Declaration, readiness: &Readiness, now: &str) -> ReconcilerPluginStatus {
    let generation = object.generation;
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
        artifact: readiness.artifact.clone(),
        observed_generation: generation,
    }
}

/// Writes the status if it differs from what the object has; returns
/// whether the `Ready` condition changed (worth an event). `api` is the
/// object's kind (in its namespace, for a `ReconcilerPlugin`).
pub async fn write_status<K>(api: &Api<K>, object: &Declaration, readiness: &Readiness) -> bool
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let name = object.object_ref.name.clone().unwrap_or_default();
    let wanted = desired_status(object, readiness, &crate::status::now());
    if object.status.as_ref() == Some(&wanted) {
        return false;
    }
    let condition_changed = object
        .status
        .as_ref()
        .and_then(|s| s.conditions.first())
        .is_none_or(|c| {
            c.status != wanted.conditions[0].status
                || c.reason != wanted.conditions[0].reason
                || c.message != wanted.conditions[0].message
        });
    let patch = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": wanted,
    });
    match api
        .patch_status(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
        .await
    {
        Ok(_) => {
            tracing::info!(registration = %object.key, ready = readiness.ready, reason = %readiness.reason, "registration status written");
            condition_changed
        }
        Err(e) => {
            tracing::warn!(registration = %object.key, error = %e, "could not write the registration status");
            false
        }
    }
}

/// An event on the registration: Warning with the reason when it is not
/// ready, Normal when it serves.
pub async fn publish_event(recorder: &Recorder, object: &Declaration, readiness: &Readiness) {
    let event = Event {
        type_: if readiness.ready {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: readiness.reason.clone(),
        note: Some(readiness.message.chars().take(1000).collect()),
        action: "Register".into(),
        secondary: None,
    };
    if let Err(e) = recorder.publish(&event, &object.object_ref).await {
        tracing::debug!(error = %e, "could not record a registration event");
    }
}

impl Registry {
    /// Logs why folder plugins are not served (refused, or their controller
    /// did not start), once per change: they have no object to say it on.
    pub(super) fn report_folder(&mut self, mut refused: BTreeMap<String, Refusal>) {
        for (source, (reason, message)) in &self.start_errors {
            if source.starts_with("file ") {
                refused.insert(source.clone(), Refusal::new(reason, message.clone()));
            }
        }
        for (source, refusal) in &refused {
            if self.folder_reported.get(source) != Some(refusal) {
                tracing::warn!(plugin = %source, reason = refusal.reason, message = %refusal.message, "plugin not served");
            }
        }
        for source in self.folder_reported.keys() {
            if !refused.contains_key(source) {
                tracing::info!(plugin = %source, "plugin no longer refused");
            }
        }
        self.folder_reported = refused;
    }

    /// Writes each declaration's `Ready` condition where it changed.
    pub(super) async fn report(&self, refused: BTreeMap<String, Refusal>) {
        for declaration in self.declarations() {
            let key = &declaration.key;
            let serving = self
                .running
                .values()
                .map(KindController::registration)
                .find(|r| r.declaration.as_ref() == Some(key));
            let (digest, plugin, artifact) = match &serving {
                Some(r) => (
                    Some(r.plugin.digest().to_owned()),
                    Some(format!("{} {}", r.plugin.info().name, r.plugin.info().version)),
                    r.artifact.clone(),
                ),
                None => (None, None, None),
            };
            let (ready, reason, message) = if let Some(refusal) = refused.get(key) {
                (false, refusal.reason.to_owned(), refusal.message.clone())
            } else if let Some((reason, error)) = self.start_errors.get(key) {
                (false, (*reason).to_owned(), error.clone())
            } else if let Some(registration) = &serving {
                if !declaration.finalizers.iter().any(|f| f == REGISTRATION_FINALIZER)
                    && let Err(e) = self.set_registration_finalizer(declaration, true).await
                {
                    tracing::warn!(registration = %declaration.title, error = %e, "could not add the registry's finalizer");
                }
                let message = format!("reconciling {} with {}", registration.parent, registration.source);
                (true, "Serving".to_owned(), message)
            } else {
                continue;
            };
            let readiness = Readiness {
                ready,
                reason,
                message,
                digest,
                plugin,
                artifact,
            };
            let changed = match &declaration.tenant {
                None => write_status(&self.cluster_declarations, declaration, &readiness).await,
                Some(tenant) => {
                    let api: Api<ReconcilerPlugin> = Api::namespaced(self.shared.client.clone(), &tenant.namespace);
                    write_status(&api, declaration, &readiness).await
                }
            };
            if changed {
                publish_event(&self.recorder, declaration, &readiness).await;
            }
        }
    }
}
