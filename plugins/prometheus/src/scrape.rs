//! The scrape jobs of ServiceMonitors and PodMonitors, with the Kubernetes
//! service discovery and relabelling prometheus-operator generates: one job
//! per endpoint (`serviceMonitor/<ns>/<name>/<i>`, `podMonitor/...`),
//! targets kept by the monitor's label selector and port, and the
//! `namespace`, `service`, `pod`, `container`, `job` and `endpoint` labels.

use crate::monitors::{Discovery, Endpoint, Kind, Monitor};
use crate::selector::{self, Operator};
use serde::Serialize;

/// One `kubernetes_sd_configs` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdConfig {
    pub role: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<SdNamespaces>,
}

/// `namespaces` of a Kubernetes SD config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SdNamespaces {
    pub names: Vec<String>,
}

impl SdConfig {
    /// Discovers `role` objects in `discovery`'s namespaces.
    pub fn new(role: &'static str, discovery: &Discovery) -> Self {
        Self {
            role,
            namespaces: match discovery {
                Discovery::Any => None,
                Discovery::Names(names) => Some(SdNamespaces { names: names.clone() }),
            },
        }
    }
}

/// One relabelling step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Relabel {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub separator: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
}

impl Relabel {
    /// Keeps targets whose `sources` match `regex`.
    pub fn keep(sources: &[&str], regex: impl Into<String>) -> Self {
        Self::filter("keep", sources, regex)
    }

    /// Drops targets whose `sources` match `regex`.
    pub fn drop(sources: &[&str], regex: impl Into<String>) -> Self {
        Self::filter("drop", sources, regex)
    }

    fn filter(action: &'static str, sources: &[&str], regex: impl Into<String>) -> Self {
        Self {
            action: Some(action),
            source_labels: sources.iter().map(|s| (*s).to_owned()).collect(),
            regex: Some(regex.into()),
            ..Self::default()
        }
    }

    /// Copies `source` into `target`.
    fn copy(source: &str, target: &str) -> Self {
        Self {
            source_labels: vec![source.to_owned()],
            target_label: Some(target.to_owned()),
            ..Self::default()
        }
    }

    /// Copies a non-empty `source` into `target` (leaving it otherwise).
    fn copy_if_set(source: &str, target: &str) -> Self {
        Self {
            regex: Some("(.+)".to_owned()),
            replacement: Some("${1}".to_owned()),
            ..Self::copy(source, target)
        }
    }

    /// Sets `target` to `value`.
    fn set(target: &str, value: &str) -> Self {
        Self {
            target_label: Some(target.to_owned()),
            replacement: Some(value.to_owned()),
            ..Self::default()
        }
    }

    /// `node` or `pod` from the kind of object behind an endpoint address.
    fn address_target(kind: &str, target: &str) -> Self {
        Self {
            source_labels: vec![
                "__meta_kubernetes_endpoint_address_target_kind".to_owned(),
                "__meta_kubernetes_endpoint_address_target_name".to_owned(),
            ],
            separator: Some(";"),
            regex: Some(format!("{kind};(.*)")),
            replacement: Some("${1}".to_owned()),
            target_label: Some(target.to_owned()),
            ..Self::default()
        }
    }
}

/// One scrape job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub honor_labels: bool,
    pub kubernetes_sd_configs: Vec<SdConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    pub relabel_configs: Vec<Relabel>,
}

/// A label name as Prometheus meta labels spell it: every character
/// outside `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' })
        .collect()
}

/// Keeps the targets whose Service (or Pod) labels satisfy `selector`,
/// through the `<prefix>_label_<key>` and `<prefix>_labelpresent_<key>`
/// meta labels.
fn selector_relabelings(
    prefix: &str,
    selector: &trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
) -> Vec<Relabel> {
    let value = |key: &str| format!("{prefix}_label_{}", sanitize(key));
    let present = |key: &str| format!("{prefix}_labelpresent_{}", sanitize(key));
    let mut steps: Vec<Relabel> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(key, v)| Relabel::keep(&[&value(key), &present(key)], format!("({v});true")))
        .collect();
    for requirement in selector.match_expressions.iter().flatten() {
        let key = requirement.key.as_str();
        let values = selector::values(requirement).join("|");
        steps.push(match selector::operator(requirement) {
            Some(Operator::In) => Relabel::keep(&[&value(key), &present(key)], format!("({values});true")),
            Some(Operator::NotIn) => Relabel::drop(&[&value(key), &present(key)], format!("({values});true")),
            Some(Operator::Exists) => Relabel::keep(&[&present(key)], "true"),
            // Checked selectors have no other operator.
            Some(Operator::DoesNotExist) | None => Relabel::drop(&[&present(key)], "true"),
        });
    }
    steps
}

