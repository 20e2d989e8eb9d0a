//! [`Response`]: the desired children, status, conditions and events of one
//! reconcile, built fluently.

use crate::bindings::trellis::reconciler::types;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

/// Annotation the host reads on a desired child: create it if missing,
/// never update it (see [`Response::child_once`]).
pub const CREATE_ONLY: &str = "trellis.dev/create-only";

/// A status condition (type, status, reason, message). The host adds
/// `lastTransitionTime` and `observedGeneration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// e.g. `Ready`.
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// A CamelCase reason.
    pub reason: String,
    /// A sentence for humans.
    pub message: String,
}

impl Condition {
    /// A condition of `type_` that is `True` when `is_true`.
    pub fn new(type_: &str, is_true: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_: type_.to_owned(),
            status: if is_true { "True" } else { "False" }.to_owned(),
            reason: reason.to_owned(),
            message: message.into(),
        }
    }

    /// The `Ready` condition.
    pub fn ready(is_ready: bool, reason: &str, message: impl Into<String>) -> Self {
        Self::new("Ready", is_ready, reason, message)
    }
}

/// Labels and annotations for the host to keep on an object the plugin
/// does not own, of one of its related kinds (see [`Response::decorate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoration {
    api_version: String,
    kind: String,
    namespace: Option<String>,
    name: String,
    labels: BTreeMap<String, Option<String>>,
    annotations: BTreeMap<String, Option<String>>,
}

impl Decoration {
    /// A decoration of the object `name` of the typed kind `K`, in the
    /// parent's namespace unless [`Decoration::in_namespace`] says otherwise.
    pub fn of<K: k8s_openapi::Resource>(name: &str) -> Self {
        Self::kind(K::API_VERSION, K::KIND, name)
    }

    /// A decoration of an object named by `apiVersion`, `kind` and `name`.
    pub fn kind(api_version: &str, kind: &str, name: &str) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: None,
            name: name.to_owned(),
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        }
    }

    /// The object's namespace (the parent's by default).
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.namespace = Some(namespace.to_owned());
        self
    }

    /// Sets label `key` to `value`.
    pub fn label(mut self, key: &str, value: impl Into<String>) -> Self {
        self.labels.insert(key.to_owned(), Some(value.into()));
        self
    }

    /// Removes label `key` from the object, whoever set it.
    pub fn remove_label(mut self, key: &str) -> Self {
        self.labels.insert(key.to_owned(), None);
        self
    }

    /// Sets annotation `key` to `value`.
    pub fn annotation(mut self, key: &str, value: impl Into<String>) -> Self {
        self.annotations.insert(key.to_owned(), Some(value.into()));
        self
    }

    /// Removes annotation `key` from the object, whoever set it.
    pub fn remove_annotation(mut self, key: &str) -> Self {
        self.annotations.insert(key.to_owned(), None);
        self
    }

    /// The target's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The labels to set (`None`: to remove).
    pub fn labels(&self) -> &BTreeMap<String, Option<String>> {
        &self.labels
    }

    /// The annotations to set (`None`: to remove).
    pub fn annotations(&self) -> &BTreeMap<String, Option<String>> {
        &self.annotations
    }

    fn into_wit(self) -> types::Decoration {
        types::Decoration {
            target: types::ObjectRef {
                kind: types::KindRef {
                    api_version: self.api_version,
                    kind: self.kind,
                },
                namespace: self.namespace,
                name: self.name,
            },
            labels: self.labels.into_iter().collect(),
            annotations: self.annotations.into_iter().collect(),
        }
    }
}

/// The result of a reconcile.
#[derive(Debug, Clone, Default)]
pub struct Response {
    children: Vec<String>,
    status: Option<Value>,
    conditions: Vec<Condition>,
    events: Vec<(bool, String, String)>,
    requeue_after: Option<Duration>,
    finalized: bool,
    decorations: Vec<Decoration>,
}

