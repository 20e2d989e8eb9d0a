//! How desired children become what is applied: ownership labels, the
//! owner reference, a fingerprint of the desired state; and the checks that
//! let an unchanged child be skipped instead of re-applied.

use crate::runtime::KindRef;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Label on every child: the host manages it.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label on every child: the plugin that produced it.
pub const PLUGIN_LABEL: &str = "trellis.dev/plugin";
/// Label on every child: the UID of its parent (for lookups; ownership
/// itself is the owner reference).
pub const PARENT_UID_LABEL: &str = "trellis.dev/parent-uid";
/// Annotation on every child: fingerprint of what the plugin asked for, so
/// a changed desire is noticed even where the cluster's copy still matches.
pub const DESIRED_HASH: &str = "trellis.dev/desired-hash";

/// Annotation a plugin sets on a child the host must create once and never
/// update (`Response::child_once` in the SDK): generated credentials.
pub const CREATE_ONLY: &str = "trellis.dev/create-only";

/// True when the plugin asked for `child` to be created once, never updated.
pub fn is_create_only(child: &Value) -> bool {
    child["metadata"]["annotations"][CREATE_ONLY] == "true"
}

/// The parent as children point at it.
#[derive(Debug, Clone)]
pub struct ParentRef {
    pub kind: KindRef,
    pub name: String,
    pub namespace: Option<String>,
    pub uid: String,
}

impl ParentRef {
    /// The parent of a JSON object; `None` without name or uid.
    pub fn of(parent: &Value) -> Option<Self> {
        Some(Self {
            kind: KindRef::of(parent)?,
            name: parent["metadata"]["name"].as_str()?.to_owned(),
            namespace: parent["metadata"]["namespace"].as_str().map(str::to_owned),
            uid: parent["metadata"]["uid"].as_str()?.to_owned(),
        })
    }
}

/// The object to apply for a desired child: the plugin's fields plus the
/// host's labels, fingerprint annotation and controller owner reference.
pub fn prepare(child: Value, parent: &ParentRef, plugin: &str) -> Value {
    let hash = fingerprint(&child);
    let mut object = child;
    let metadata = &mut object["metadata"];
    for (key, value) in [
        (MANAGED_BY, "trellis"),
        (PLUGIN_LABEL, plugin),
        (PARENT_UID_LABEL, parent.uid.as_str()),
    ] {
        metadata["labels"][key] = json!(value);
    }
    metadata["annotations"][DESIRED_HASH] = json!(hash);
    metadata["ownerReferences"] = json!([{
        "apiVersion": parent.kind.api_version,
        "kind": parent.kind.kind,
        "name": parent.name,
        "uid": parent.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    }]);
    object
}

/// A short, stable fingerprint of a JSON value.
pub fn fingerprint(value: &Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// True when `owner_uid` is the controller owner of `object`: the only
/// objects the host ever updates or deletes on a parent's behalf.
pub fn is_owned_by(object: &Value, owner_uid: &str) -> bool {
    object["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid && r["controller"] == true))
}

/// True when applying `prepared` would change nothing in `observed`: the
/// fingerprint matches (the plugin wants what it wanted last time) and every
/// field the host sets still has its value (nobody edited it by hand).
pub fn is_up_to_date(observed: &Value, prepared: &Value) -> bool {
    observed["metadata"]["annotations"][DESIRED_HASH] == prepared["metadata"]["annotations"][DESIRED_HASH]
        && contains(observed, prepared)
}

/// Whether every field of `desired` is in `observed` with the same value.
/// Lists must match element by element (the server adds defaults inside
/// elements, never elements). Empty maps and lists match absent fields.
pub fn contains(observed: &Value, desired: &Value) -> bool {
    match (observed, desired) {
        (Value::Object(observed), Value::Object(desired)) => {
            desired.iter().all(|(key, want)| match observed.get(key) {
                Some(have) => contains(have, want),
                None => is_empty(want),
            })
        }
        (Value::Array(observed), Value::Array(desired)) => {
            observed.len() == desired.len() && observed.iter().zip(desired).all(|(have, want)| contains(have, want))
        }
        (Value::Null, want) => is_empty(want),
        (have, want) => have == want,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(list) => list.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent() -> ParentRef {
        ParentRef {
            kind: KindRef::new("custom.ops/v1", "MicroServiceDeploy"),
            name: "p".into(),
            namespace: Some("ns".into()),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn prepare_adds_owner_labels_and_fingerprint() {
        let child = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ns"}, "data": {"a": "1"}});
        let prepared = prepare(child, &parent(), "msdeploy");
        assert_eq!(prepared["metadata"]["labels"][PLUGIN_LABEL], "msdeploy");
        assert_eq!(prepared["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert!(is_owned_by(&prepared, "u-1"));
        assert!(!is_owned_by(&prepared, "u-2"));
        assert_eq!(prepared["data"]["a"], "1");
    }

    #[test]
    fn server_defaults_do_not_count_as_drift_but_edits_do() {
        let child = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        let prepared = prepare(child, &parent(), "msdeploy");
        let mut observed = prepared.clone();
        observed["metadata"]["resourceVersion"] = json!("7");
        observed["spec"]["ports"][0]["protocol"] = json!("TCP");
        observed["spec"]["clusterIP"] = json!("10.0.0.1");
        assert!(is_up_to_date(&observed, &prepared));
        observed["spec"]["ports"][0]["port"] = json!(81);
        assert!(!is_up_to_date(&observed, &prepared));
    }

    #[test]
    fn a_changed_desire_is_not_up_to_date_even_if_contained() {
        let before = prepare(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}}),
            &parent(),
            "x",
        );
        let after = prepare(
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}}),
            &parent(),
            "x",
        );
        assert!(
            contains(&before["data"], &after["data"]),
            "the old object still holds every desired field"
        );
        assert!(!is_up_to_date(&before, &after));
    }
}
