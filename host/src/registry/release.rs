//! Deleting a registration object: the parents it served are released
//! (the host's finalizer comes off them, without calling the plugin), then
//! the registry's own finalizer, [`REGISTRATION_FINALIZER`], comes off the
//! object, which adds it back on an object that serves.

use super::declared::{Declaration, Refusal};
use super::{REGISTRATION_FINALIZER, Registry};
use crate::crd::ReconcilerPlugin;
use kube::Api;
use std::collections::BTreeMap;

impl Registry {
    /// For each registration object being deleted: once its controller has
    /// stopped, releases the parents it served (the host's finalizer comes
    /// off them) and then lets the object go (the registry's own finalizer
    /// comes off it). What fails is shown on the object and retried.
    pub(super) async fn release_deleted(&mut self, refused: &mut BTreeMap<String, Refusal>) {
        let deleting: Vec<Declaration> = self
            .declarations()
            .filter(|d| d.deleting && d.finalizers.iter().any(|f| f == REGISTRATION_FINALIZER))
            .cloned()
            .collect();
        for declaration in deleting {
            // What it served: as it last served here, else (after a restart)
            // as it would serve.
            let registration = match self.last_good.get(&declaration.key) {
                Some(registration) => Some(registration.clone()),
                None => {
                    let mut serving = declaration.clone();
                    serving.deleting = false;
                    let registration = self.registration_of(&serving, &mut BTreeMap::new());
                    self.last_good.remove(&declaration.key);
                    if registration.is_none() {
                        tracing::warn!(registration = %declaration.title, "registration deleted, its module unknown here: parents of its kind not released");
                    }
                    registration
                }
            };
            if let Some(registration) = &registration {
                match self.shared.release_parents(registration).await {
                    Ok(released) => {
                        tracing::info!(registration = %declaration.title, released, "registration deleted: its parents released");
                    }
                    Err(e) => {
                        let message = format!("releasing the parents of {}: {e}", registration.parent);
                        refused.insert(declaration.key.clone(), Refusal::new("ReleasingParents", message));
                        continue;
                    }
                }
            }
            if let Err(e) = self.set_registration_finalizer(&declaration, false).await {
                tracing::warn!(registration = %declaration.title, error = %e, "could not remove the registry's finalizer");
                continue;
            }
            self.last_good.remove(&declaration.key);
        }
    }

    /// Adds or removes [`REGISTRATION_FINALIZER`] on a registration object.
    pub(super) async fn set_registration_finalizer(
        &self,
        declaration: &Declaration,
        present: bool,
    ) -> Result<(), kube::Error> {
        let patch = crate::controller::finalizer_patch(
            declaration.finalizers.iter().map(String::as_str),
            REGISTRATION_FINALIZER,
            present,
            declaration.resource_version.as_deref(),
        );
        let params = kube::api::PatchParams::default();
        let name = declaration.object_ref.name.clone().unwrap_or_default();
        let result = match &declaration.tenant {
            None => self
                .cluster_declarations
                .patch(&name, &params, &kube::api::Patch::Merge(&patch))
                .await
                .map(drop),
            Some(tenant) => Api::<ReconcilerPlugin>::namespaced(self.shared.client.clone(), &tenant.namespace)
                .patch(&name, &params, &kube::api::Patch::Merge(&patch))
                .await
                .map(drop),
        };
        match result {
            Err(kube::Error::Api(status)) if status.code == 404 && !present => Ok(()),
            other => other,
        }
    }
}
