//! Label selectors checked as the API server checks them (`matchLabels`
//! and `matchExpressions` with `In`, `NotIn`, `Exists`, `DoesNotExist`;
//! matching itself is `trellis_sdk::labels::matches`), and the namespace
//! scopes of prometheus-operator's `*NamespaceSelector` fields: absent is
//! the Prometheus's own namespace, `{}` every namespace, anything else the
//! namespaces whose labels match.

use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use trellis_sdk::labels::matches;

/// The four operators of a `matchExpressions` requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Operator {
    fn parse(operator: &str) -> Option<Self> {
        match operator {
            "In" => Some(Self::In),
            "NotIn" => Some(Self::NotIn),
            "Exists" => Some(Self::Exists),
            "DoesNotExist" => Some(Self::DoesNotExist),
            _ => None,
        }
    }
}

/// The values of a requirement (none for `Exists` / `DoesNotExist`).
pub fn values(requirement: &LabelSelectorRequirement) -> &[String] {
    requirement.values.as_deref().unwrap_or_default()
}

/// The requirement's operator; `None` for an unknown one (refused by
/// [`check`]).
pub fn operator(requirement: &LabelSelectorRequirement) -> Option<Operator> {
    Operator::parse(&requirement.operator)
}

/// Whether `selector` is `{}` (or has only empty lists and maps): it
/// selects everything.
pub fn is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Whether `value` is a valid label value (at most 63 characters of
/// `[A-Za-z0-9._-]`, beginning and ending with an alphanumeric, or empty).
/// Such a value is also a regular expression matching itself (a `.` at
/// worst matches more), so it may go into a relabelling regex.
pub fn is_label_value(value: &str) -> bool {
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    value.is_empty()
        || (value.len() <= 63
            && alnum(value.chars().next())
            && alnum(value.chars().last())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// Whether `key` is a valid label key: an optional DNS subdomain prefix
/// and `/`, then a name as [`is_label_value`] but not empty.
pub fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    let prefix_ok = !key.contains('/')
        || (!prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && !part.starts_with('-')
                    && !part.ends_with('-')
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            }));
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Checks `selector` as the API server checks a label selector; the error
/// is a sentence naming the offending part.
pub fn check(selector: &LabelSelector) -> Result<(), String> {
    for (key, value) in selector.match_labels.iter().flatten() {
        if !is_label_key(key) {
            return Err(format!("matchLabels key {key:?} is not a valid label key"));
        }
        if !is_label_value(value) {
            return Err(format!(
                "matchLabels value {value:?} of {key:?} is not a valid label value"
            ));
        }
    }
    for requirement in selector.match_expressions.iter().flatten() {
        let key = &requirement.key;
        if !is_label_key(key) {
            return Err(format!("matchExpressions key {key:?} is not a valid label key"));
        }
        let values = values(requirement);
        match operator(requirement) {
            None => {
                return Err(format!(
                    "matchExpressions operator {:?} of {key:?} is not In, NotIn, Exists or DoesNotExist",
                    requirement.operator
                ));
            }
            Some(Operator::In | Operator::NotIn) if values.is_empty() => {
                return Err(format!(
                    "matchExpressions {} of {key:?} needs at least one value",
                    requirement.operator
                ));
            }
            Some(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
                return Err(format!(
                    "matchExpressions {} of {key:?} takes no values",
                    requirement.operator
                ));
            }
            Some(_) => {}
        }
        if let Some(value) = values.iter().find(|v| !is_label_value(v)) {
            return Err(format!(
                "matchExpressions value {value:?} of {key:?} is not a valid label value"
            ));
        }
    }
    Ok(())
}

/// Where a Prometheus looks for monitors or rules.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scope<'a> {
    /// The Prometheus's own namespace (the selector field is absent).
    Own,
    /// Every namespace (`{}`).
    All,
    /// The namespaces whose labels match.
    Matching(&'a LabelSelector),
}

impl<'a> Scope<'a> {
    /// The scope a `*NamespaceSelector` field gives.
    pub fn of(selector: Option<&'a LabelSelector>) -> Self {
        match selector {
            None => Self::Own,
            Some(s) if is_empty(s) => Self::All,
            Some(s) => Self::Matching(s),
        }
    }
}

/// The labels of the namespaces the plugin was handed, by name.
#[derive(Debug, Default)]
pub struct Namespaces {
    labels: BTreeMap<String, BTreeMap<String, String>>,
}

impl Namespaces {
    /// From `(name, labels)` pairs.
    pub fn new(namespaces: impl IntoIterator<Item = (String, BTreeMap<String, String>)>) -> Self {
        Self {
            labels: namespaces.into_iter().collect(),
        }
    }

    /// Whether `namespace` is in `scope` for a Prometheus of `own`. A
    /// namespace whose object was not handed in matches no label selector.
    pub fn contains(&self, scope: Scope<'_>, own: &str, namespace: &str) -> bool {
        match scope {
            Scope::Own => namespace == own,
            Scope::All => true,
            Scope::Matching(selector) => self.labels.get(namespace).is_some_and(|l| matches(selector, l)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_sdk::serde_json::{self, json};

    fn selector(json: serde_json::Value) -> LabelSelector {
        serde_json::from_value(json).unwrap()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn an_empty_selector_selects_everything() {
        for s in [json!({}), json!({"matchLabels": {}, "matchExpressions": []})] {
            let s = selector(s);
            assert!(is_empty(&s));
            assert!(matches(&s, &labels(&[])));
        }
        assert!(!is_empty(&selector(json!({"matchLabels": {"a": "b"}}))));
    }

    #[test]
    fn bad_selectors_are_named() {
        let bad = |s| check(&selector(s)).unwrap_err();
        assert!(bad(json!({"matchLabels": {"a": "(x"}})).contains("\"(x\" of \"a\" is not a valid label value"));
        assert!(bad(json!({"matchLabels": {"-a": "x"}})).contains("key \"-a\""));
        let op = bad(json!({"matchExpressions": [{"key": "a", "operator": "Near"}]}));
        assert!(op.contains("\"Near\" of \"a\" is not In, NotIn"), "{op}");
        assert!(bad(json!({"matchExpressions": [{"key": "a", "operator": "In"}]})).contains("needs at least one"));
        let exists = json!({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]});
        assert!(bad(exists).contains("takes no values"));
        let good = json!({
            "matchLabels": {"app.kubernetes.io/name": "web", "empty": ""},
            "matchExpressions": [{"key": "example.com/tier", "operator": "In", "values": ["a.b", "c_d"]}],
        });
        assert_eq!(check(&selector(good)), Ok(()));
    }

    #[test]
    fn label_keys_and_values() {
        assert!(is_label_value("") && is_label_value("a") && is_label_value("a-b.c_d"));
        assert!(!is_label_value("-a") && !is_label_value("a-") && !is_label_value("a|b"));
        assert!(!is_label_value(&"a".repeat(64)));
        assert!(is_label_key("app.kubernetes.io/name") && is_label_key("team"));
        assert!(!is_label_key("") && !is_label_key("/name") && !is_label_key("Example.com/name"));
    }

    #[test]
    fn namespace_scopes() {
        let namespaces = Namespaces::new([
            ("apps".to_owned(), labels(&[("monitoring", "enabled")])),
            ("other".to_owned(), labels(&[])),
        ]);
        let enabled = selector(json!({"matchLabels": {"monitoring": "enabled"}}));
        let empty = selector(json!({}));
        assert_eq!(Scope::of(None), Scope::Own);
        assert_eq!(Scope::of(Some(&empty)), Scope::All);
        assert_eq!(Scope::of(Some(&enabled)), Scope::Matching(&enabled));
        assert!(namespaces.contains(Scope::Own, "default", "default"));
        assert!(!namespaces.contains(Scope::Own, "default", "apps"));
        assert!(namespaces.contains(Scope::All, "default", "other"));
        assert!(namespaces.contains(Scope::Matching(&enabled), "default", "apps"));
        assert!(!namespaces.contains(Scope::Matching(&enabled), "default", "other"));
        assert!(
            !namespaces.contains(Scope::Matching(&enabled), "default", "default"),
            "a namespace not handed in matches no label selector"
        );
    }
}
