//! [`AdmissionRequest`]: typed access to the input of one `validate`: the
//! operation, the object as it would be stored, the stored object, the
//! requesting user, related objects and the registration's config.
//!
//! Every error here is a list of sentences, as `validate` returns them: they
//! reach the user whose request is refused.

use crate::bindings::trellis::reconciler::types;
use crate::objects::{self, meta_str, of_kind};
use k8s_openapi::Resource;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// What the API server is doing with the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// The object is being created: there is no old object.
    Create,
    /// The object is being changed: both the new and the old object are set.
    Update,
    /// The object is being deleted: only the old object is set.
    Delete,
}

impl From<types::Operation> for Operation {
    fn from(op: types::Operation) -> Self {
        match op {
            types::Operation::Create => Self::Create,
            types::Operation::Update => Self::Update,
            types::Operation::Delete => Self::Delete,
        }
    }
}

/// Who asked the API server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    /// e.g. `jane` or `system:serviceaccount:team-a:deployer`.
    pub username: String,
    /// The user's groups.
    pub groups: Vec<String>,
}

/// The input of one `validate`, parsed once.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    operation: Operation,
    object: Option<Value>,
    old: Option<Value>,
    user: UserInfo,
    related: Vec<Value>,
    config: Option<Value>,
}

impl AdmissionRequest {
    pub(crate) fn from_wit(req: types::AdmissionRequest) -> Result<Self, Vec<String>> {
        let parse = |what: &str, text: &str| objects::parse(what, text).map_err(|e| vec![e]);
        Ok(Self {
            operation: req.operation.into(),
            object: req.object.as_deref().map(|o| parse("object", o)).transpose()?,
            old: req.old_object.as_deref().map(|o| parse("old object", o)).transpose()?,
            user: UserInfo {
                username: req.user.username,
                groups: req.user.groups,
            },
            related: req
                .related
                .iter()
                .map(|r| parse("related", r))
                .collect::<Result<_, _>>()?,
            config: req.config.as_deref().map(|c| parse("config", c)).transpose()?,
        })
    }

    /// Builds a request by hand, for unit tests of a plugin: `object` is the
    /// object as it would be stored (`None` on delete), `old` the stored one
    /// (on update and delete). The user is empty.
    pub fn for_test(operation: Operation, object: Option<Value>, old: Option<Value>) -> Self {
        Self {
            operation,
            object,
            old,
            user: UserInfo::default(),
            related: Vec::new(),
            config: None,
        }
    }

    /// Adds a related object (for unit tests of a plugin).
    pub fn with_related(mut self, related: Value) -> Self {
        self.related.push(related);
        self
    }

    /// Sets the requesting user (for unit tests of a plugin).
    pub fn with_user(mut self, user: UserInfo) -> Self {
        self.user = user;
        self
    }

    /// Sets the registration's config (for unit tests of a plugin).
    pub fn with_config(mut self, config: Value) -> Self {
        self.config = Some(config);
        self
    }

    /// What is being done.
    pub fn operation(&self) -> Operation {
        self.operation
    }

    /// The object as it would be stored (after defaulting); `None` on delete.
    pub fn object_json(&self) -> Option<&Value> {
        self.object.as_ref()
    }

    /// The stored object, on update and delete.
    pub fn old_json(&self) -> Option<&Value> {
        self.old.as_ref()
    }

    /// The object deserialised into the plugin's own type. Refused with one
    /// sentence when there is no object (a delete) or it does not fit.
    pub fn parent<T: DeserializeOwned>(&self) -> Result<T, Vec<String>> {
        let object = self
            .object
            .as_ref()
            .ok_or_else(|| vec!["the request carries no object (a delete has only the old one)".to_owned()])?;
        T::deserialize(object).map_err(|e| vec![e.to_string()])
    }

    /// The stored object deserialised into the plugin's own type; `None` on
    /// create. An old object that does not fit is refused with one sentence.
    pub fn old<T: DeserializeOwned>(&self) -> Result<Option<T>, Vec<String>> {
        self.old
            .as_ref()
            .map(|o| T::deserialize(o).map_err(|e| vec![format!("the stored object: {e}")]))
            .transpose()
    }

    /// The object's name (the old object's on delete).
    pub fn name(&self) -> &str {
        self.subject().map(|o| meta_str(o, "name")).unwrap_or_default()
    }

    /// The object's namespace (empty for a cluster-scoped kind).
    pub fn namespace(&self) -> &str {
        self.subject().map(|o| meta_str(o, "namespace")).unwrap_or_default()
    }

    /// The requesting user.
    pub fn user(&self) -> &UserInfo {
        &self.user
    }

