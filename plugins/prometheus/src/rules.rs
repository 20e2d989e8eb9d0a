//! PrometheusRules as prometheus-operator users write them: each selected
//! one becomes a file of the rules ConfigMap, unless Prometheus would
//! refuse its shape (then it is skipped with a reason, the other files
//! stand).

use crate::monitors::identity;
use serde::Deserialize;
use std::collections::BTreeSet;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use trellis_sdk::serde_json::{self, Value};

/// A checked PrometheusRule: one file of the rules ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    /// `<namespace>-<name>.yaml`.
    pub key: String,
    /// The rule's `spec` (its groups) as YAML.
    pub content: String,
}

/// Checks the shape Prometheus needs of a rule file: groups with unique
/// names, each rule with a `record` or an `alert` (not both) and an
/// `expr`. The PromQL itself is Prometheus's to judge.
fn check_groups(groups: &Value) -> Result<(), String> {
    let groups = groups.as_array().ok_or("spec.groups is not a list")?;
    let mut names = BTreeSet::new();
    for (at, group) in groups.iter().enumerate() {
        let name = group["name"]
            .as_str()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("group {at} has no name"))?;
        if !names.insert(name) {
            return Err(format!("group name {name:?} is used twice"));
        }
        let rules = group["rules"].as_array().map(Vec::as_slice).unwrap_or_default();
        for (i, rule) in rules.iter().enumerate() {
            let record = rule["record"].as_str().is_some_and(|r| !r.is_empty());
            let alert = rule["alert"].as_str().is_some_and(|a| !a.is_empty());
            if record == alert {
                return Err(format!("group {name:?} rule {i} needs exactly one of record and alert"));
            }
            let expr = match &rule["expr"] {
                Value::String(s) => !s.trim().is_empty(),
                Value::Number(_) => true,
                _ => false,
            };
            if !expr {
                return Err(format!("group {name:?} rule {i} has no expr"));
            }
        }
    }
    Ok(())
}

/// Checks a PrometheusRule and renders its file; the error says why it is
/// skipped.
pub fn rule_file(object: &Value) -> Result<RuleFile, String> {
    let meta = ObjectMeta::deserialize(&object["metadata"]).map_err(|e| e.to_string())?;
    let (namespace, name) = identity(&meta)?;
    let groups = object["spec"]
        .get("groups")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    check_groups(&groups)?;
    let content = serde_yaml::to_string(&serde_json::json!({ "groups": groups })).map_err(|e| e.to_string())?;
    Ok(RuleFile {
        key: format!("{namespace}-{name}.yaml"),
        content,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitors::API_VERSION;
    use trellis_sdk::serde_json::json;

    fn rule(spec: Value) -> Result<RuleFile, String> {
        rule_file(&json!({
            "apiVersion": API_VERSION, "kind": "PrometheusRule",
            "metadata": {"name": "alerts", "namespace": "mon"}, "spec": spec,
        }))
    }

    #[test]
    fn a_rule_file_is_its_groups() {
        let file = rule(json!({"groups": [{"name": "g", "rules": [
            {"alert": "Down", "expr": "up == 0", "for": "5m", "labels": {"severity": "page"}},
            {"record": "job:up:sum", "expr": "sum by (job) (up)"},
        ]}]}))
        .unwrap();
        assert_eq!(file.key, "mon-alerts.yaml");
        let parsed: Value = serde_yaml::from_str(&file.content).unwrap();
        assert_eq!(parsed["groups"][0]["rules"][0]["expr"], "up == 0");
        assert_eq!(parsed["groups"][0]["rules"][1]["record"], "job:up:sum");
        assert_eq!(rule(json!({})).unwrap().content, "groups: []\n");
    }

    #[test]
    fn rule_files_prometheus_would_refuse_are_named() {
        let error = |groups: Value| rule(json!({ "groups": groups })).unwrap_err();
        assert_eq!(error(json!("g")), "spec.groups is not a list");
        assert_eq!(error(json!([{"rules": []}])), "group 0 has no name");
        assert_eq!(
            error(json!([{"name": "g"}, {"name": "g"}])),
            "group name \"g\" is used twice"
        );
        let both = json!([{"name": "g", "rules": [{"alert": "A", "record": "r", "expr": "1"}]}]);
        assert_eq!(error(both), "group \"g\" rule 0 needs exactly one of record and alert");
        let no_expr = json!([{"name": "g", "rules": [{"alert": "A"}]}]);
        assert_eq!(error(no_expr), "group \"g\" rule 0 has no expr");
    }
}