impl Response {
    /// An empty response: no children (so every owned child is pruned).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a desired child. Typed Kubernetes objects from `k8s-openapi`
    /// carry their `apiVersion` and `kind`; JSON values must set them.
    pub fn child<T: Serialize>(mut self, object: &T) -> Self {
        self.push_child(object);
        self
    }

    /// Adds a desired child in place.
    pub fn push_child<T: Serialize>(&mut self, object: &T) {
        // Kubernetes types and JSON values always serialise; a type that
        // does not is a bug in the plugin, reported as a trap.
        let json = serde_json::to_string(object).expect("a child object serialises to JSON");
        self.children.push(json);
    }

    /// Adds a desired child that the host creates once and then leaves
    /// alone: it is never updated, even when the plugin later asks for other
    /// content (generated passwords, one-time tokens). It is still pruned
    /// when no longer desired, and deleted with the parent.
    pub fn child_once<T: Serialize>(mut self, object: &T) -> Self {
        let mut json = serde_json::to_value(object).expect("a child object serialises to JSON");
        json["metadata"]["annotations"][CREATE_ONLY] = Value::String("true".to_owned());
        self.push_child(&json);
        self
    }

    /// Sets the parent's status (without conditions).
    pub fn status<T: Serialize>(mut self, status: &T) -> Self {
        self.status = Some(serde_json::to_value(status).expect("status serialises to JSON"));
        self
    }

    /// Sets a condition.
    pub fn condition(mut self, condition: Condition) -> Self {
        self.conditions.retain(|c| c.type_ != condition.type_);
        self.conditions.push(condition);
        self
    }

    /// Records a Normal event on the parent.
    pub fn event(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.events.push((false, reason.to_owned(), message.into()));
        self
    }

    /// Records a Warning event on the parent.
    pub fn warning(mut self, reason: &str, message: impl Into<String>) -> Self {
        self.events.push((true, reason.to_owned(), message.into()));
        self
    }

    /// Asks to be called again after `after`, even if nothing changes.
    pub fn requeue_after(mut self, after: Duration) -> Self {
        self.requeue_after = Some(after);
        self
    }

    /// Says cleanup is complete (only meaningful while finalizing).
    pub fn finalized(mut self) -> Self {
        self.finalized = true;
        self
    }

    /// Keeps labels and annotations set on an object the plugin does not
    /// own. The host removes them again once a response no longer lists
    /// the decoration, and when the parent is deleted.
    pub fn decorate(mut self, decoration: Decoration) -> Self {
        self.push_decoration(decoration);
        self
    }

    /// Adds a decoration in place.
    pub fn push_decoration(&mut self, decoration: Decoration) {
        self.decorations.push(decoration);
    }

    /// The decorations so far (for unit tests of a plugin).
    pub fn decorations(&self) -> &[Decoration] {
        &self.decorations
    }

    /// The desired children as JSON (for unit tests of a plugin).
    pub fn children_json(&self) -> Vec<Value> {
        self.children
            .iter()
            .filter_map(|c| serde_json::from_str(c).ok())
            .collect()
    }

    /// The status set so far (for unit tests of a plugin).
    pub fn status_json(&self) -> Option<&Value> {
        self.status.as_ref()
    }

    /// The conditions set so far (for unit tests of a plugin).
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    pub(crate) fn into_wit(self) -> types::Response {
        types::Response {
            children: self.children,
            status: self.status.map(|s| s.to_string()),
            conditions: self
                .conditions
                .into_iter()
                .map(|c| types::Condition {
                    type_: c.type_,
                    status: c.status,
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
            events: self
                .events
                .into_iter()
                .map(|(warning, reason, message)| types::Event {
                    severity: if warning {
                        types::Severity::Warning
                    } else {
                        types::Severity::Normal
                    },
                    reason,
                    message,
                })
                .collect(),
            requeue_after_seconds: self
                .requeue_after
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            finalized: self.finalized,
            decorations: self.decorations.into_iter().map(Decoration::into_wit).collect(),
        }
    }
}
