//! Selective related reads: a plugin's `related` answer, checked and
//! parsed ([`selectors`]), and the pure rule of which objects a selector
//! picks ([`RelatedSelector::selects`]), shared by the controllers and
//! `trellis render`.

use super::bindings::v0_2::trellis::reconciler::types as wit;
use super::contract::KindRef;
use super::validate::{is_dns_label, is_dns_subdomain};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::{Selector, SelectorExt};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The most selectors one `related` answer may hold.
pub const MAX_SELECTORS: usize = 64;
/// The most names one selector may list.
pub const MAX_NAMES: usize = 1000;

/// Which objects of one related kind a parent needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RelatedSelector {
    /// One of the plugin's related kinds.
    pub kind: KindRef,
    /// Only objects with matching labels; `None`: every object.
    pub labels: Option<Selector>,
    /// Where to look.
    pub scope: RelatedScope,
}

/// Where a [`RelatedSelector`] looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelatedScope {
    /// The parent's namespace (everywhere, for a cluster-scoped kind).
    ParentNamespace,
    /// One namespace.
    Namespace(String),
    /// Every namespace whose labels match (an empty selector: all).
    NamespaceSelector(Selector),
    /// These names in the parent's namespace (or cluster-scoped).
    Names(Vec<String>),
}

/// What a plugin said about its related objects for one parent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelatedAnswer {
    /// `None`: every object of the related kinds in the parent's namespace.
    Everything,
    /// Only what these selectors pick.
    Selected(Arc<[RelatedSelector]>),
}

/// An object a selector may pick: what of it the rule reads.
pub trait Candidate {
    fn kind(&self) -> &KindRef;
    /// Its namespace; `None` for a cluster-scoped object.
    fn namespace(&self) -> Option<&str>;
    fn name(&self) -> &str;
    fn labels(&self) -> &BTreeMap<String, String>;
}

/// Why a `related` answer is not served. Nothing of the reconcile runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectionError {
    #[error("related selector {index}: {kind} is not among the plugin's related kinds")]
    UndeclaredKind { index: usize, kind: KindRef },
    #[error("related selector {index}: its {what} is not a valid label selector: {reason}")]
    BadLabelSelector {
        index: usize,
        what: &'static str,
        reason: String,
    },
    #[error("related selector {index}: {name:?} is not a valid {what}")]
    BadName {
        index: usize,
        what: &'static str,
        name: String,
    },
    #[error("related selector {index}: lists {count} names, more than {limit}")]
    TooManyNames { index: usize, count: usize, limit: usize },
    #[error("related answer lists {count} selectors, more than {limit}")]
    TooManySelectors { count: usize, limit: usize },
    #[error(
        "related selector {index}: looks outside the parent's namespace {namespace:?}; only a cluster-wide registration may"
    )]
    OutsideNamespace { index: usize, namespace: String },
    #[error(
        "related selector {index}: a namespace selector with terms needs v1 Namespace among the plugin's related kinds"
    )]
    NamespacesNotRelated { index: usize },
}

