//! Selective related reads in the controller: which cached related objects
//! a parent is handed ([`RelatedSource::pick`]) and which parents a change
//! of a related object concerns ([`concerned`]).
//!
//! A plugin's `related` answer depends on the parent alone, so it is asked
//! once per parent resourceVersion and remembered ([`Selections`]); a
//! reconcile for a child or related change reuses it. A plugin that answers
//! `none` (or has no `related` export) keeps the namespace rule: every
//! related object of the parent's namespace, and every parent of a
//! namespace reconciled when one of them changes.

use super::ServedKind;
use super::index::{CachedObject, IndexKey, ObjectIndex};
use crate::runtime::{Candidate, KindRef, RelatedAnswer, RelatedScope, SelectionError, namespace_kind};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// A parent's `related` answer, and the resourceVersion it was asked at.
#[derive(Debug, Clone)]
pub struct Selection {
    pub resource_version: String,
    pub answer: RelatedAnswer,
}

/// The answers of every parent, by `namespace/name`. Shared by the
/// reconciles (which fill it) and the related watches (which read it).
pub type Selections = Arc<RwLock<HashMap<String, Selection>>>;

/// The related caches a reconcile of one parent picks from.
#[derive(Clone)]
pub struct RelatedSource {
    pub kinds: Vec<(ServedKind, ObjectIndex)>,
    /// The parent's namespace.
    pub namespace: Option<String>,
    /// A tenant's registration: nothing outside the parent's namespace.
    pub tenant: bool,
}

/// Every cached related object a parent in `namespace` sees without a
/// `related` answer: those of its namespace (or cluster-scoped).
pub fn of_namespace(kinds: &[(ServedKind, ObjectIndex)], namespace: Option<&str>) -> Vec<Arc<CachedObject>> {
    kinds
        .iter()
        .flat_map(|(_, index)| index.related_to(namespace))
        .collect()
}

impl RelatedSource {
    /// The objects `answer` picks, each once.
    pub fn pick(&self, answer: &RelatedAnswer) -> Result<Vec<Arc<str>>, SelectionError> {
        let namespace = self.namespace.as_deref();
        let RelatedAnswer::Selected(selectors) = answer else {
            return Ok(of_namespace(&self.kinds, namespace)
                .iter()
                .map(|o| o.text.clone())
                .collect());
        };
        let namespaces = self.namespace_labels();
        let labels_of = |ns: &str| namespaces.get(ns);
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        for (index, selector) in selectors.iter().enumerate() {
            if self.tenant
                && let Some(outside) = selector.crosses_namespaces(namespace)
            {
                return Err(SelectionError::OutsideNamespace {
                    index,
                    namespace: outside,
                });
            }
            let Some((served, cache)) = self.kinds.iter().find(|(k, _)| k.kind == selector.kind) else {
                // Declared by the plugin, narrowed away by its registration.
                return Err(SelectionError::UndeclaredKind {
                    index,
                    kind: selector.kind.clone(),
                });
            };
            let candidates = match (&selector.scope, served.namespaced) {
                (_, false) => cache.all(),
                (RelatedScope::ParentNamespace | RelatedScope::Names(_), true) => {
                    namespace.map(|ns| cache.in_namespace(ns)).unwrap_or_default()
                }
                (RelatedScope::Namespace(ns), true) => cache.in_namespace(ns),
                (RelatedScope::NamespaceSelector(_), true) => cache.all(),
            };
            for object in candidates {
                if selector.selects(&*object, namespace, &labels_of)
                    && seen.insert((object.kind.clone(), object.namespace.clone(), object.name.clone()))
                {
                    picked.push(object.text.clone());
                }
            }
        }
        Ok(picked)
    }

    /// The labels of each cached Namespace (none when Namespaces are not
    /// a related kind).
    fn namespace_labels(&self) -> HashMap<String, BTreeMap<String, String>> {
        let kind = namespace_kind();
        self.kinds
            .iter()
            .filter(|(served, _)| served.kind == kind)
            .flat_map(|(_, index)| index.all())
            .map(|ns| (ns.name.clone(), ns.labels.clone()))
            .collect()
    }
}

/// The key of a parent in [`Selections`]: `namespace/name`, or `name`.
pub fn parent_key(namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_owned(),
    }
}