    /// All related objects as JSON.
    pub fn related_json(&self) -> &[Value] {
        &self.related
    }

    /// The related objects of type `K` (those that do not deserialise are
    /// skipped), as [`crate::Request::related`].
    pub fn related<K: Resource + DeserializeOwned>(&self) -> Vec<K> {
        of_kind(&self.related)
    }

    /// The related objects of a kind given by name (e.g. a custom kind with
    /// no Rust type), as JSON.
    pub fn related_kind_json(&self, api_version: &str, kind: &str) -> Vec<&Value> {
        objects::of_kind_json(&self.related, api_version, kind)
    }

    /// The registration's config, deserialised; `None` when there is none.
    pub fn config<T: DeserializeOwned>(&self) -> Result<Option<T>, Vec<String>> {
        objects::config(self.config.as_ref()).map_err(|e| vec![e])
    }

    /// The object, or the old one on delete.
    fn subject(&self) -> Option<&Value> {
        self.object.as_ref().or(self.old.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ConfigMap, Node};
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Thing {
        spec: ThingSpec,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct ThingSpec {
        size: i32,
    }

    fn thing(size: i32) -> Value {
        json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t", "namespace": "ns"}, "spec": {"size": size}})
    }

    fn wit(operation: types::Operation, object: Option<&Value>, old: Option<&Value>) -> types::AdmissionRequest {
        types::AdmissionRequest {
            operation,
            object: object.map(Value::to_string),
            old_object: old.map(Value::to_string),
            user: types::UserInfo {
                username: "jane".to_owned(),
                groups: vec!["devs".to_owned()],
            },
            related: vec![
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}).to_string(),
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c1"}}).to_string(),
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": 7}}).to_string(),
            ],
            config: Some(r#"{"limit": 3}"#.to_owned()),
        }
    }

    #[test]
    fn operations_and_objects_are_parsed() {
        let new = thing(3);
        let old = thing(1);
        let req = AdmissionRequest::from_wit(wit(types::Operation::Update, Some(&new), Some(&old))).unwrap();
        assert_eq!(req.operation(), Operation::Update);
        assert_eq!(req.object_json(), Some(&new));
        assert_eq!(req.parent::<Thing>().unwrap().spec.size, 3);
        assert_eq!(req.old::<Thing>().unwrap().unwrap().spec.size, 1);
        assert_eq!((req.name(), req.namespace()), ("t", "ns"));
        assert_eq!(req.user().username, "jane");
        assert_eq!(req.user().groups, ["devs"]);
        assert_eq!(req.config::<Value>().unwrap(), Some(json!({"limit": 3})));

        let create = AdmissionRequest::from_wit(wit(types::Operation::Create, Some(&new), None)).unwrap();
        assert_eq!(create.operation(), Operation::Create);
        assert!(create.old::<Thing>().unwrap().is_none());

        let delete = AdmissionRequest::from_wit(wit(types::Operation::Delete, None, Some(&old))).unwrap();
        assert_eq!(delete.operation(), Operation::Delete);
        assert_eq!(delete.name(), "t");
        assert_eq!(delete.parent::<Thing>().unwrap_err().len(), 1);
    }

    #[test]
    fn a_parent_that_does_not_fit_is_one_sentence() {
        let req = AdmissionRequest::for_test(Operation::Create, Some(json!({"spec": {"size": "big"}})), None);
        let problems = req.parent::<Thing>().unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("invalid type"), "{problems:?}");
    }

    #[test]
    fn invalid_json_from_the_host_is_refused() {
        let mut bad = wit(types::Operation::Create, None, None);
        bad.object = Some("{not json".to_owned());
        let problems = AdmissionRequest::from_wit(bad).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("the host sent invalid JSON as object"),
            "{problems:?}"
        );
    }

    #[test]
    fn related_objects_are_filtered_by_kind() {
        let req = AdmissionRequest::from_wit(wit(types::Operation::Create, Some(&thing(1)), None)).unwrap();
        let nodes = req.related::<Node>();
        // The Node whose name is not a string does not deserialise.
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].metadata.name.as_deref(), Some("n1"));
        assert_eq!(req.related::<ConfigMap>().len(), 1);
        assert_eq!(req.related_kind_json("v1", "Node").len(), 2);
        assert_eq!(req.related_json().len(), 3);

        let built = AdmissionRequest::for_test(Operation::Create, Some(thing(1)), None)
            .with_related(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n2"}}));
        assert_eq!(built.related::<Node>()[0].metadata.name.as_deref(), Some("n2"));
    }
}