/// Checks and parses a `related` answer against the plugin's related kinds.
pub(crate) fn selectors(
    related: &[KindRef],
    answer: Option<Vec<wit::RelatedSelector>>,
) -> Result<RelatedAnswer, SelectionError> {
    let Some(answer) = answer else {
        return Ok(RelatedAnswer::Everything);
    };
    if answer.len() > MAX_SELECTORS {
        return Err(SelectionError::TooManySelectors {
            count: answer.len(),
            limit: MAX_SELECTORS,
        });
    }
    let parsed = answer
        .into_iter()
        .enumerate()
        .map(|(index, s)| selector(related, index, s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RelatedAnswer::Selected(parsed.into()))
}

fn selector(related: &[KindRef], index: usize, s: wit::RelatedSelector) -> Result<RelatedSelector, SelectionError> {
    let kind = KindRef {
        api_version: s.kind.api_version,
        kind: s.kind.kind,
    };
    if !related.contains(&kind) {
        return Err(SelectionError::UndeclaredKind { index, kind });
    }
    let labels = s
        .labels
        .as_deref()
        .map(|text| label_selector(index, "labels", text))
        .transpose()?;
    let scope = match s.scope {
        wit::RelatedScope::ParentNamespace => RelatedScope::ParentNamespace,
        wit::RelatedScope::Namespace(ns) => {
            if !is_dns_label(&ns) {
                return Err(SelectionError::BadName {
                    index,
                    what: "namespace",
                    name: ns,
                });
            }
            RelatedScope::Namespace(ns)
        }
        wit::RelatedScope::NamespaceSelector(text) => {
            let selector = label_selector(index, "namespace selector", &text)?;
            if !selector.selects_all() && !related.contains(&namespace_kind()) {
                return Err(SelectionError::NamespacesNotRelated { index });
            }
            RelatedScope::NamespaceSelector(selector)
        }
        wit::RelatedScope::Names(names) => {
            if names.len() > MAX_NAMES {
                return Err(SelectionError::TooManyNames {
                    index,
                    count: names.len(),
                    limit: MAX_NAMES,
                });
            }
            if let Some(bad) = names.iter().find(|n| !is_dns_subdomain(n) && !is_path_segment(n)) {
                return Err(SelectionError::BadName {
                    index,
                    what: "object name",
                    name: bad.clone(),
                });
            }
            RelatedScope::Names(names)
        }
    };
    Ok(RelatedSelector { kind, labels, scope })
}

/// Some kinds (RBAC, for one) accept names that are no DNS subdomain; a
/// name is safe in a URL path when it is not `.`/`..` and has no `/`/`%`.
fn is_path_segment(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name != "." && name != ".." && !name.contains(['/', '%'])
}

fn label_selector(index: usize, what: &'static str, text: &str) -> Result<Selector, SelectionError> {
    let bad = |reason: String| SelectionError::BadLabelSelector { index, what, reason };
    let parsed: LabelSelector = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    Selector::try_from(parsed).map_err(|e| bad(e.to_string()))
}

/// `v1` `Namespace`.
pub fn namespace_kind() -> KindRef {
    KindRef::new("v1", "Namespace")
}

impl RelatedSelector {
    /// Whether it looks outside `parent_namespace` (a tenant may not).
    pub fn crosses_namespaces(&self, parent_namespace: Option<&str>) -> Option<String> {
        match &self.scope {
            RelatedScope::Namespace(ns) if Some(ns.as_str()) != parent_namespace => Some(ns.clone()),
            RelatedScope::NamespaceSelector(_) => Some("(a namespace selector)".to_owned()),
            _ => None,
        }
    }

    /// Whether this selector picks `object` for a parent in
    /// `parent_namespace`; `namespace_labels` gives a namespace's labels
    /// (`None` when it is not known: then a namespace selector with terms
    /// does not pick it).
    pub fn selects<'a>(
        &self,
        object: &dyn Candidate,
        parent_namespace: Option<&str>,
        namespace_labels: &dyn Fn(&str) -> Option<&'a BTreeMap<String, String>>,
    ) -> bool {
        if *object.kind() != self.kind {
            return false;
        }
        if let Some(labels) = &self.labels
            && !labels.matches(object.labels())
        {
            return false;
        }
        let Some(namespace) = object.namespace() else {
            // Cluster-scoped: only names narrow it down.
            return match &self.scope {
                RelatedScope::Names(names) => names.iter().any(|n| n == object.name()),
                _ => true,
            };
        };
        match &self.scope {
            RelatedScope::ParentNamespace => Some(namespace) == parent_namespace,
            RelatedScope::Namespace(ns) => namespace == ns,
            RelatedScope::NamespaceSelector(selector) => {
                selector.selects_all() || namespace_labels(namespace).is_some_and(|labels| selector.matches(labels))
            }
            RelatedScope::Names(names) => {
                Some(namespace) == parent_namespace && names.iter().any(|n| n == object.name())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Obj {
        kind: KindRef,
        namespace: Option<String>,
        name: String,
        labels: BTreeMap<String, String>,
    }

    impl Candidate for Obj {
        fn kind(&self) -> &KindRef {
            &self.kind
        }
        fn namespace(&self) -> Option<&str> {
            self.namespace.as_deref()
        }
        fn name(&self) -> &str {
            &self.name
        }
        fn labels(&self) -> &BTreeMap<String, String> {
            &self.labels
        }
    }

    fn pod(namespace: &str, name: &str, labels: &[(&str, &str)]) -> Obj {
        Obj {
            kind: KindRef::new("v1", "Pod"),
            namespace: Some(namespace.to_owned()),
            name: name.to_owned(),
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    fn wit_selector(labels: Option<&str>, scope: wit::RelatedScope) -> wit::RelatedSelector {
        wit::RelatedSelector {
            kind: wit::KindRef {
                api_version: "v1".into(),
                kind: "Pod".into(),
            },
            labels: labels.map(str::to_owned),
            scope,
        }
    }

    fn parse(
        selectors: Vec<wit::RelatedSelector>,
        related: &[KindRef],
    ) -> Result<Vec<RelatedSelector>, SelectionError> {
        match super::selectors(related, Some(selectors))? {
            RelatedAnswer::Selected(s) => Ok(s.to_vec()),
            RelatedAnswer::Everything => unreachable!(),
        }
    }

    #[test]
    fn labels_and_scope_both_decide() {
        let related = [KindRef::new("v1", "Pod"), namespace_kind()];
        let selectors = parse(
            vec![
                wit_selector(
                    Some(r#"{"matchLabels":{"app":"dummy"}}"#),
                    wit::RelatedScope::ParentNamespace,
                ),
                wit_selector(
                    None,
                    wit::RelatedScope::NamespaceSelector(r#"{"matchLabels":{"team":"a"}}"#.into()),
                ),
                wit_selector(None, wit::RelatedScope::Names(vec!["named".into()])),
            ],
            &related,
        )
        .unwrap();
        let team_a: BTreeMap<String, String> = [("team".to_owned(), "a".to_owned())].into();
        let labels_of = |ns: &str| (ns == "ns-a").then_some(&team_a);
        let by_labels = &selectors[0];
        assert!(by_labels.selects(&pod("p", "x", &[("app", "dummy")]), Some("p"), &labels_of));
        assert!(!by_labels.selects(&pod("p", "x", &[("app", "other")]), Some("p"), &labels_of));
        assert!(
            !by_labels.selects(&pod("q", "x", &[("app", "dummy")]), Some("p"), &labels_of),
            "other namespace"
        );
        let by_namespace = &selectors[1];
        assert!(by_namespace.selects(&pod("ns-a", "x", &[]), Some("p"), &labels_of));
        assert!(!by_namespace.selects(&pod("ns-b", "x", &[]), Some("p"), &labels_of));
        assert!(by_namespace.crosses_namespaces(Some("p")).is_some());
        let by_name = &selectors[2];
        assert!(by_name.selects(&pod("p", "named", &[]), Some("p"), &labels_of));
        assert!(!by_name.selects(&pod("p", "other", &[]), Some("p"), &labels_of));
        assert!(by_name.crosses_namespaces(Some("p")).is_none());
    }

    #[test]
    fn an_empty_namespace_selector_picks_every_namespace_without_namespaces_related() {
        let related = [KindRef::new("v1", "Pod")];
        let selectors = parse(
            vec![wit_selector(None, wit::RelatedScope::NamespaceSelector("{}".into()))],
            &related,
        )
        .unwrap();
        assert!(selectors[0].selects(&pod("anywhere", "x", &[]), Some("p"), &|_| None));
        let with_terms = parse(
            vec![wit_selector(
                None,
                wit::RelatedScope::NamespaceSelector(r#"{"matchLabels":{"a":"b"}}"#.into()),
            )],
            &related,
        );
        assert_eq!(with_terms, Err(SelectionError::NamespacesNotRelated { index: 0 }));
    }

    #[test]
    fn bad_answers_are_refused_with_their_cause() {
        let related = [KindRef::new("v1", "Pod")];
        let mut other_kind = wit_selector(None, wit::RelatedScope::ParentNamespace);
        other_kind.kind.kind = "Secret".into();
        assert!(matches!(
            parse(vec![other_kind], &related),
            Err(SelectionError::UndeclaredKind { .. })
        ));
        let bad_op = wit_selector(
            Some(r#"{"matchExpressions":[{"key":"a","operator":"Near"}]}"#),
            wit::RelatedScope::ParentNamespace,
        );
        assert!(matches!(
            parse(vec![bad_op], &related),
            Err(SelectionError::BadLabelSelector { .. })
        ));
        let not_json = wit_selector(Some("{"), wit::RelatedScope::ParentNamespace);
        assert!(matches!(
            parse(vec![not_json], &related),
            Err(SelectionError::BadLabelSelector { .. })
        ));
        let bad_ns = wit_selector(None, wit::RelatedScope::Namespace("Bad_NS".into()));
        assert!(matches!(
            parse(vec![bad_ns], &related),
            Err(SelectionError::BadName { .. })
        ));
        let many = vec![wit_selector(None, wit::RelatedScope::ParentNamespace); MAX_SELECTORS + 1];
        assert!(matches!(
            parse(many, &related),
            Err(SelectionError::TooManySelectors { .. })
        ));
        assert_eq!(super::selectors(&related, None), Ok(RelatedAnswer::Everything));
    }
}
