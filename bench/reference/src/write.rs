//! The writes of a reconcile: server-side apply of the desired children
//! that differ from their cached copy, deletion of owned children no longer
//! desired, and the status.

use crate::Context;
use crate::kinds::Kind;
use crate::status::contains;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// The server-side apply field manager of every write.
pub const FIELD_MANAGER: &str = "trellis-reference";
/// The label on every child; the child caches select on it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "trellis-reference");
/// Annotation on every child: a fingerprint of what the plugin asked for,
/// so a desired field that went away is noticed although the cluster's copy
/// still holds every remaining one.
pub const DESIRED_HASH: &str = "reference.trellis.dev/desired-hash";
/// A child the plugin wants created once and never updated
/// (`Response::child_once`).
const CREATE_ONLY: &str = trellis_sdk::CREATE_ONLY;

/// A write the API refused, or a child the controller cannot handle.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("pruning {kind} {name}: {source}")]
    Prune {
        kind: String,
        name: String,
        source: kube::Error,
    },
    #[error("writing status: {0}")]
    Status(kube::Error),
    #[error("the plugin emitted a {api_version} {kind}, not a kind it declared")]
    UnknownKind { api_version: String, kind: String },
}

impl WriteError {
    /// The API's reason (`Invalid`, `Forbidden`, ...) for the `Ready` condition.
    pub fn reason(&self) -> String {
        match self {
            Self::Apply { source, .. } | Self::Prune { source, .. } | Self::Status(source) => match source {
                kube::Error::Api(status) if !status.reason.is_empty() => format!("Apply{}", status.reason),
                _ => "ApplyApiError".to_owned(),
            },
            Self::UnknownKind { .. } => "UnknownChildKind".to_owned(),
        }
    }
}

/// The parent as its children point at it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub name: String,
    pub namespace: Option<String>,
    pub uid: String,
}

impl Owner {
    /// The owner of a parent's JSON; `None` without name or uid.
    pub fn of(parent: &Value) -> Option<Self> {
        Some(Self {
            name: parent["metadata"]["name"].as_str()?.to_owned(),
            namespace: parent["metadata"]["namespace"].as_str().map(str::to_owned),
            uid: parent["metadata"]["uid"].as_str()?.to_owned(),
        })
    }
}

/// What one reconcile's child writes did.
#[derive(Debug, Default)]
pub struct Writes {
    pub applied: u64,
    pub skipped: u64,
    pub pruned: u64,
}

fn api(ctx: &Context, kind: &Kind, namespace: Option<&str>) -> Api<DynamicObject> {
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(ctx.client.clone(), ns, &kind.resource),
        _ => Api::all_with(ctx.client.clone(), &kind.resource),
    }
}

