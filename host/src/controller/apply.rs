//! The writes of a reconcile: server-side apply of children (skipping the
//! unchanged), pruning of children no longer desired, status, finalizers.

use super::children::{self, ParentRef};
use super::index::{CachedObject, ObjectIndex, WriteOutcome};
use super::{Context, FINALIZER, ServedKind, WrittenStatus};
use crate::runtime::{DesiredChild, KindRef};
use kube::Resource;
use kube::api::{Api, DeleteParams, DynamicObject, PartialObjectMeta, Patch, PatchParams, Preconditions};
use serde_json::{Value, json};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

/// A write the API refused, or a child the host will not touch.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("applying {kind} {name}: {source}")]
    Apply {
        kind: KindRef,
        name: String,
        source: kube::Error,
    },
    #[error("{kind} {name} already exists and is not owned by this {parent}; refusing to take it over")]
    NotOwned {
        kind: KindRef,
        name: String,
        parent: String,
    },
    #[error("pruning {kind} {name}: {source}")]
    Prune {
        kind: KindRef,
        name: String,
        source: kube::Error,
    },
    #[error("writing status: {source}")]
    Status { source: kube::Error },
    #[error("updating finalizers: {source}")]
    Finalizer { source: kube::Error },
    #[error("{kind} is not a kind this plugin may emit")]
    UnknownKind { kind: KindRef },
}

impl ApplyError {
    /// The API's reason (e.g. `Forbidden`, `Invalid`), or ours.
    pub fn reason(&self) -> String {
        let api_reason = |e: &kube::Error| match e {
            kube::Error::Api(status) if !status.reason.is_empty() => status.reason.clone(),
            _ => "ApiError".to_owned(),
        };
        match self {
            Self::Apply { source, .. }
            | Self::Prune { source, .. }
            | Self::Status { source }
            | Self::Finalizer { source } => {
                format!("Apply{}", api_reason(source))
            }
            Self::NotOwned { .. } => "ChildNotOwned".to_owned(),
            Self::UnknownKind { .. } => "UnknownChildKind".to_owned(),
        }
    }
}

/// What the writes of one reconcile did.
#[derive(Debug, Default)]
pub struct Writes {
    pub applied: u64,
    pub skipped: u64,
    pub pruned: u64,
    /// Somebody else changed a child while the host wrote it: reconcile again.
    pub missed_news: bool,
}

/// The `Accept` of a write whose answer only needs the object's metadata:
/// the API server then sends a `PartialObjectMetadata` instead of the
/// whole object.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json";

pub(super) fn api(ctx: &Context, kind: &ServedKind, namespace: Option<&str>) -> Api<DynamicObject> {
    let client = ctx.shared.client.clone();
    match namespace {
        Some(ns) if kind.namespaced => Api::namespaced_with(client, ns, &kind.resource),
        _ => Api::all_with(client, &kind.resource),
    }
}

/// The observed children owned by `parent`.
pub fn observed_children(ctx: &Context, parent: &ParentRef) -> Vec<Arc<CachedObject>> {
    ctx.children
        .iter()
        .flat_map(|child| child.index.owned_by(&parent.uid))
        .collect()
}

/// What the host knows of a desired child before writing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Known {
    /// Cached as this parent's child (or written by the host for it a
    /// moment ago, its watch event still on the way).
    Ours,
    /// No object of that name is known: it is created.
    Absent,
    /// An object of that name exists that is not cached as ours: read it
    /// before deciding (it may be ours with its label removed by hand).
    Unknown,
}

/// What applying one child did.
enum Applied {
    /// Written; `missed_news` when a change by somebody else came while
    /// the write was under way (its trigger was held back).
    Written { missed_news: bool },
    /// Left alone: create-only and already there.
    LeftAlone,
}

/// A child to apply.
struct Pending<'a> {
    api: Api<DynamicObject>,
    index: &'a ObjectIndex,
    kind: KindRef,
    name: String,
    prepared: Value,
    create_only: bool,
    known: Known,
}

