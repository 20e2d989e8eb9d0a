//! Label selector matching, as the API server does it: `matchLabels` and
//! every `matchExpressions` term (`In`, `NotIn`, `Exists`, `DoesNotExist`)
//! must hold. An empty selector matches everything.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use std::collections::BTreeMap;

/// Whether `labels` match `selector`. A term with an unknown operator
/// matches nothing (the API server refuses such selectors).
pub fn matches(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(key, value)| labels.get(key) == Some(value));
    by_labels
        && selector.match_expressions.iter().flatten().all(|term| {
            let values = term.values.as_deref().unwrap_or_default();
            let value = labels.get(&term.key);
            match term.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    fn term(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_owned(),
            operator: operator.to_owned(),
            values: Some(values.iter().map(|v| (*v).to_owned()).collect()),
        }
    }

    #[test]
    fn labels_and_every_expression_must_hold() {
        let selector = LabelSelector {
            match_labels: Some(labels(&[("team", "frontend")])),
            match_expressions: Some(vec![
                term("tier", "In", &["web", "api"]),
                term("env", "NotIn", &["dev"]),
                term("owner", "Exists", &[]),
                term("legacy", "DoesNotExist", &[]),
            ]),
        };
        let good = labels(&[("team", "frontend"), ("tier", "api"), ("owner", "x")]);
        assert!(matches(&selector, &good));
        for (key, value) in [("team", "backend"), ("tier", "db"), ("env", "dev"), ("legacy", "1")] {
            let mut bad = good.clone();
            bad.insert(key.to_owned(), value.to_owned());
            assert!(!matches(&selector, &bad), "{key}={value}");
        }
        let mut no_owner = good.clone();
        no_owner.remove("owner");
        assert!(!matches(&selector, &no_owner));
        assert!(
            matches(&LabelSelector::default(), &BTreeMap::new()),
            "empty matches all"
        );
        let odd = LabelSelector {
            match_expressions: Some(vec![term("a", "Gt", &["1"])]),
            ..Default::default()
        };
        assert!(!matches(&odd, &labels(&[("a", "2")])));
    }
}
