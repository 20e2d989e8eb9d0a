//! Decorations: labels and annotations a plugin keeps on objects it does
//! not own (Metacontroller's decorator). Each parent applies its own by
//! server-side apply under the field manager
//! `trellis/<plugin>/decorate/<parent uid>`, sending only `metadata.labels`
//! and `metadata.annotations` (and the target's uid, so a target that is
//! gone is never created). SSA then removes exactly what that manager set
//! and no longer sends: a decoration dropped from a response, and all of a
//! deleted parent's, are applied empty; a label or annotation someone else
//! owns stays. A `None` value removes the key whoever set it (a merge patch).
//!
//! [`plan`] is pure: from the desired decorations and the caches' view of
//! each target (what the parent's manager owns there) it lists the writes.
//! [`write`] makes them.

use super::index::{CachedObject, DecoratedFields, ObjectIndex, WriteOutcome};
use super::{Context, ServedKind};
use crate::runtime::{Decoration, DecorationTarget};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// The field manager of one parent's decorations.
pub fn manager(plugin: &str, parent_uid: &str) -> String {
    format!("trellis/{plugin}/decorate/{parent_uid}")
}

/// One write to one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecorationWrite {
    /// Server-side apply these (empty: remove all the manager set).
    Apply {
        target: DecorationTarget,
        uid: String,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, String>,
    },
    /// Remove these keys, whoever set them.
    Remove {
        target: DecorationTarget,
        uid: String,
        labels: Vec<String>,
        annotations: Vec<String>,
    },
}

/// What [`plan`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DecorationPlan {
    pub writes: Vec<DecorationWrite>,
    /// Targets already as desired.
    pub unchanged: usize,
    /// Targets not (yet) in the caches: skipped, never created.
    pub absent: Vec<DecorationTarget>,
}

/// A target as the caches show it.
pub struct Seen<'a> {
    pub object: &'a CachedObject,
    /// The keys of its annotations (labels are in `object`).
    pub annotation_keys: &'a BTreeSet<String>,
}

/// The writes that make `desired` true for the parent whose field manager
/// is `manager`: `lookup` finds a target in the caches, `previously` are
/// the objects the manager owns fields on now.
pub fn plan<'a>(
    desired: &[Decoration],
    manager: &str,
    lookup: &dyn Fn(&DecorationTarget) -> Option<Seen<'a>>,
    previously: &[(DecorationTarget, &'a CachedObject)],
) -> DecorationPlan {
    let mut plan = DecorationPlan::default();
    for decoration in desired {
        let Some(seen) = lookup(&decoration.target) else {
            plan.absent.push(decoration.target.clone());
            continue;
        };
        let uid = seen.object.uid.clone().unwrap_or_default();
        let labels = decoration.set_labels();
        let annotations = decoration.set_annotations();
        let owned = seen.object.decorated_by(manager);
        let as_desired = owned.is_some_and(|o| o.labels == labels && o.annotations == annotations)
            || (owned.is_none() && labels.is_empty() && annotations.is_empty());
        let removed_labels: Vec<String> = removed(&decoration.labels)
            .filter(|k| seen.object.labels.contains_key(*k))
            .cloned()
            .collect();
        let removed_annotations: Vec<String> = removed(&decoration.annotations)
            .filter(|k| seen.annotation_keys.contains(*k))
            .cloned()
            .collect();
        if as_desired && removed_labels.is_empty() && removed_annotations.is_empty() {
            plan.unchanged += 1;
            continue;
        }
        if !as_desired {
            plan.writes.push(DecorationWrite::Apply {
                target: decoration.target.clone(),
                uid: uid.clone(),
                labels,
                annotations,
            });
        }
        if !removed_labels.is_empty() || !removed_annotations.is_empty() {
            plan.writes.push(DecorationWrite::Remove {
                target: decoration.target.clone(),
                uid,
                labels: removed_labels,
                annotations: removed_annotations,
            });
        }
    }
    let wanted: HashSet<&DecorationTarget> = desired.iter().map(|d| &d.target).collect();
    for (target, object) in previously {
        if wanted.contains(target) || object.decorated_by(manager).is_none() {
            continue;
        }
        plan.writes.push(DecorationWrite::Apply {
            target: target.clone(),
            uid: object.uid.clone().unwrap_or_default(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        });
    }
    plan
}

fn removed(fields: &BTreeMap<String, Option<String>>) -> impl Iterator<Item = &String> {
    fields.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| k)
}

/// Why a decoration was not applied.
#[derive(Debug, thiserror::Error)]
pub enum DecorateError {
    #[error("decorating {target}: {source}")]
    Api {
        target: DecorationTarget,
        source: kube::Error,
    },
    #[error("decoration of {target}: {kind} is not a related kind of this registration", kind = target.kind)]
    NotRelated { target: DecorationTarget },
    #[error(
        "decoration of {target}: outside the parent's namespace {namespace:?}; only a cluster-wide registration may decorate there"
    )]
    OutsideNamespace {
        target: DecorationTarget,
        namespace: String,
    },
}

