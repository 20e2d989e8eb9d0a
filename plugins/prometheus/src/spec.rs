//! The `Prometheus` custom resource as prometheus-operator users write it
//! (only the fields the plugin reads), and the checks that turn it into
//! settled values.

use crate::duration;
use crate::selector::{self, Scope};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::api::core::v1::ResourceRequirements;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The Prometheus release run when `spec.version` is empty.
pub const DEFAULT_VERSION: &str = "v3.5.0";
/// Where Prometheus images come from; tags are `v<version>`.
pub const REPOSITORY: &str = "quay.io/prometheus/prometheus";
/// prometheus-operator's default scrape and evaluation interval.
pub const DEFAULT_INTERVAL: &str = "30s";
/// The external label naming the Prometheus (`<namespace>/<name>`).
pub const EXTERNAL_LABEL: &str = "prometheus";

/// A `Prometheus` (only what the plugin reads).
#[derive(Debug, Deserialize)]
pub struct Parent {
    #[serde(default)]
    pub spec: Spec,
}

// The CRD, deploy/crds/monitoring.coreos.com_prometheuses.yaml, is generated
// from `Spec` and `crate::Status` by kube's `CustomResource` derive, in tests
// only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-prometheus crd`.
// The spec keeps the fields the plugin does not read (storage, retention,
// remoteWrite, ...) as written: prometheus-operator users' objects carry them.

/// The desired Prometheus servers: a StatefulSet scraping the selected
/// ServiceMonitors and PodMonitors and evaluating the selected
/// PrometheusRules. Field names as in `monitoring.coreos.com/v1`; the fields
/// the plugin does not read are kept as written and ignored.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
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
        kind = "Prometheus",
        plural = "prometheuses",
        namespaced,
        status = "crate::Status",
        shortname = "prom",
        category = "prometheus-operator",
        doc = "prometheus-operator's Prometheus, reconciled by the prometheus plugin (plugins/prometheus)",
        printcolumn = r#"{"name": "Version", "type": "string", "jsonPath": ".spec.version", "description": "The version of Prometheus"}"#,
        printcolumn = r#"{"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas", "description": "The number of desired replicas"}"#,
        printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.availableReplicas", "description": "The number of ready replicas"}"#,
        printcolumn = r#"{"name": "Reconciled", "type": "string", "jsonPath": ".status.conditions[?(@.type == 'Reconciled')].status"}"#,
        printcolumn = r#"{"name": "Available", "type": "string", "jsonPath": ".status.conditions[?(@.type == 'Available')].status"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub struct Spec {
    /// The Prometheus release (default v3.5.0).
    pub version: Option<String>,
    /// The image, in place of the release's.
    pub image: Option<String>,
    /// The number of servers (default 1).
    #[cfg_attr(test, schemars(range(min = 0)))]
    pub replicas: Option<i32>,
    pub service_account_name: Option<String>,
    /// The servers' compute resources.
    #[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_descriptions))]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, rename = "enableAdminAPI")]
    pub enable_admin_api: bool,
    /// How often targets are scraped (default 30s).
    #[cfg_attr(test, schemars(pattern(duration::PATTERN)))]
    pub scrape_interval: Option<String>,
    /// How often rules are evaluated (default 30s).
    #[cfg_attr(test, schemars(pattern(duration::PATTERN)))]
    pub evaluation_interval: Option<String>,
    #[serde(default)]
    pub external_labels: BTreeMap<String, String>,
    pub alerting: Option<Alerting>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    pub service_monitor_selector: Option<LabelSelector>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    pub service_monitor_namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    pub pod_monitor_selector: Option<LabelSelector>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    pub pod_monitor_namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    pub rule_selector: Option<LabelSelector>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    pub rule_namespace_selector: Option<LabelSelector>,
}

/// `spec.alerting`.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
pub struct Alerting {
    #[serde(default)]
    pub alertmanagers: Vec<AlertmanagerEndpoints>,
}

/// One entry of `spec.alerting.alertmanagers`: the endpoints of a Service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(
    test,
    schemars(extend("x-kubernetes-preserve-unknown-fields" = true, "required" = ["name", "port"]))
)]
pub struct AlertmanagerEndpoints {
    pub namespace: Option<String>,
    #[serde(default)]
    #[cfg_attr(test, schemars(length(min = 1)))]
    pub name: String,
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::int_or_string"))]
    pub port: Option<IntOrString>,
    pub scheme: Option<String>,
    pub path_prefix: Option<String>,
    pub api_version: Option<String>,
}