/// The object to apply: the plugin's child with the label, the fingerprint
/// and the controller ownerReference.
pub fn prepare(child: &Value, parent: &Kind, owner: &Owner) -> Value {
    let hash = format!("{:016x}", fnv1a(child.to_string().as_bytes()));
    let mut object = child.clone();
    let metadata = &mut object["metadata"];
    metadata["labels"][MANAGED_BY.0] = json!(MANAGED_BY.1);
    metadata["annotations"][DESIRED_HASH] = json!(hash);
    metadata["ownerReferences"] = json!([{
        "apiVersion": parent.api_version,
        "kind": parent.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    object
}

/// Applies every desired child that differs from its cached copy, then
/// deletes the owned children no longer desired.
pub(crate) async fn children(
    ctx: &Context,
    owner: &Owner,
    desired: &[Value],
    observed: &[Arc<Value>],
) -> Result<Writes, WriteError> {
    let mut writes = Writes::default();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut wanted = HashSet::new();
    let mut applies = Vec::new();
    for child in desired {
        let kind = ctx.kinds.child_kind(child).ok_or_else(|| WriteError::UnknownKind {
            api_version: child["apiVersion"].as_str().unwrap_or_default().to_owned(),
            kind: child["kind"].as_str().unwrap_or_default().to_owned(),
        })?;
        let name = child["metadata"]["name"].as_str().unwrap_or_default().to_owned();
        let prepared = prepare(child, &ctx.kinds.parent, owner);
        let current = observed
            .iter()
            .find(|o| kind.is_kind_of(o) && o["metadata"]["name"] == name.as_str());
        wanted.insert((kind.kind.as_str(), name.clone()));
        if let Some(current) = current
            && (child["metadata"]["annotations"][CREATE_ONLY] == "true"
                || (current["metadata"]["annotations"][DESIRED_HASH]
                    == prepared["metadata"]["annotations"][DESIRED_HASH]
                    && contains(current, &prepared)))
        {
            writes.skipped += 1;
            continue;
        }
        let api = api(ctx, kind, owner.namespace.as_deref());
        let params = &params;
        applies.push(async move {
            api.patch(&name, params, &Patch::Apply(&prepared))
                .await
                .map_err(|source| WriteError::Apply {
                    kind: kind.kind.clone(),
                    name,
                    source,
                })
        });
    }
    for result in futures::future::join_all(applies).await {
        result?;
        writes.applied += 1;
    }

    for stale in observed {
        let Some(kind) = ctx.kinds.child_kind(stale) else {
            continue;
        };
        let name = stale["metadata"]["name"].as_str().unwrap_or_default();
        if wanted.contains(&(kind.kind.as_str(), name.to_owned())) || !stale["metadata"]["deletionTimestamp"].is_null()
        {
            continue;
        }
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: stale["metadata"]["uid"].as_str().map(str::to_owned),
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        match api(ctx, kind, owner.namespace.as_deref()).delete(name, &params).await {
            Ok(_) => writes.pruned += 1,
            // Gone already, or replaced by another object of that name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(source) => {
                return Err(WriteError::Prune {
                    kind: kind.kind.clone(),
                    name: name.to_owned(),
                    source,
                });
            }
        }
    }
    Ok(writes)
}

/// The statuses this process wrote and its parent cache may not show yet:
/// parent uid -> (generation, fingerprint of the status without its
/// transition times). A reconcile on a stale copy of the parent (triggered
/// by a child's event that overtook the parent's own) would otherwise write
/// the same status again.
#[derive(Default)]
pub struct Written(Mutex<HashMap<String, (Option<i64>, u64)>>);

/// Applies `status` to the parent's status subresource unless the parent
/// shows it already, or this process wrote it for this generation and the
/// cache has not caught up yet. Returns whether it wrote.
pub(crate) async fn status(ctx: &Context, parent: &Value, status: Value) -> Result<bool, WriteError> {
    let uid = parent["metadata"]["uid"].as_str().unwrap_or_default();
    if contains(&parent["status"], &status) {
        ctx.written.0.lock().expect("status lock").remove(uid);
        return Ok(false);
    }
    let generation = parent["metadata"]["generation"].as_i64();
    let mut timeless = status.clone();
    for condition in timeless["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(condition) = condition.as_object_mut() {
            condition.remove("lastTransitionTime");
        }
    }
    let written = (generation, fnv1a(timeless.to_string().as_bytes()));
    if ctx.written.0.lock().expect("status lock").get(uid) == Some(&written) {
        return Ok(false);
    }
    let name = parent["metadata"]["name"].as_str().unwrap_or_default();
    let api = api(ctx, &ctx.kinds.parent, parent["metadata"]["namespace"].as_str());
    let patch = json!({
        "apiVersion": parent["apiVersion"],
        "kind": parent["kind"],
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await
        .map_err(WriteError::Status)?;
    ctx.written
        .0
        .lock()
        .expect("status lock")
        .insert(uid.to_owned(), written);
    Ok(true)
}

/// FNV-1a: a stable fingerprint, the same in every process and release.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_sets_the_label_fingerprint_and_controller_owner() {
        let parent = Kind {
            api_version: "custom.ops/v1".into(),
            kind: "MicroServiceDeploy".into(),
            resource: kube::discovery::ApiResource::erase::<k8s_openapi::api::core::v1::ConfigMap>(&()),
            namespaced: true,
        };
        let owner = Owner {
            name: "p".into(),
            namespace: Some("ns".into()),
            uid: "u-1".into(),
        };
        let child = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
        let prepared = prepare(&child, &parent, &owner);
        assert_eq!(prepared["metadata"]["labels"][MANAGED_BY.0], MANAGED_BY.1);
        assert_eq!(prepared["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(prepared["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            prepare(&child, &parent, &owner)["metadata"]["annotations"][DESIRED_HASH],
            prepared["metadata"]["annotations"][DESIRED_HASH],
            "the fingerprint is stable"
        );
        let other = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        assert_ne!(
            prepare(&other, &parent, &owner)["metadata"]["annotations"][DESIRED_HASH],
            prepared["metadata"]["annotations"][DESIRED_HASH]
        );
    }
}