impl DecorateError {
    /// The reason shown on the parent's `Ready` condition.
    pub fn reason(&self) -> String {
        match self {
            Self::Api {
                source: kube::Error::Api(status),
                ..
            } if !status.reason.is_empty() => format!("Decorate{}", status.reason),
            Self::Api { .. } => "DecorateApiError".to_owned(),
            Self::NotRelated { .. } => "DecorationNotRelated".to_owned(),
            Self::OutsideNamespace { .. } => "DecorationOutsideNamespace".to_owned(),
        }
    }
}

/// The related cache of `target`'s kind, and the target with its namespace
/// as the kind has it (none for a cluster-scoped kind).
fn cache_of<'c>(
    ctx: &'c Context,
    target: &DecorationTarget,
) -> Option<(&'c ServedKind, &'c ObjectIndex, DecorationTarget)> {
    let (served, index) = ctx.related.iter().find(|(k, _)| k.kind == target.kind)?;
    let target = DecorationTarget {
        namespace: target.namespace.clone().filter(|_| served.namespaced),
        ..target.clone()
    };
    Some((served, index, target))
}

/// What the host's decorations did in one reconcile.
#[derive(Debug, Default)]
pub struct Decorated {
    pub written: u64,
    pub unchanged: u64,
    pub absent: u64,
}

/// Checks `desired` against the registration, plans and writes it for the
/// parent `parent_uid` in `parent_namespace`.
pub async fn write(
    ctx: &Context,
    plugin: &str,
    parent_uid: &str,
    parent_namespace: Option<&str>,
    desired: &[Decoration],
) -> Result<Decorated, DecorateError> {
    let tenant = ctx.registration().tenant_namespace.is_some();
    let mut checked = Vec::with_capacity(desired.len());
    for decoration in desired {
        let Some((_, _, target)) = cache_of(ctx, &decoration.target) else {
            return Err(DecorateError::NotRelated {
                target: decoration.target.clone(),
            });
        };
        if tenant && target.namespace.as_deref() != parent_namespace {
            return Err(DecorateError::OutsideNamespace {
                target,
                namespace: parent_namespace.unwrap_or_default().to_owned(),
            });
        }
        checked.push(Decoration {
            target,
            ..decoration.clone()
        });
    }
    let manager = manager(plugin, parent_uid);
    let previously: Vec<(DecorationTarget, Arc<CachedObject>)> = ctx
        .related
        .iter()
        .flat_map(|(served, index)| {
            index.decorated_by(&manager).into_iter().map(move |o| {
                let target = DecorationTarget {
                    kind: served.kind.clone(),
                    namespace: o.namespace.clone(),
                    name: o.name.clone(),
                };
                (target, o)
            })
        })
        .collect();
    // Each target as cached (not being deleted), with its annotation keys
    // when a `None` value may remove one.
    let found: HashMap<&DecorationTarget, (Arc<CachedObject>, BTreeSet<String>)> = checked
        .iter()
        .filter_map(|d| {
            let (_, index, t) = cache_of(ctx, &d.target)?;
            let object = index.object(t.namespace.as_deref(), &t.name).filter(|o| !o.deleting)?;
            let keys = if d.annotations.values().any(Option::is_none) {
                annotation_keys(&object)
            } else {
                BTreeSet::new()
            };
            Some((&d.target, (object, keys)))
        })
        .collect();
    let lookup = |target: &DecorationTarget| {
        found.get(target).map(|(object, annotation_keys)| Seen {
            object,
            annotation_keys,
        })
    };
    let previously_seen: Vec<(DecorationTarget, &CachedObject)> =
        previously.iter().map(|(t, o)| (t.clone(), &**o)).collect();
    let plan = plan(&checked, &manager, &lookup, &previously_seen);
    for target in &plan.absent {
        tracing::debug!(plugin, target = %target, "decoration target not found: skipped");
    }
    let mut done = Decorated {
        unchanged: plan.unchanged as u64,
        absent: plan.absent.len() as u64,
        ..Decorated::default()
    };
    for write in plan.writes {
        if one(ctx, &manager, write).await? {
            done.written += 1;
        }
    }
    Ok(done)
}