/// Drops the targets of pods that have ended.
fn running_filter() -> Relabel {
    Relabel::drop(&["__meta_kubernetes_pod_phase"], "(Failed|Succeeded)")
}

fn job(
    monitor: &Monitor,
    at: usize,
    endpoint: &Endpoint,
    role: &'static str,
    relabel_configs: Vec<Relabel>,
) -> ScrapeConfig {
    let prefix = match monitor.kind {
        Kind::Service => "serviceMonitor",
        Kind::Pod => "podMonitor",
    };
    ScrapeConfig {
        job_name: format!("{prefix}/{}/{}/{at}", monitor.namespace, monitor.name),
        honor_labels: endpoint.honor_labels,
        kubernetes_sd_configs: vec![SdConfig::new(role, &monitor.discovery)],
        scrape_interval: endpoint.interval.clone(),
        scrape_timeout: endpoint.scrape_timeout.clone(),
        metrics_path: endpoint.path.clone(),
        scheme: endpoint.scheme.clone(),
        relabel_configs,
    }
}

/// The job of endpoint `at` of a ServiceMonitor.
fn service_job(monitor: &Monitor, at: usize, endpoint: &Endpoint) -> ScrapeConfig {
    let mut steps = vec![Relabel::copy("job", "__tmp_prometheus_job_name")];
    steps.extend(selector_relabelings("__meta_kubernetes_service", &monitor.selector));
    steps.extend(
        endpoint
            .port
            .iter()
            .map(|p| Relabel::keep(&[p.source_label], p.regex.clone())),
    );
    steps.extend([
        Relabel::address_target("Node", "node"),
        Relabel::address_target("Pod", "pod"),
        Relabel::copy("__meta_kubernetes_namespace", "namespace"),
        Relabel::copy("__meta_kubernetes_service_name", "service"),
        Relabel::copy("__meta_kubernetes_pod_name", "pod"),
        Relabel::copy("__meta_kubernetes_pod_container_name", "container"),
        running_filter(),
    ]);
    for label in &monitor.target_labels {
        steps.push(Relabel::copy_if_set(
            &format!("__meta_kubernetes_service_label_{}", sanitize(label)),
            &sanitize(label),
        ));
    }
    for label in &monitor.pod_target_labels {
        steps.push(Relabel::copy_if_set(
            &format!("__meta_kubernetes_pod_label_{}", sanitize(label)),
            &sanitize(label),
        ));
    }
    steps.push(Relabel {
        replacement: Some("${1}".to_owned()),
        ..Relabel::copy("__meta_kubernetes_service_name", "job")
    });
    if let Some(label) = &monitor.job_label {
        steps.push(Relabel::copy_if_set(
            &format!("__meta_kubernetes_service_label_{}", sanitize(label)),
            "job",
        ));
    }
    steps.extend(
        endpoint
            .endpoint_label
            .iter()
            .map(|port| Relabel::set("endpoint", port)),
    );
    job(monitor, at, endpoint, "endpoints", steps)
}

