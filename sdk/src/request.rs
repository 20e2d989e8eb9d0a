//! [`Request`]: typed access to the parent, its observed children, related
//! objects and the registration's config.

use crate::Error;
use crate::bindings::trellis::reconciler::types;
use crate::objects::{self, meta_str, named, of_kind};
use k8s_openapi::Resource;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;

/// The input of one reconcile, parsed once.
#[derive(Debug, Clone)]
pub struct Request {
    parent: Value,
    children: Vec<Value>,
    related: Vec<Value>,
    config: Option<Value>,
    finalizing: bool,
}

impl Request {
    pub(crate) fn from_wit(req: types::Request) -> Result<Self, Error> {
        let parse = |what: &str, text: &str| objects::parse(what, text).map_err(Error::fatal);
        Ok(Self {
            parent: parse("parent", &req.parent)?,
            children: req
                .children
                .iter()
                .map(|c| parse("child", c))
                .collect::<Result<_, _>>()?,
            related: req
                .related
                .iter()
                .map(|r| parse("related", r))
                .collect::<Result<_, _>>()?,
            config: req.config.as_deref().map(|c| parse("config", c)).transpose()?,
            finalizing: req.finalizing,
        })
    }

    /// Builds a request by hand, for unit tests of a plugin.
    pub fn new(parent: Value) -> Self {
        Self {
            parent,
            children: Vec::new(),
            related: Vec::new(),
            config: None,
            finalizing: false,
        }
    }

    /// Adds an observed child (for unit tests of a plugin).
    pub fn with_child(mut self, child: Value) -> Self {
        self.children.push(child);
        self
    }

    /// Adds a related object (for unit tests of a plugin).
    pub fn with_related(mut self, related: Value) -> Self {
        self.related.push(related);
        self
    }

    /// Sets the registration's config (for unit tests of a plugin).
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// The parent as JSON.
    pub fn parent_json(&self) -> &Value {
        &self.parent
    }

    /// The parent deserialised into the plugin's own type. A parent that
    /// does not fit is an [`Error::InvalidSpec`] naming the field.
    pub fn parent<T: DeserializeOwned>(&self) -> Result<T, Error> {
        T::deserialize(&self.parent).map_err(Error::from)
    }

    /// The parent's name.
    pub fn name(&self) -> &str {
        meta_str(&self.parent, "name")
    }

    /// The parent's namespace (empty for a cluster-scoped parent).
    pub fn namespace(&self) -> &str {
        meta_str(&self.parent, "namespace")
    }

    /// Metadata for a child called `name`, in the parent's namespace. The
    /// host adds the owner reference and ownership labels itself.
    pub fn child_meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace().to_owned()).filter(|ns| !ns.is_empty()),
            ..ObjectMeta::default()
        }
    }

    /// Metadata for a child called `name` carrying `labels`.
    pub fn child_meta_labeled(&self, name: &str, labels: &BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            labels: Some(labels.clone()),
            ..self.child_meta(name)
        }
    }

    /// The recommended `app.kubernetes.io/*` labels for the children of
    /// this parent: `name` is the application (e.g. `etcd`), `instance` the
    /// parent's name, `component` the child's role.
    pub fn app_labels(&self, app: &str, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_owned(), app.to_owned()),
            ("app.kubernetes.io/instance".to_owned(), self.name().to_owned()),
            ("app.kubernetes.io/component".to_owned(), component.to_owned()),
        ])
    }

    /// All observed children as JSON.
    pub fn children_json(&self) -> &[Value] {
        &self.children
    }

    /// The observed children of type `K`. Objects that do not deserialise
    /// are skipped (they are the host's view of the cluster, not input the
    /// plugin has to judge).
    pub fn children<K: Resource + DeserializeOwned>(&self) -> Vec<K> {
        of_kind(&self.children)
    }

    /// The observed child of type `K` called `name`, if any.
    pub fn child<K: Resource + DeserializeOwned>(&self, name: &str) -> Option<K> {
        named(&self.children, K::API_VERSION, K::KIND, name).and_then(|v| K::deserialize(v).ok())
    }

    /// All related objects as JSON.
    pub fn related_json(&self) -> &[Value] {
        &self.related
    }

    /// The related objects of type `K` (those that do not deserialise are
    /// skipped).
    pub fn related<K: Resource + DeserializeOwned>(&self) -> Vec<K> {
        of_kind(&self.related)
    }

    /// The related objects of a kind given by name (e.g. a custom kind with
    /// no Rust type), as JSON.
    pub fn related_kind_json(&self, api_version: &str, kind: &str) -> Vec<&Value> {
        objects::of_kind_json(&self.related, api_version, kind)
    }

    /// The registration's config, deserialised; `None` when there is none.
    pub fn config<T: DeserializeOwned>(&self) -> Result<Option<T>, Error> {
        objects::config(self.config.as_ref()).map_err(Error::fatal)
    }

    /// True when the parent is being deleted and the plugin must clean up.
    pub fn finalizing(&self) -> bool {
        self.finalizing
    }
}