/// An Alertmanager Service whose endpoints receive the alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alertmanager {
    pub namespace: String,
    pub name: String,
    pub port: IntOrString,
    pub scheme: String,
    pub path_prefix: String,
}

/// What one kind of object (ServiceMonitors, PodMonitors, PrometheusRules)
/// is selected by: its label selector (`None` selects nothing) and the
/// namespaces it is looked for in.
#[derive(Debug, Clone, Copy)]
pub struct Selection<'a> {
    pub labels: Option<&'a LabelSelector>,
    pub namespaces: Scope<'a>,
}

/// A spec that passed the checks.
#[derive(Debug)]
pub struct Checked<'a> {
    pub replicas: i32,
    pub image: String,
    pub service_account: Option<&'a str>,
    pub resources: Option<&'a ResourceRequirements>,
    pub admin_api: bool,
    pub scrape_interval: &'a str,
    pub evaluation_interval: &'a str,
    pub external_labels: &'a BTreeMap<String, String>,
    pub alertmanagers: Vec<Alertmanager>,
    pub service_monitors: Selection<'a>,
    pub pod_monitors: Selection<'a>,
    pub rules: Selection<'a>,
}

impl Checked<'_> {
    /// The scrape interval in milliseconds (checked, so it parses).
    pub fn scrape_interval_millis(&self) -> u64 {
        duration::millis(self.scrape_interval).unwrap_or_default()
    }
}

/// `v3.5.0` from `3.5.0` or `v3.5.0`; `None` unless a release number,
/// optionally with a pre-release or build suffix.
fn release(version: &str) -> Option<String> {
    let bare = version.strip_prefix('v').unwrap_or(version);
    let (core, suffix) = match bare.find(['-', '+']) {
        Some(at) => bare.split_at(at),
        None => (bare, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    let numeric = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    let suffix_ok = suffix
        .chars()
        .skip(1)
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
    (parts.len() == 3 && parts.iter().all(numeric) && suffix != "-" && suffix != "+" && suffix_ok)
        .then(|| format!("v{bare}"))
}

/// Whether `name` is a valid Prometheus label name (the legacy charset,
/// which every version accepts).
pub fn is_prometheus_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn interval<'a>(field: &str, value: Option<&'a str>) -> Result<&'a str, String> {
    match value.filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_INTERVAL),
        Some(v) if duration::millis(v).is_some_and(|ms| ms > 0) => Ok(v),
        Some(v) => Err(format!("{field} {v:?} is not a duration such as 30s or 1m")),
    }
}

fn selection<'a>(labels: &'a Option<LabelSelector>, namespaces: &'a Option<LabelSelector>) -> Selection<'a> {
    Selection {
        labels: labels.as_ref(),
        namespaces: Scope::of(namespaces.as_ref()),
    }
}

fn alertmanager(at: usize, own_namespace: &str, am: &AlertmanagerEndpoints) -> Result<Alertmanager, String> {
    let field = format!("alerting.alertmanagers[{at}]");
    if am.name.is_empty() {
        return Err(format!("{field}.name is required"));
    }
    let port = match &am.port {
        Some(IntOrString::String(name)) if !name.is_empty() && selector::is_label_value(name) => {
            IntOrString::String(name.clone())
        }
        Some(IntOrString::Int(number)) if (1..=65535).contains(number) => IntOrString::Int(*number),
        Some(IntOrString::String(name)) => return Err(format!("{field}.port {name:?} is not a port name")),
        Some(IntOrString::Int(number)) => return Err(format!("{field}.port {number} is not a port number")),
        None => return Err(format!("{field}.port is required")),
    };
    let scheme = am.scheme.as_deref().unwrap_or("http").to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!("{field}.scheme {scheme:?} is neither http nor https"));
    }
    if let Some(api) = am.api_version.as_deref().filter(|v| !v.eq_ignore_ascii_case("v2")) {
        return Err(format!(
            "{field}.apiVersion {api:?} is not supported: Prometheus 3 speaks v2 only"
        ));
    }
    Ok(Alertmanager {
        namespace: am
            .namespace
            .clone()
            .filter(|ns| !ns.is_empty())
            .unwrap_or_else(|| own_namespace.to_owned()),
        name: am.name.clone(),
        port,
        scheme,
        path_prefix: am
            .path_prefix
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".to_owned()),
    })
}

