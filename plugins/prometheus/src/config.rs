//! `prometheus.yaml`, the configuration of one Prometheus: `global` with
//! its intervals and the `prometheus: <namespace>/<name>` external label,
//! `rule_files` pointing at the mounted rules ConfigMap, the scrape jobs of
//! the selected monitors (see [`crate::scrape`]) and the Alertmanagers of
//! `spec.alerting`.
//!
//! Paths: the config Secret is mounted at [`CONFIG_DIR`] and the rules
//! ConfigMap at `RULES_DIR/<configmap>`. `rule_files` is relative to the
//! config file's folder (Prometheus resolves it so), which lets
//! `promtool check config` check the same layout anywhere.

use crate::monitors::{Discovery, Monitor};
use crate::scrape::{self, Relabel, ScrapeConfig, SdConfig};
use crate::spec::{Alertmanager, Checked, EXTERNAL_LABEL};
use serde::Serialize;
use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Where the config Secret is mounted.
pub const CONFIG_DIR: &str = "/etc/prometheus/config";
/// The Secret's key holding the configuration.
pub const CONFIG_KEY: &str = "prometheus.yaml";
/// Where the rules ConfigMaps are mounted, one folder each.
pub const RULES_DIR: &str = "/etc/prometheus/rules";
/// [`RULES_DIR`] seen from [`CONFIG_DIR`].
const RULES_DIR_FROM_CONFIG: &str = "../rules";

/// The configuration file.
#[derive(Debug, Serialize)]
struct Config {
    global: Global,
    rule_files: Vec<String>,
    scrape_configs: Vec<ScrapeConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    alerting: Option<Alerting>,
}

#[derive(Debug, Serialize)]
struct Global {
    scrape_interval: String,
    evaluation_interval: String,
    external_labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize)]
struct Alerting {
    alertmanagers: Vec<AlertmanagerConfig>,
}

#[derive(Debug, Serialize)]
struct AlertmanagerConfig {
    path_prefix: String,
    scheme: String,
    api_version: &'static str,
    kubernetes_sd_configs: Vec<SdConfig>,
    relabel_configs: Vec<Relabel>,
}

/// The path of the configuration file in the Prometheus container.
pub fn config_file() -> String {
    format!("{CONFIG_DIR}/{CONFIG_KEY}")
}

/// The `rule_files` glob for the rules ConfigMap `configmap`, relative to
/// [`CONFIG_DIR`] (`../rules/<configmap>/*.yaml`).
pub fn rule_glob(configmap: &str) -> String {
    format!("{RULES_DIR_FROM_CONFIG}/{configmap}/*.yaml")
}

/// Alerts go to the endpoints of the Service `am.name` behind the port.
fn alertmanager(am: &Alertmanager) -> AlertmanagerConfig {
    let port = match &am.port {
        IntOrString::String(name) => Relabel::keep(&["__meta_kubernetes_endpoint_port_name"], name.clone()),
        IntOrString::Int(number) => Relabel::keep(&["__meta_kubernetes_pod_container_port_number"], number.to_string()),
    };
    AlertmanagerConfig {
        path_prefix: am.path_prefix.clone(),
        scheme: am.scheme.clone(),
        api_version: "v2",
        kubernetes_sd_configs: vec![SdConfig::new(
            "endpoints",
            &Discovery::Names(vec![am.namespace.clone()]),
        )],
        relabel_configs: vec![
            Relabel::keep(&["__meta_kubernetes_service_name"], am.name.clone()),
            port,
        ],
    }
}

/// `prometheus.yaml` for the Prometheus `namespace/name` with `monitors`
/// (ServiceMonitors first, each in order) and the rules ConfigMap
/// `rules_configmap`.
pub fn render(spec: &Checked, namespace: &str, name: &str, monitors: &[Monitor], rules_configmap: &str) -> String {
    let mut external_labels = spec.external_labels.clone();
    external_labels.insert(EXTERNAL_LABEL.to_owned(), format!("{namespace}/{name}"));
    let config = Config {
        global: Global {
            scrape_interval: spec.scrape_interval.to_owned(),
            evaluation_interval: spec.evaluation_interval.to_owned(),
            external_labels,
        },
        rule_files: vec![rule_glob(rules_configmap)],
        scrape_configs: monitors.iter().flat_map(scrape::jobs).collect(),
        alerting: (!spec.alertmanagers.is_empty()).then(|| Alerting {
            alertmanagers: spec.alertmanagers.iter().map(alertmanager).collect(),
        }),
    };
    serde_yaml::to_string(&config).expect("the configuration serialises to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Spec;
    use trellis_sdk::serde_json::{self, json};

    #[test]
    fn paths_meet_in_the_container() {
        assert_eq!(config_file(), "/etc/prometheus/config/prometheus.yaml");
        let glob = rule_glob("prometheus-k8s-rulefiles-0");
        assert_eq!(glob, "../rules/prometheus-k8s-rulefiles-0/*.yaml");
        // Relative to the config file's folder, the glob lands in RULES_DIR.
        let resolved = format!("{CONFIG_DIR}/{glob}").replace("/config/../", "/");
        assert_eq!(resolved, format!("{RULES_DIR}/prometheus-k8s-rulefiles-0/*.yaml"));
    }

    #[test]
    fn a_prometheus_without_monitors_names_itself_and_its_alertmanagers() {
        let spec: Spec = serde_json::from_value(json!({
            "scrapeInterval": "1m",
            "externalLabels": {"cluster": "eu-1"},
            "alerting": {"alertmanagers": [
                {"namespace": "default", "name": "alertmanager-example", "port": "web"},
                {"name": "am", "port": 9093, "scheme": "https", "pathPrefix": "/am"},
            ]},
        }))
        .unwrap();
        let checked = spec.checked("mon").unwrap();
        let text = render(&checked, "mon", "k8s", &[], "prometheus-k8s-rulefiles-0");
        let expected = r#"global:
  scrape_interval: 1m
  evaluation_interval: 30s
  external_labels:
    cluster: eu-1
    prometheus: mon/k8s
rule_files:
- ../rules/prometheus-k8s-rulefiles-0/*.yaml
scrape_configs: []
alerting:
  alertmanagers:
  - path_prefix: /
    scheme: http
    api_version: v2
    kubernetes_sd_configs:
    - role: endpoints
      namespaces:
        names:
        - default
    relabel_configs:
    - action: keep
      source_labels:
      - __meta_kubernetes_service_name
      regex: alertmanager-example
    - action: keep
      source_labels:
      - __meta_kubernetes_endpoint_port_name
      regex: web
  - path_prefix: /am
    scheme: https
    api_version: v2
    kubernetes_sd_configs:
    - role: endpoints
      namespaces:
        names:
        - mon
    relabel_configs:
    - action: keep
      source_labels:
      - __meta_kubernetes_service_name
      regex: am
    - action: keep
      source_labels:
      - __meta_kubernetes_pod_container_port_number
      regex: '9093'
"#;
        assert_eq!(text, expected);
    }

    #[test]
    fn no_alerting_section_without_alertmanagers() {
        let spec = Spec::default();
        let text = render(&spec.checked("ns").unwrap(), "ns", "p", &[], "prometheus-p-rulefiles-0");
        assert!(!text.contains("alerting"), "{text}");
    }
}