/// The job of endpoint `at` of a PodMonitor.
fn pod_job(monitor: &Monitor, at: usize, endpoint: &Endpoint) -> ScrapeConfig {
    let mut steps = vec![Relabel::copy("job", "__tmp_prometheus_job_name"), running_filter()];
    steps.extend(selector_relabelings("__meta_kubernetes_pod", &monitor.selector));
    steps.extend(
        endpoint
            .port
            .iter()
            .map(|p| Relabel::keep(&[p.source_label], p.regex.clone())),
    );
    steps.extend([
        Relabel::copy("__meta_kubernetes_namespace", "namespace"),
        Relabel::copy("__meta_kubernetes_pod_container_name", "container"),
        Relabel::copy("__meta_kubernetes_pod_name", "pod"),
    ]);
    for label in &monitor.pod_target_labels {
        steps.push(Relabel::copy_if_set(
            &format!("__meta_kubernetes_pod_label_{}", sanitize(label)),
            &sanitize(label),
        ));
    }
    steps.push(Relabel::set("job", &format!("{}/{}", monitor.namespace, monitor.name)));
    if let Some(label) = &monitor.job_label {
        steps.push(Relabel::copy_if_set(
            &format!("__meta_kubernetes_pod_label_{}", sanitize(label)),
            "job",
        ));
    }
    steps.extend(
        endpoint
            .endpoint_label
            .iter()
            .map(|port| Relabel::set("endpoint", port)),
    );
    job(monitor, at, endpoint, "pod", steps)
}

