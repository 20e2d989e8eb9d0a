//! The parent cache's object: a parent kept as the JSON text a plugin is
//! handed, plus the identity kube-runtime's `Controller` keys it by.
//!
//! kube-runtime's reflector keeps whatever type the controller runs on. A
//! `DynamicObject` holds the parent as a parsed `serde_json::Value`, which
//! took several times the memory of its text (every map a B-tree node) and
//! was converted again on every reconcile: to a `Value` for the host and to
//! text for the plugin. A [`ParentObject`] is made once per watch event:
//! its text (managedFields dropped, `apiVersion`/`kind` set), the identity
//! fields of its metadata, and a hash of what of it asks for a reconcile.
//! The text goes to the plugin as it is; the host parses it once per
//! reconcile for the few fields it reads.

use super::index;
use crate::runtime::KindRef;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{ApiResource, DynamicObject};
use kube::core::DynamicResourceScope;
use kube::runtime::watcher;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A parent as the cache holds it.
#[derive(Debug, Clone)]
pub struct ParentObject {
    /// Its identity: name, namespace, uid, resourceVersion and generation
    /// (the rest is in `text`).
    pub metadata: ObjectMeta,
    /// A hash of what of it, when it changes, asks for a reconcile (see
    /// [`change_of`]).
    pub change: u64,
    /// The object as JSON (managedFields dropped, apiVersion and kind set).
    pub text: Arc<str>,
}

impl ParentObject {
    /// The cache's copy of `object`, a parent of `kind`.
    pub fn new(object: &DynamicObject, kind: &KindRef) -> Self {
        let meta = &object.metadata;
        Self {
            metadata: ObjectMeta {
                name: meta.name.clone(),
                namespace: meta.namespace.clone(),
                uid: meta.uid.clone(),
                resource_version: meta.resource_version.clone(),
                generation: meta.generation,
                ..ObjectMeta::default()
            },
            change: change_of(meta),
            text: index::object_text(object, kind).into(),
        }
    }

    /// The object parsed.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

/// A watch event of parents as the cache takes it in.
pub fn event(event: watcher::Event<DynamicObject>, kind: &KindRef) -> watcher::Event<ParentObject> {
    use watcher::Event::{Apply, Delete, Init, InitApply, InitDone};
    match event {
        Apply(o) => Apply(ParentObject::new(&o, kind)),
        Delete(o) => Delete(ParentObject::new(&o, kind)),
        InitApply(o) => InitApply(ParentObject::new(&o, kind)),
        Init => Init,
        InitDone => InitDone,
    }
}

/// What of a parent, when it changes, asks for a reconcile: everything but
/// its status (and resourceVersion). The host's own status writes are then
/// no news; a spec change moves `generation`.
fn change_of(meta: &ObjectMeta) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.as_second())
        .hash(&mut hasher);
    if let Some(owners) = &meta.owner_references {
        for owner in owners {
            owner.uid.hash(&mut hasher);
        }
    }
    hasher.finish()
}

impl Resource for ParentObject {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// kube-runtime's `Controller` asks that its objects deserialise; the host
/// makes them from watch events instead ([`event`]), so this reads the kind
/// from the object itself.
impl<'de> Deserialize<'de> for ParentObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let object = DynamicObject::deserialize(deserializer)?;
        let kind = object
            .types
            .as_ref()
            .map(|t| KindRef {
                api_version: t.api_version.clone(),
                kind: t.kind.clone(),
            })
            .unwrap_or_else(|| KindRef {
                api_version: String::new(),
                kind: String::new(),
            });
        Ok(Self::new(&object, &kind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parent(extra: Value) -> DynamicObject {
        let mut object = json!({
            "metadata": {
                "name": "web", "namespace": "team-a", "uid": "u-1", "resourceVersion": "7", "generation": 2,
                "labels": {"app": "web"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}]
            },
            "spec": {"replicas": 3},
            "status": {"observedGeneration": 1}
        });
        for (k, v) in extra.as_object().expect("an object") {
            object[k] = v.clone();
        }
        serde_json::from_value(object).expect("a DynamicObject")
    }

    fn kind() -> KindRef {
        KindRef {
            api_version: "apps.example.com/v1".into(),
            kind: "MicroServiceDeploy".into(),
        }
    }

    #[test]
    fn the_text_is_the_object_with_its_kind_and_without_managed_fields() {
        let cached = ParentObject::new(&parent(json!({})), &kind());
        let value = cached.value();
        assert_eq!(value["apiVersion"], "apps.example.com/v1");
        assert_eq!(value["kind"], "MicroServiceDeploy");
        assert_eq!(value["spec"]["replicas"], 3);
        assert_eq!(value["status"]["observedGeneration"], 1);
        assert_eq!(value["metadata"]["labels"]["app"], "web");
        assert!(value["metadata"].get("managedFields").is_none(), "{value}");
    }

    #[test]
    fn the_metadata_kept_is_the_identity() {
        let cached = ParentObject::new(&parent(json!({})), &kind());
        assert_eq!(cached.metadata.name.as_deref(), Some("web"));
        assert_eq!(cached.metadata.namespace.as_deref(), Some("team-a"));
        assert_eq!(cached.metadata.uid.as_deref(), Some("u-1"));
        assert_eq!(cached.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(cached.metadata.generation, Some(2));
        assert!(cached.metadata.labels.is_none());
        assert!(cached.metadata.managed_fields.is_none());
    }

    #[test]
    fn a_status_change_is_no_news_and_a_spec_or_label_change_is() {
        let base = ParentObject::new(&parent(json!({})), &kind()).change;
        let status = parent(json!({"status": {"observedGeneration": 2}}));
        assert_eq!(ParentObject::new(&status, &kind()).change, base);
        let mut spec = parent(json!({}));
        spec.metadata.generation = Some(3);
        assert_ne!(ParentObject::new(&spec, &kind()).change, base);
        let mut labels = parent(json!({}));
        labels.metadata.labels = Some([("app".to_owned(), "db".to_owned())].into());
        assert_ne!(ParentObject::new(&labels, &kind()).change, base);
    }

    #[test]
    fn it_deserialises_with_the_kind_it_names() {
        let text = json!({
            "apiVersion": "apps.example.com/v1", "kind": "MicroServiceDeploy",
            "metadata": {"name": "web", "uid": "u-1"}, "spec": {}
        })
        .to_string();
        let cached: ParentObject = serde_json::from_str(&text).expect("it deserialises");
        assert_eq!(cached.value()["kind"], "MicroServiceDeploy");
        assert_eq!(cached.metadata.uid.as_deref(), Some("u-1"));
    }
}