/// A parent as the related watches see it.
pub struct ParentSeen<'a> {
    pub namespace: Option<&'a str>,
    pub selection: Option<&'a RelatedAnswer>,
}

/// Whether a change of a related object (`before` and `after` it, of a
/// kind filed by `key`) concerns `parent`: it was or is among what the
/// parent's answer picks, or, for a parent without one, it is in the
/// parent's namespace. `namespace_labels` gives the labels of cached
/// Namespaces.
pub fn concerned(
    parent: &ParentSeen<'_>,
    key: IndexKey,
    before: Option<&CachedObject>,
    after: Option<&CachedObject>,
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> bool {
    let states = || before.into_iter().chain(after);
    match parent.selection {
        None | Some(RelatedAnswer::Everything) => states().any(|o| match key {
            IndexKey::Cluster => true,
            IndexKey::NamespaceItself => Some(o.name.as_str()) == parent.namespace,
            _ => o.namespace.as_deref() == parent.namespace,
        }),
        Some(RelatedAnswer::Selected(selectors)) => {
            let is_namespace = states().any(|o| *o.kind == namespace_kind());
            selectors.iter().any(|selector| {
                // A namespace whose labels change may join or leave what a
                // namespace selector picks, whatever kind it selects.
                let joins =
                    is_namespace && matches!(&selector.scope, RelatedScope::NamespaceSelector(s) if !s.selects_all());
                joins
                    || states().any(|o| {
                        let labels = namespace_labels_of(o, namespace_labels);
                        let lookup = |ns: &str| labels.as_ref().filter(|(n, _)| n == ns).map(|(_, l)| l);
                        selector.selects(o, parent.namespace, &lookup)
                    })
            })
        }
    }
}

/// The object's namespace and its labels, when known.
fn namespace_labels_of(
    object: &CachedObject,
    namespace_labels: &dyn Fn(&str) -> Option<BTreeMap<String, String>>,
) -> Option<(String, BTreeMap<String, String>)> {
    let ns = object.namespace()?;
    namespace_labels(ns).map(|labels| (ns.to_owned(), labels))
}

/// Whether `kind` is `v1` `Namespace`.
pub fn is_namespace_kind(kind: &KindRef) -> bool {
    *kind == namespace_kind()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RelatedSelector;
    use kube::core::Selector;

    fn object(kind: &str, namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> CachedObject {
        CachedObject {
            kind: Arc::new(KindRef::new("v1", kind)),
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            decorated: Vec::new(),
            uid: None,
            deleting: false,
            desired_hash: None,
            as_written: false,
            text: Arc::from("{}"),
        }
    }

    fn selected(selectors: Vec<RelatedSelector>) -> RelatedAnswer {
        RelatedAnswer::Selected(selectors.into())
    }

    fn app(value: &str) -> Selector {
        Selector::from_iter([("app".to_owned(), value.to_owned())])
    }

    #[test]
    fn a_parent_with_selectors_is_concerned_only_by_what_they_pick_before_or_after() {
        let answer = selected(vec![RelatedSelector {
            kind: KindRef::new("v1", "Pod"),
            labels: Some(app("dummy")),
            scope: RelatedScope::ParentNamespace,
        }]);
        let parent = ParentSeen {
            namespace: Some("p"),
            selection: Some(&answer),
        };
        let none = |_: &str| None;
        let dummy = object("Pod", Some("p"), "a", &[("app", "dummy")]);
        let other = object("Pod", Some("p"), "a", &[("app", "other")]);
        assert!(concerned(&parent, IndexKey::Namespace, None, Some(&dummy), &none));
        assert!(
            !concerned(&parent, IndexKey::Namespace, None, Some(&other), &none),
            "never matched"
        );
        assert!(
            concerned(&parent, IndexKey::Namespace, Some(&dummy), Some(&other), &none),
            "it left the selection"
        );
        let elsewhere = object("Pod", Some("q"), "a", &[("app", "dummy")]);
        assert!(!concerned(&parent, IndexKey::Namespace, None, Some(&elsewhere), &none));
    }

    #[test]
    fn a_parent_without_selectors_keeps_the_namespace_rule() {
        let parent = ParentSeen {
            namespace: Some("p"),
            selection: None,
        };
        let none = |_: &str| None;
        let here = object("Pod", Some("p"), "a", &[]);
        let there = object("Pod", Some("q"), "a", &[]);
        assert!(concerned(&parent, IndexKey::Namespace, None, Some(&here), &none));
        assert!(!concerned(&parent, IndexKey::Namespace, None, Some(&there), &none));
        let own_namespace = object("Namespace", None, "p", &[]);
        assert!(concerned(
            &parent,
            IndexKey::NamespaceItself,
            None,
            Some(&own_namespace),
            &none
        ));
        let node = object("Node", None, "n", &[]);
        assert!(concerned(&parent, IndexKey::Cluster, None, Some(&node), &none));
    }

    fn served(kind: &str, namespaced: bool) -> ServedKind {
        use kube::api::ApiResource;
        use kube::core::GroupVersionKind;
        ServedKind {
            kind: KindRef::new("v1", kind),
            resource: ApiResource::from_gvk(&GroupVersionKind::gvk("", "v1", kind)),
            namespaced,
        }
    }

    fn cached_pod(index: &ObjectIndex, namespace: &str, name: &str, app: &str) {
        let pod: kube::api::DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": app}},
        }))
        .unwrap();
        index.apply(&kube::runtime::watcher::Event::Apply(pod));
    }

    #[test]
    fn a_source_picks_what_the_selectors_select_and_refuses_a_tenant_other_namespaces() {
        let pods = served("Pod", true);
        let index = ObjectIndex::new(&pods, IndexKey::Namespace);
        cached_pod(&index, "p", "a", "dummy");
        cached_pod(&index, "p", "b", "web");
        cached_pod(&index, "q", "c", "dummy");
        let mut source = RelatedSource {
            kinds: vec![(pods, index)],
            namespace: Some("p".into()),
            tenant: false,
        };
        let picked = |source: &RelatedSource, scope: RelatedScope| {
            let answer = selected(vec![RelatedSelector {
                kind: KindRef::new("v1", "Pod"),
                labels: Some(app("dummy")),
                scope,
            }]);
            source.pick(&answer).map(|texts| {
                texts
                    .iter()
                    .map(|t| serde_json::from_str::<serde_json::Value>(t).unwrap()["metadata"]["name"].to_string())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(picked(&source, RelatedScope::ParentNamespace).unwrap(), [r#""a""#]);
        let everywhere = RelatedScope::NamespaceSelector(Selector::default());
        assert_eq!(picked(&source, everywhere.clone()).unwrap().len(), 2);
        assert_eq!(
            source.pick(&RelatedAnswer::Everything).unwrap().len(),
            2,
            "the parent's namespace"
        );
        source.tenant = true;
        assert!(matches!(
            picked(&source, everywhere),
            Err(SelectionError::OutsideNamespace { index: 0, .. })
        ));
        assert!(matches!(
            picked(&source, RelatedScope::Namespace("q".into())),
            Err(SelectionError::OutsideNamespace { .. })
        ));
        assert_eq!(picked(&source, RelatedScope::Namespace("p".into())).unwrap().len(), 1);
    }

    #[test]
    fn a_namespace_label_change_concerns_parents_selecting_by_namespace_labels() {
        let answer = selected(vec![RelatedSelector {
            kind: KindRef::new("v1", "Pod"),
            labels: None,
            scope: RelatedScope::NamespaceSelector(Selector::from_iter([("team".to_owned(), "a".to_owned())])),
        }]);
        let parent = ParentSeen {
            namespace: Some("p"),
            selection: Some(&answer),
        };
        let team_a = |ns: &str| (ns == "ns-a").then(|| BTreeMap::from([("team".to_owned(), "a".to_owned())]));
        let ns = object("Namespace", None, "ns-b", &[("team", "a")]);
        assert!(concerned(&parent, IndexKey::NamespaceItself, None, Some(&ns), &team_a));
        assert!(concerned(
            &parent,
            IndexKey::Namespace,
            None,
            Some(&object("Pod", Some("ns-a"), "x", &[])),
            &team_a
        ));
        assert!(!concerned(
            &parent,
            IndexKey::Namespace,
            None,
            Some(&object("Pod", Some("ns-b"), "x", &[])),
            &team_a
        ));
    }
}