impl Spec {
    /// Checks the spec of a Prometheus in `namespace`; the error is a
    /// sentence for the status.
    pub fn checked(&self, namespace: &str) -> Result<Checked<'_>, String> {
        let replicas = self.replicas.unwrap_or(1);
        if replicas < 0 {
            return Err(format!("replicas must be at least 0, not {replicas}"));
        }
        let wanted = self.version.as_deref().map(str::trim).filter(|v| !v.is_empty());
        let version = release(wanted.unwrap_or(DEFAULT_VERSION))
            .ok_or_else(|| format!("version {:?} is not a release like v3.5.0", wanted.unwrap_or_default()))?;
        let image = match self.image.as_deref().map(str::trim).filter(|i| !i.is_empty()) {
            Some(image) => image.to_owned(),
            None => format!("{REPOSITORY}:{version}"),
        };
        for (name, value) in [
            ("serviceMonitorSelector", &self.service_monitor_selector),
            (
                "serviceMonitorNamespaceSelector",
                &self.service_monitor_namespace_selector,
            ),
            ("podMonitorSelector", &self.pod_monitor_selector),
            ("podMonitorNamespaceSelector", &self.pod_monitor_namespace_selector),
            ("ruleSelector", &self.rule_selector),
            ("ruleNamespaceSelector", &self.rule_namespace_selector),
        ] {
            if let Some(s) = value {
                selector::check(s).map_err(|e| format!("{name}: {e}"))?;
            }
        }
        if let Some(name) = self.external_labels.keys().find(|k| !is_prometheus_label_name(k)) {
            return Err(format!("externalLabels: {name:?} is not a valid label name"));
        }
        if self.external_labels.contains_key(EXTERNAL_LABEL) {
            return Err(format!(
                "externalLabels: {EXTERNAL_LABEL:?} is set by the plugin to <namespace>/<name>"
            ));
        }
        let alertmanagers = self
            .alerting
            .iter()
            .flat_map(|a| a.alertmanagers.iter())
            .enumerate()
            .map(|(at, am)| alertmanager(at, namespace, am))
            .collect::<Result<_, _>>()?;
        Ok(Checked {
            replicas,
            image,
            service_account: self.service_account_name.as_deref().filter(|s| !s.is_empty()),
            resources: self.resources.as_ref(),
            admin_api: self.enable_admin_api,
            scrape_interval: interval("scrapeInterval", self.scrape_interval.as_deref())?,
            evaluation_interval: interval("evaluationInterval", self.evaluation_interval.as_deref())?,
            external_labels: &self.external_labels,
            alertmanagers,
            service_monitors: selection(&self.service_monitor_selector, &self.service_monitor_namespace_selector),
            pod_monitors: selection(&self.pod_monitor_selector, &self.pod_monitor_namespace_selector),
            rules: selection(&self.rule_selector, &self.rule_namespace_selector),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_sdk::serde_json::{self, Value, json};

    fn spec(json: Value) -> Spec {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn defaults_are_the_operators() {
        let s = spec(json!({}));
        let c = s.checked("default").unwrap();
        assert_eq!(c.replicas, 1);
        assert_eq!(c.image, "quay.io/prometheus/prometheus:v3.5.0");
        assert!(!c.admin_api);
        assert_eq!((c.scrape_interval, c.evaluation_interval), ("30s", "30s"));
        assert_eq!(c.scrape_interval_millis(), 30_000);
        assert!(c.service_monitors.labels.is_none(), "a nil selector selects none");
        assert_eq!(c.rules.namespaces, Scope::Own);
        assert!(c.alertmanagers.is_empty());
    }

    #[test]
    fn versions_and_images() {
        let image = |s: Value| spec(s).checked("ns").map(|c| c.image);
        assert_eq!(
            image(json!({"version": "3.4.1"})).unwrap(),
            "quay.io/prometheus/prometheus:v3.4.1"
        );
        assert_eq!(
            image(json!({"version": "v3.5.0-rc.0"})).unwrap(),
            "quay.io/prometheus/prometheus:v3.5.0-rc.0"
        );
        assert_eq!(
            image(json!({"version": ""})).unwrap(),
            "quay.io/prometheus/prometheus:v3.5.0"
        );
        assert_eq!(
            image(json!({"image": "registry.local/prom:3"})).unwrap(),
            "registry.local/prom:3"
        );
        for bad in [
            "latest", "3.5", "v3.5.0-", "v3.5.0+", "3.x.0", "v3..0", "3.5.0 x", "vv3.5.0",
        ] {
            assert!(image(json!({"version": bad})).is_err(), "{bad}");
        }
        assert_eq!(
            image(json!({"version": "latest"})).unwrap_err(),
            "version \"latest\" is not a release like v3.5.0"
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let error = |s: Value| spec(s).checked("ns").unwrap_err();
        assert_eq!(error(json!({"replicas": -1})), "replicas must be at least 0, not -1");
        assert_eq!(
            error(json!({"scrapeInterval": "30"})),
            "scrapeInterval \"30\" is not a duration such as 30s or 1m"
        );
        assert!(error(json!({"evaluationInterval": "0s"})).starts_with("evaluationInterval"));
        let bad_selector = json!({"ruleSelector": {"matchExpressions": [{"key": "a", "operator": "Has"}]}});
        assert!(error(bad_selector).starts_with("ruleSelector: matchExpressions operator \"Has\""));
        assert!(error(json!({"externalLabels": {"a-b": "x"}})).contains("\"a-b\" is not a valid label name"));
        assert!(error(json!({"externalLabels": {"prometheus": "x"}})).contains("set by the plugin"));
    }

    #[test]
    fn alertmanagers_default_to_the_own_namespace_http_and_slash() {
        let s = spec(json!({"alerting": {"alertmanagers": [
            {"name": "am", "port": "web"},
            {"namespace": "mon", "name": "am2", "port": 9093, "scheme": "HTTPS", "pathPrefix": "/am", "apiVersion": "V2"},
        ]}}));
        let c = s.checked("default").unwrap();
        assert_eq!(
            c.alertmanagers,
            [
                Alertmanager {
                    namespace: "default".into(),
                    name: "am".into(),
                    port: IntOrString::String("web".into()),
                    scheme: "http".into(),
                    path_prefix: "/".into(),
                },
                Alertmanager {
                    namespace: "mon".into(),
                    name: "am2".into(),
                    port: IntOrString::Int(9093),
                    scheme: "https".into(),
                    path_prefix: "/am".into(),
                },
            ]
        );
    }

    #[test]
    fn bad_alertmanagers_are_named() {
        let error = |am: Value| {
            spec(json!({"alerting": {"alertmanagers": [am]}}))
                .checked("ns")
                .unwrap_err()
        };
        assert_eq!(
            error(json!({"port": "web"})),
            "alerting.alertmanagers[0].name is required"
        );
        assert_eq!(
            error(json!({"name": "am"})),
            "alerting.alertmanagers[0].port is required"
        );
        assert!(error(json!({"name": "am", "port": "(web"})).contains("is not a port name"));
        assert!(error(json!({"name": "am", "port": 0})).contains("0 is not a port number"));
        assert!(error(json!({"name": "am", "port": "web", "scheme": "ftp"})).contains("neither http nor https"));
        assert!(error(json!({"name": "am", "port": "web", "apiVersion": "v1"})).contains("v2 only"));
    }

    #[test]
    fn namespace_scopes_of_the_selectors() {
        let s = spec(json!({
            "serviceMonitorSelector": {}, "serviceMonitorNamespaceSelector": {"matchLabels": {"a": "b"}},
            "ruleSelector": {"matchLabels": {"role": "x"}}, "ruleNamespaceSelector": {},
        }));
        let c = s.checked("ns").unwrap();
        assert!(matches!(c.service_monitors.namespaces, Scope::Matching(_)));
        assert!(c.service_monitors.labels.is_some_and(selector::is_empty));
        assert_eq!(c.rules.namespaces, Scope::All);
        assert_eq!(c.pod_monitors.namespaces, Scope::Own);
    }
}
