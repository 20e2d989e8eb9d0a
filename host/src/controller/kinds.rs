//! Resolving the kinds a plugin names to API resources through discovery.

use crate::runtime::KindRef;
use kube::Client;
use kube::core::GroupVersionKind;
use kube::discovery::{ApiResource, Scope, pinned_kind};

/// A kind the API server serves.
#[derive(Debug, Clone)]
pub struct ServedKind {
    /// The kind as the plugin names it.
    pub kind: KindRef,
    /// Group, version, plural: how to reach it.
    pub resource: ApiResource,
    /// Whether objects of the kind live in namespaces.
    pub namespaced: bool,
}

/// Discovery failed: the kind is not served (yet), or the API is unreachable.
#[derive(Debug, thiserror::Error)]
#[error("kind {kind} is not served by the API server: {source}")]
pub struct KindError {
    pub kind: KindRef,
    #[source]
    pub source: kube::Error,
}

/// Looks `kind` up.
pub async fn resolve(client: &Client, kind: &KindRef) -> Result<ServedKind, KindError> {
    let gvk = GroupVersionKind::gvk(kind.group(), kind.version(), &kind.kind);
    let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(|source| KindError {
        kind: kind.clone(),
        source,
    })?;
    Ok(ServedKind {
        kind: kind.clone(),
        resource,
        namespaced: capabilities.scope == Scope::Namespaced,
    })
}