/// Removes every decoration of the parent `parent_uid`.
pub async fn remove_all(ctx: &Context, plugin: &str, parent_uid: &str) -> Result<Decorated, DecorateError> {
    write(ctx, plugin, parent_uid, None, &[]).await
}

/// Whether the parent `parent_uid` has decorations the caches know of.
pub fn has_any(ctx: &Context, plugin: &str, parent_uid: &str) -> bool {
    let manager = manager(plugin, parent_uid);
    ctx.related.iter().any(|(_, index)| index.has_decorations_of(&manager))
}

fn annotation_keys(object: &CachedObject) -> BTreeSet<String> {
    object.value()["metadata"]["annotations"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Makes one write; `false` when the target turned out to be gone.
async fn one(ctx: &Context, manager: &str, write: DecorationWrite) -> Result<bool, DecorateError> {
    let target = match &write {
        DecorationWrite::Apply { target, .. } | DecorationWrite::Remove { target, .. } => target.clone(),
    };
    let Some((served, index, _)) = cache_of(ctx, &target) else {
        return Err(DecorateError::NotRelated { target });
    };
    let namespace = target.namespace.as_deref();
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(ctx.shared.client.clone(), ns, &served.resource),
        None => Api::all_with(ctx.shared.client.clone(), &served.resource),
    };
    let (patch, params, noted) = match write {
        DecorationWrite::Apply {
            uid,
            labels,
            annotations,
            ..
        } => {
            let body = json!({
                "apiVersion": target.kind.api_version,
                "kind": target.kind.kind,
                "metadata": {
                    "name": target.name,
                    "namespace": namespace,
                    // A precondition: an object that is gone is not created.
                    "uid": uid,
                    "labels": labels,
                    "annotations": annotations,
                },
            });
            let noted = DecoratedFields {
                manager: manager.to_owned(),
                labels,
                annotations,
            };
            (Patch::Apply(body), PatchParams::apply(manager).force(), Some(noted))
        }
        DecorationWrite::Remove {
            uid,
            labels,
            annotations,
            ..
        } => {
            let nulls = |keys: Vec<String>| keys.into_iter().map(|k| (k, Value::Null)).collect::<Map<_, _>>();
            let body = json!({"metadata": {"uid": uid, "labels": nulls(labels), "annotations": nulls(annotations)}});
            let params = PatchParams {
                field_manager: Some(manager.to_owned()),
                ..PatchParams::default()
            };
            (Patch::Merge(body), params, None)
        }
    };
    if ctx.dry_run_first {
        let dry_run = PatchParams {
            dry_run: true,
            ..params.clone()
        };
        match api.patch_metadata(&target.name, &dry_run, &patch).await {
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(false),
            Err(source) => return Err(DecorateError::Api { target, source }),
            Ok(_) => {}
        }
    }
    index.begin_write(namespace, &target.name);
    let written = api.patch_metadata(&target.name, &params, &patch).await;
    let outcome = match &written {
        Ok(object) => WriteOutcome::Applied(object.metadata.resource_version.clone().unwrap_or_default()),
        Err(_) => WriteOutcome::Failed,
    };
    index.end_write(namespace, &target.name, outcome);
    match written {
        Ok(_) => {
            if let Some(noted) = noted {
                index.note_decorated(namespace, &target.name, noted);
            }
            Ok(true)
        }
        // Gone, or replaced by another object of that name (uid mismatch).
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => Ok(false),
        Err(source) => Err(DecorateError::Api { target, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::KindRef;

    fn pod(name: &str, labels: &[(&str, &str)], decorated: Option<DecoratedFields>) -> CachedObject {
        CachedObject {
            kind: Arc::new(KindRef::new("v1", "Pod")),
            namespace: Some("ns".into()),
            name: name.into(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            decorated: decorated.into_iter().collect(),
            uid: Some(format!("uid-{name}")),
            deleting: false,
            desired_hash: None,
            as_written: false,
            text: Arc::from("{}"),
        }
    }

    fn target(name: &str) -> DecorationTarget {
        DecorationTarget {
            kind: KindRef::new("v1", "Pod"),
            namespace: Some("ns".into()),
            name: name.into(),
        }
    }

    fn scrape(name: &str, port: &str) -> Decoration {
        Decoration {
            target: target(name),
            labels: BTreeMap::new(),
            annotations: BTreeMap::from([
                ("prometheus.io/scrape".to_owned(), Some("true".to_owned())),
                ("prometheus.io/port".to_owned(), Some(port.to_owned())),
            ]),
        }
    }

    fn owned(port: &str) -> DecoratedFields {
        DecoratedFields {
            manager: "m".into(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::from([
                ("prometheus.io/scrape".to_owned(), "true".to_owned()),
                ("prometheus.io/port".to_owned(), port.to_owned()),
            ]),
        }
    }

    #[test]
    fn only_targets_not_as_desired_are_written_and_absent_ones_skipped() {
        let done = pod("done", &[], Some(owned("9400")));
        let stale = pod("stale", &[], Some(owned("9000")));
        let fresh = pod("fresh", &[], None);
        let objects = [&done, &stale, &fresh];
        let none = BTreeSet::new();
        let lookup = |t: &DecorationTarget| {
            objects.iter().find(|o| o.name == t.name).map(|o| Seen {
                object: o,
                annotation_keys: &none,
            })
        };
        let desired = [
            scrape("done", "9400"),
            scrape("stale", "9400"),
            scrape("fresh", "9400"),
            scrape("gone", "9400"),
        ];
        let plan = plan(&desired, "m", &lookup, &[]);
        assert_eq!(plan.unchanged, 1);
        assert_eq!(plan.absent, vec![target("gone")]);
        let written: Vec<&str> = plan
            .writes
            .iter()
            .map(|w| match w {
                DecorationWrite::Apply { target, .. } => target.name.as_str(),
                DecorationWrite::Remove { .. } => panic!("nothing to remove"),
            })
            .collect();
        assert_eq!(written, ["stale", "fresh"]);
    }

    #[test]
    fn a_dropped_target_is_applied_empty_and_one_never_decorated_is_left_alone() {
        let left = pod("left", &[("app", "x")], Some(owned("9400")));
        let other_manager = pod("foreign", &[], None);
        let plan = plan(
            &[],
            "m",
            &|_| None,
            &[(target("left"), &left), (target("foreign"), &other_manager)],
        );
        assert_eq!(
            plan.writes,
            vec![DecorationWrite::Apply {
                target: target("left"),
                uid: "uid-left".into(),
                labels: BTreeMap::new(),
                annotations: BTreeMap::new(),
            }]
        );
    }

    #[test]
    fn a_none_value_removes_the_key_only_when_present() {
        let object = pod("p", &[("legacy", "1")], None);
        let keys = BTreeSet::from(["old".to_owned()]);
        let lookup = |_: &DecorationTarget| {
            Some(Seen {
                object: &object,
                annotation_keys: &keys,
            })
        };
        let decoration = Decoration {
            target: target("p"),
            labels: BTreeMap::from([("legacy".to_owned(), None), ("absent".to_owned(), None)]),
            annotations: BTreeMap::from([("old".to_owned(), None)]),
        };
        let plan = plan(&[decoration], "m", &lookup, &[]);
        assert_eq!(
            plan.writes,
            vec![DecorationWrite::Remove {
                target: target("p"),
                uid: "uid-p".into(),
                labels: vec!["legacy".into()],
                annotations: vec!["old".into()],
            }]
        );
    }
}