impl Pending<'_> {
    /// Applies the child, or leaves it alone (create-only and already there).
    async fn apply(self, params: &PatchParams, parent: &ParentRef) -> Result<Applied, ApplyError> {
        let Self {
            api,
            index,
            kind,
            name,
            prepared,
            create_only,
            known,
        } = self;
        if known == Known::Unknown {
            // Make sure we are not taking over an object somebody else owns.
            let existing = api.get_opt(&name).await.map_err(|source| ApplyError::Apply {
                kind: kind.clone(),
                name: name.clone(),
                source,
            })?;
            if let Some(existing) = existing {
                let existing = serde_json::to_value(&existing).unwrap_or(Value::Null);
                if !children::is_owned_by(&existing, &parent.uid) {
                    return Err(ApplyError::NotOwned {
                        kind,
                        name,
                        parent: parent.kind.kind.clone(),
                    });
                }
                if create_only {
                    // Ours already, not in the cache: leave it.
                    return Ok(Applied::LeftAlone);
                }
            }
        }
        if create_only && known == Known::Ours {
            return Ok(Applied::LeftAlone);
        }
        let namespace = parent.namespace.as_deref();
        index.begin_write(namespace, &name);
        // Only the metadata comes back (the resourceVersion is all that is read).
        let applied = api.patch_metadata(&name, params, &Patch::Apply(&prepared)).await;
        let outcome = match &applied {
            Ok(object) => WriteOutcome::Applied(object.metadata.resource_version.clone().unwrap_or_default()),
            Err(_) => WriteOutcome::Failed,
        };
        let missed_news = index.end_write(namespace, &name, outcome);
        applied.map_err(|source| ApplyError::Apply { kind, name, source })?;
        Ok(Applied::Written { missed_news })
    }
}

/// Applies every desired child that differs from what is observed, then
/// deletes owned children that are no longer desired.
pub async fn children(
    ctx: &Context,
    field_manager: &str,
    plugin: &str,
    parent: &ParentRef,
    desired: Vec<DesiredChild>,
    observed: &[Arc<CachedObject>],
) -> Result<Writes, ApplyError> {
    let mut writes = Writes::default();
    let params = &PatchParams::apply(field_manager).force();
    let mut wanted = HashSet::new();
    let mut pending = Vec::new();
    for DesiredChild { kind, name, body } in desired {
        let child_kind = ctx
            .child_kind(&kind)
            .ok_or_else(|| ApplyError::UnknownKind { kind: kind.clone() })?;
        let index = &child_kind.index;
        wanted.insert((kind.clone(), name.clone()));
        let create_only = children::is_create_only(&body);
        let prepared = children::prepare(body, parent, plugin);
        let current = observed.iter().find(|o| o.name == name && *o.kind == kind);
        if let Some(current) = current
            && (create_only || is_up_to_date(current, &prepared))
        {
            writes.skipped += 1;
            continue;
        }
        let namespace = parent.namespace.as_deref();
        let known = if current.is_some() || index.was_written(namespace, &name) {
            Known::Ours
        } else {
            match index.key_of(namespace, &name) {
                // Its watch event came after the observed children were read.
                Some(Some(owner)) if owner == parent.uid => Known::Ours,
                // Cached as another parent's child, or claiming the plugin's
                // label without being owned: never ours to write.
                Some(_) => {
                    return Err(ApplyError::NotOwned {
                        kind,
                        name,
                        parent: parent.kind.kind.clone(),
                    });
                }
                // Nobody else has the name (once the names are known).
                None if child_kind.foreign.is_ready() && !child_kind.foreign.contains(namespace, &name) => {
                    Known::Absent
                }
                None => Known::Unknown,
            }
        };
        pending.push(Pending {
            api: api(ctx, &child_kind.served, namespace),
            index,
            kind,
            name,
            prepared,
            create_only,
            known,
        });
    }
    if ctx.dry_run_first {
        let dry_run = &PatchParams::apply(field_manager).force().dry_run();
        let checks = pending.iter().map(|p| async move {
            p.api
                .patch_metadata(&p.name, dry_run, &Patch::Apply(&p.prepared))
                .await
                .map_err(|source| ApplyError::Apply {
                    kind: p.kind.clone(),
                    name: p.name.clone(),
                    source,
                })
        });
        for result in futures::future::join_all(checks).await {
            result?;
        }
    }
    let applies = pending.into_iter().map(|p| p.apply(params, parent));
    for result in futures::future::join_all(applies).await {
        match result? {
            Applied::Written { missed_news } => {
                writes.applied += 1;
                writes.missed_news |= missed_news;
            }
            Applied::LeftAlone => writes.skipped += 1,
        }
    }

    for stale in observed {
        let (kind, name) = ((*stale.kind).clone(), stale.name.clone());
        if wanted.contains(&(kind.clone(), name.clone())) || stale.deleting {
            continue;
        }
        let Some(child_kind) = ctx.child_kind(&kind) else {
            continue;
        };
        let uid = stale.uid.clone();
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::background()
        };
        let namespace = parent.namespace.as_deref();
        child_kind.index.begin_write(namespace, &name);
        let deleted = api(ctx, &child_kind.served, namespace).delete(&name, &params).await;
        let outcome = match &deleted {
            Ok(_) => WriteOutcome::Deleted,
            Err(_) => WriteOutcome::Failed,
        };
        writes.missed_news |= child_kind.index.end_write(namespace, &name, outcome);
        match deleted {
            Ok(_) => writes.pruned += 1,
            // Already gone, or replaced by another object of that name.
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(source) => return Err(ApplyError::Prune { kind, name, source }),
        }
    }
    Ok(writes)
}

