//! PrometheusRules as prometheus-operator users write them: each selected
//! one becomes a file of the rules ConfigMap, unless Prometheus would
//! refuse its shape (then it is skipped with a reason, the other files
//! stand).

use crate::monitors::identity;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
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

// The CRD, deploy/crds/monitoring.coreos.com_prometheusrules.yaml, is
// generated from `RulesSpec` by kube's `CustomResource` derive, in tests
// only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-prometheus crd`.
// The file the plugin writes is the groups as their author wrote them, with
// the fields the plugin does not read (limit, keep_firing_for, ...).

/// Recording and alerting rules, in groups, that a Prometheus evaluates.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    test,
    schemars(
        transform = trellis_sdk::crd::without_defaults,
        extend("x-kubernetes-preserve-unknown-fields" = true)
    )
)]
#[cfg_attr(
    test,
    kube(
        group = "monitoring.coreos.com",
        version = "v1",
        kind = "PrometheusRule",
        namespaced,
        shortname = "promrule",
        category = "prometheus-operator",
        doc = "prometheus-operator's PrometheusRule, read by the prometheus plugin (plugins/prometheus)",
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub(crate) struct RulesSpec {
    #[serde(default)]
    groups: Vec<RuleGroup>,
}

/// A group of rules, evaluated together.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(
    test,
    schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "required" = ["name"]))
)]
struct RuleGroup {
    /// Unique among the groups of the PrometheusRule.
    #[serde(default)]
    #[cfg_attr(test, schemars(length(min = 1)))]
    name: String,
    #[cfg_attr(test, schemars(pattern(crate::duration::PATTERN)))]
    interval: Option<String>,
    #[serde(default)]
    rules: Vec<Rule>,
}

/// A recording rule (`record`) or an alerting rule (`alert`).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(extend("x-kubernetes-preserve-unknown-fields" = true)))]
struct Rule {
    record: Option<String>,
    alert: Option<String>,
    /// The PromQL expression.
    // A JSON value, not an IntOrString: any number is an expression.
    #[cfg_attr(test, schemars(required, schema_with = "trellis_sdk::crd::int_or_string"))]
    expr: Option<Value>,
    #[cfg_attr(test, schemars(pattern(crate::duration::PATTERN)))]
    #[serde(rename = "for")]
    for_: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Checks the shape Prometheus needs of a rule file: groups with unique
/// names, each rule with a `record` or an `alert` (not both) and an
/// `expr`. The PromQL itself is Prometheus's to judge.
fn check_groups(groups: &[RuleGroup]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for (at, group) in groups.iter().enumerate() {
        let name = group.name.as_str();
        if name.is_empty() {
            return Err(format!("group {at} has no name"));
        }
        if !names.insert(name) {
            return Err(format!("group name {name:?} is used twice"));
        }
        for (i, rule) in group.rules.iter().enumerate() {
            let set = |field: &Option<String>| field.as_deref().is_some_and(|f| !f.is_empty());
            if set(&rule.record) == set(&rule.alert) {
                return Err(format!("group {name:?} rule {i} needs exactly one of record and alert"));
            }
            let expr = match &rule.expr {
                Some(Value::String(s)) => !s.trim().is_empty(),
                Some(Value::Number(_)) => true,
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
    let spec = match object.get("spec").filter(|spec| !spec.is_null()) {
        Some(spec) => RulesSpec::deserialize(spec).map_err(|e| format!("spec: {e}"))?,
        None => RulesSpec::default(),
    };
    check_groups(&spec.groups)?;
    let groups = object["spec"]
        .get("groups")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
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
        let number = json!({"groups": [{"name": "g", "rules": [{"record": "r", "expr": 1.5}]}]});
        assert!(rule(number).is_ok(), "a number is an expression");
    }

    #[test]
    fn rule_files_prometheus_would_refuse_are_named() {
        let error = |groups: Value| rule(json!({ "groups": groups })).unwrap_err();
        assert!(error(json!("g")).starts_with("spec: invalid type"));
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
