//! Releasing parents when their registration is deleted: the host's
//! finalizer comes off every parent of the kind (where the registration
//! served), acting as the registration's identity, so those parents (and
//! their namespaces) can be deleted once no plugin serves them. The plugin
//! is not called: a parent deleted before its registration was finalized
//! by it; one deleted after is released without cleanup.

use super::{ControllerError, FINALIZER, Registration, Shared, finalizer_patch, resolve};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};

impl Shared {
    /// Removes the host's finalizer from every parent `registration` served;
    /// returns how many it released.
    pub async fn release_parents(&self, registration: &Registration) -> Result<usize, ControllerError> {
        let parent = resolve(&self.client, &registration.parent).await?;
        let acting = match &registration.identity {
            Some(identity) => self.acting_as(identity, registration.tenant_namespace.as_deref())?,
            None => self.clone(),
        };
        let api: Api<DynamicObject> = acting.watch_api(&parent);
        let parents = api
            .list_metadata(&ListParams::default())
            .await
            .map_err(ControllerError::Client)?;
        let mut released = 0;
        for object in parents.items {
            let finalizers = object.metadata.finalizers.as_deref().unwrap_or_default();
            if !finalizers.iter().any(|f| f == FINALIZER) {
                continue;
            }
            let patch = finalizer_patch(
                finalizers.iter().map(String::as_str),
                FINALIZER,
                false,
                object.metadata.resource_version.as_deref(),
            );
            let name = object.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match &object.metadata.namespace {
                Some(ns) => Api::namespaced_with(acting.client.clone(), ns, &parent.resource),
                None => Api::all_with(acting.client.clone(), &parent.resource),
            };
            match api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => released += 1,
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(e) => return Err(ControllerError::Client(e)),
            }
        }
        Ok(released)
    }
}