/// True when applying `prepared` would change nothing in `observed`. The
/// host's own write, unchanged since, holds what was applied: only the
/// fingerprint needs comparing; otherwise every field the host sets.
fn is_up_to_date(observed: &CachedObject, prepared: &Value) -> bool {
    let wanted_hash = prepared["metadata"]["annotations"][children::DESIRED_HASH].as_str();
    if observed.as_written {
        return observed.desired_hash.as_deref() == wanted_hash;
    }
    children::is_up_to_date(&observed.value(), prepared)
}

/// The parent as a reconcile should see it: when the host wrote its status
/// since the cached copy was made, with that status (the watch event of
/// the write is still on the way).
pub fn with_written_status<'a>(ctx: &Context, parent: &'a Value) -> Cow<'a, Value> {
    let Some((uid, version)) = uid_and_version(parent) else {
        return Cow::Borrowed(parent);
    };
    let mut written = ctx.written_status.lock().expect("status lock");
    match written.get(uid) {
        Some(w) if w.based_on == version => {
            let mut parent = parent.clone();
            parent["status"] = serde_json::from_str(&w.status).unwrap_or(Value::Null);
            Cow::Owned(parent)
        }
        Some(_) => {
            // The cache has moved past the write.
            written.remove(uid);
            Cow::Borrowed(parent)
        }
        None => Cow::Borrowed(parent),
    }
}

/// Applies `status` to the parent's status subresource unless the parent
/// already shows it. Returns whether it wrote.
pub async fn status(ctx: &Context, field_manager: &str, parent: &Value, status: Value) -> Result<bool, ApplyError> {
    if children::contains(&parent["status"], &status) {
        return Ok(false);
    }
    let name = parent["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = parent["metadata"]["namespace"]
        .as_str()
        .filter(|_| ctx.parent.namespaced);
    let patch = json!({
        "apiVersion": parent["apiVersion"],
        "kind": parent["kind"],
        "metadata": {"name": name},
        "status": status,
    });
    let params = PatchParams::apply(field_manager).force();
    let mut request = kube::core::Request::new(DynamicObject::url_path(&ctx.parent.resource, namespace))
        .patch_subresource("status", name, &params, &Patch::Apply(&patch))
        .map_err(|e| ApplyError::Status {
            source: kube::Error::BuildRequest(e),
        })?;
    // Only the metadata comes back: nothing of the answer is read.
    request
        .headers_mut()
        .insert(http::header::ACCEPT, http::HeaderValue::from_static(METADATA_ONLY));
    ctx.shared
        .client
        .request::<PartialObjectMeta<DynamicObject>>(request)
        .await
        .map_err(|source| ApplyError::Status { source })?;
    if let Some((uid, version)) = uid_and_version(parent) {
        let written = WrittenStatus {
            based_on: version.to_owned(),
            status: patch["status"].to_string(),
        };
        ctx.written_status
            .lock()
            .expect("status lock")
            .insert(uid.to_owned(), written);
    }
    Ok(true)
}

fn uid_and_version(parent: &Value) -> Option<(&str, &str)> {
    let metadata = &parent["metadata"];
    Some((metadata["uid"].as_str()?, metadata["resourceVersion"].as_str()?))
}

/// Adds or removes the host's finalizer, guarded by the resourceVersion.
pub async fn set_finalizer(ctx: &Context, parent: &Value, present: bool) -> Result<(), ApplyError> {
    let finalizers = parent["metadata"]["finalizers"].as_array().into_iter().flatten();
    let patch = finalizer_patch(
        finalizers.filter_map(Value::as_str),
        FINALIZER,
        present,
        parent["metadata"]["resourceVersion"].as_str(),
    );
    let name = parent["metadata"]["name"].as_str().unwrap_or_default();
    let api = api(ctx, &ctx.parent, parent["metadata"]["namespace"].as_str());
    match api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 && !present => Ok(()),
        Err(source) => Err(ApplyError::Finalizer { source }),
    }
}

/// A merge patch leaving an object's `finalizers` with `finalizer` (when
/// `present`) or without it, the others kept, guarded by `resource_version`
/// so that a concurrent change of the list is not overwritten.
pub fn finalizer_patch<'a>(
    finalizers: impl IntoIterator<Item = &'a str>,
    finalizer: &str,
    present: bool,
    resource_version: Option<&str>,
) -> Value {
    let mut kept: Vec<&str> = finalizers.into_iter().filter(|f| *f != finalizer).collect();
    if present {
        kept.push(finalizer);
    }
    json!({"metadata": {"finalizers": kept, "resourceVersion": resource_version}})
}
