//! [`RelatedSelector`]: which related objects one parent needs, for the
//! host's selective reads ([`crate::Reconciler::related`]).
//!
//! ```ignore
//! fn related(parent: &Value) -> Option<Vec<RelatedSelector>> {
//!     let selector: LabelSelector = serde_json::from_value(parent["spec"]["selector"].clone()).ok()?;
//!     Some(vec![RelatedSelector::of::<Pod>().labels(&selector)])
//! }
//! ```

use crate::bindings::trellis::reconciler::types;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Which objects of one related kind a parent needs: a kind, a label
/// selector and where to look (the parent's namespace unless told).
#[derive(Debug, Clone, PartialEq)]
pub struct RelatedSelector {
    api_version: String,
    kind: String,
    labels: Option<LabelSelector>,
    scope: Scope,
}

/// Where a [`RelatedSelector`] looks.
#[derive(Debug, Clone, PartialEq)]
enum Scope {
    ParentNamespace,
    Namespace(String),
    NamespaceSelector(LabelSelector),
    Names(Vec<String>),
}

impl RelatedSelector {
    /// Every object of the typed kind `K` in the parent's namespace (or,
    /// for a cluster-scoped kind, everywhere). `K` must be one of the
    /// plugin's related kinds.
    pub fn of<K: k8s_openapi::Resource>() -> Self {
        Self::kind(K::API_VERSION, K::KIND)
    }

    /// Every object of a kind by `apiVersion` and `kind` (custom resources)
    /// in the parent's namespace.
    pub fn kind(api_version: &str, kind: &str) -> Self {
        Self {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            labels: None,
            scope: Scope::ParentNamespace,
        }
    }

    /// Only objects whose labels match `selector`.
    pub fn labels(mut self, selector: &LabelSelector) -> Self {
        self.labels = Some(selector.clone());
        self
    }

    /// Looks in namespace `namespace` instead of the parent's (served only
    /// to cluster-wide registrations when it is another namespace).
    pub fn in_namespace(mut self, namespace: &str) -> Self {
        self.scope = Scope::Namespace(namespace.to_owned());
        self
    }

    /// Looks in every namespace whose labels match `selector` (an empty
    /// selector: every namespace). A selector with terms needs `v1`
    /// `Namespace` among the plugin's related kinds. Cluster-wide
    /// registrations only.
    pub fn in_namespaces_matching(mut self, selector: &LabelSelector) -> Self {
        self.scope = Scope::NamespaceSelector(selector.clone());
        self
    }

    /// Only the objects of these names, in the parent's namespace.
    pub fn named<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.scope = Scope::Names(names.into_iter().map(Into::into).collect());
        self
    }

    pub(crate) fn into_wit(self) -> types::RelatedSelector {
        let json = |s: &LabelSelector| serde_json::to_string(s).expect("a label selector serialises");
        types::RelatedSelector {
            kind: types::KindRef {
                api_version: self.api_version,
                kind: self.kind,
            },
            labels: self.labels.as_ref().map(json),
            scope: match self.scope {
                Scope::ParentNamespace => types::RelatedScope::ParentNamespace,
                Scope::Namespace(ns) => types::RelatedScope::Namespace(ns),
                Scope::NamespaceSelector(s) => types::RelatedScope::NamespaceSelector(json(&s)),
                Scope::Names(names) => types::RelatedScope::Names(names),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use std::collections::BTreeMap;

    #[test]
    fn a_selector_crosses_as_json_with_its_scope() {
        let selector = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_owned(), "web".to_owned())])),
            ..Default::default()
        };
        let wit = RelatedSelector::of::<Pod>()
            .labels(&selector)
            .in_namespaces_matching(&LabelSelector::default())
            .into_wit();
        assert_eq!(wit.kind.api_version, "v1");
        assert_eq!(wit.kind.kind, "Pod");
        assert_eq!(wit.labels.as_deref(), Some(r#"{"matchLabels":{"app":"web"}}"#));
        assert!(matches!(wit.scope, types::RelatedScope::NamespaceSelector(s) if s == "{}"));
        let names = RelatedSelector::kind("example.com/v1", "Thing")
            .named(["a", "b"])
            .into_wit();
        assert!(matches!(names.scope, types::RelatedScope::Names(n) if n == ["a", "b"]));
        assert!(names.labels.is_none());
    }
}