/// The scrape jobs of `monitor`, one per endpoint.
pub fn jobs(monitor: &Monitor) -> Vec<ScrapeConfig> {
    monitor
        .endpoints
        .iter()
        .enumerate()
        .map(|(at, endpoint)| match monitor.kind {
            Kind::Service => service_job(monitor, at, endpoint),
            Kind::Pod => pod_job(monitor, at, endpoint),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitors;
    use trellis_sdk::serde_json::{Value, json};

    fn monitor(kind: &str, spec: Value) -> Monitor {
        let object = json!({
            "apiVersion": monitors::API_VERSION, "kind": kind,
            "metadata": {"name": "web", "namespace": "apps"}, "spec": spec,
        });
        match kind {
            "ServiceMonitor" => monitors::service_monitor(&object, 30_000),
            _ => monitors::pod_monitor(&object, 30_000),
        }
        .unwrap()
    }

    fn yaml(value: &impl Serialize) -> String {
        serde_yaml::to_string(value).unwrap()
    }

    #[test]
    fn labels_are_sanitised_as_meta_labels_spell_them() {
        assert_eq!(sanitize("app.kubernetes.io/name"), "app_kubernetes_io_name");
        assert_eq!(sanitize("team"), "team");
    }

    #[test]
    fn selectors_become_keep_and_drop_steps() {
        let m = monitor(
            "ServiceMonitor",
            json!({"selector": {
                "matchLabels": {"app.kubernetes.io/name": "web"},
                "matchExpressions": [
                    {"key": "tier", "operator": "In", "values": ["a", "b"]},
                    {"key": "tier", "operator": "NotIn", "values": ["c"]},
                    {"key": "owner", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ],
            }}),
        );
        let steps = selector_relabelings("__meta_kubernetes_service", &m.selector);
        let l = |k: &str| format!("__meta_kubernetes_service_label_{k}");
        let p = |k: &str| format!("__meta_kubernetes_service_labelpresent_{k}");
        assert_eq!(
            steps,
            [
                Relabel::keep(
                    &[&l("app_kubernetes_io_name"), &p("app_kubernetes_io_name")],
                    "(web);true"
                ),
                Relabel::keep(&[&l("tier"), &p("tier")], "(a|b);true"),
                Relabel::drop(&[&l("tier"), &p("tier")], "(c);true"),
                Relabel::keep(&[&p("owner")], "true"),
                Relabel::drop(&[&p("legacy")], "true"),
            ]
        );
    }

    #[test]
    fn a_service_monitor_job_as_the_operator_writes_it() {
        let m = monitor(
            "ServiceMonitor",
            json!({
                "selector": {"matchLabels": {"team": "frontend"}},
                "endpoints": [{"port": "web", "interval": "15s", "path": "/metrics"}],
            }),
        );
        let jobs = jobs(&m);
        assert_eq!(jobs.len(), 1);
        let expected = r#"job_name: serviceMonitor/apps/web/0
honor_labels: false
kubernetes_sd_configs:
- role: endpoints
  namespaces:
    names:
    - apps
scrape_interval: 15s
metrics_path: /metrics
relabel_configs:
- source_labels:
  - job
  target_label: __tmp_prometheus_job_name
- action: keep
  source_labels:
  - __meta_kubernetes_service_label_team
  - __meta_kubernetes_service_labelpresent_team
  regex: (frontend);true
- action: keep
  source_labels:
  - __meta_kubernetes_endpoint_port_name
  regex: web
- source_labels:
  - __meta_kubernetes_endpoint_address_target_kind
  - __meta_kubernetes_endpoint_address_target_name
  separator: ;
  regex: Node;(.*)
  target_label: node
  replacement: ${1}
- source_labels:
  - __meta_kubernetes_endpoint_address_target_kind
  - __meta_kubernetes_endpoint_address_target_name
  separator: ;
  regex: Pod;(.*)
  target_label: pod
  replacement: ${1}
- source_labels:
  - __meta_kubernetes_namespace
  target_label: namespace
- source_labels:
  - __meta_kubernetes_service_name
  target_label: service
- source_labels:
  - __meta_kubernetes_pod_name
  target_label: pod
- source_labels:
  - __meta_kubernetes_pod_container_name
  target_label: container
- action: drop
  source_labels:
  - __meta_kubernetes_pod_phase
  regex: (Failed|Succeeded)
- source_labels:
  - __meta_kubernetes_service_name
  target_label: job
  replacement: ${1}
- target_label: endpoint
  replacement: web
"#;
        assert_eq!(yaml(&jobs[0]), expected);
    }

    #[test]
    fn a_pod_monitor_job_names_its_job_after_the_monitor() {
        let m = monitor(
            "PodMonitor",
            json!({
                "selector": {"matchLabels": {"team": "frontend"}},
                "namespaceSelector": {"any": true},
                "jobLabel": "app.kubernetes.io/name",
                "podTargetLabels": ["tier"],
                "podMetricsEndpoints": [{"port": "metrics"}, {"portNumber": 9100, "scheme": "https"}],
            }),
        );
        let jobs = jobs(&m);
        assert_eq!(
            jobs.iter().map(|j| j.job_name.as_str()).collect::<Vec<_>>(),
            ["podMonitor/apps/web/0", "podMonitor/apps/web/1"]
        );
        assert_eq!(
            jobs[0].kubernetes_sd_configs,
            [SdConfig {
                role: "pod",
                namespaces: None
            }]
        );
        let steps = &jobs[0].relabel_configs;
        assert_eq!(steps[1], running_filter());
        assert!(steps.contains(&Relabel::keep(
            &["__meta_kubernetes_pod_container_port_name"],
            "metrics"
        )));
        assert!(steps.contains(&Relabel::copy_if_set("__meta_kubernetes_pod_label_tier", "tier")));
        assert!(steps.contains(&Relabel::set("job", "apps/web")));
        assert!(steps.contains(&Relabel::copy_if_set(
            "__meta_kubernetes_pod_label_app_kubernetes_io_name",
            "job"
        )));
        assert_eq!(steps.last(), Some(&Relabel::set("endpoint", "metrics")));
        let second = &jobs[1].relabel_configs;
        assert!(second.contains(&Relabel::keep(&["__meta_kubernetes_pod_container_port_number"], "9100")));
        assert!(second.iter().all(|s| s.target_label.as_deref() != Some("endpoint")));
        assert_eq!(jobs[1].scheme.as_deref(), Some("https"));
    }

    #[test]
    fn service_target_labels_and_job_label() {
        let m = monitor(
            "ServiceMonitor",
            json!({"jobLabel": "app", "targetLabels": ["team"], "endpoints": [{"targetPort": 8080}]}),
        );
        let steps = &jobs(&m)[0].relabel_configs;
        assert!(steps.contains(&Relabel::copy_if_set("__meta_kubernetes_service_label_team", "team")));
        assert!(steps.contains(&Relabel::copy_if_set("__meta_kubernetes_service_label_app", "job")));
        assert!(steps.contains(&Relabel::keep(&["__meta_kubernetes_pod_container_port_number"], "8080")));
        assert_eq!(steps.last(), Some(&Relabel::set("endpoint", "8080")));
    }
}
