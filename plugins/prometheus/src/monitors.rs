//! ServiceMonitors and PodMonitors as prometheus-operator users write them
//! (only the fields the plugin reads), checked one by one: a monitor
//! Prometheus would choke on is skipped with a reason, so one bad monitor
//! never breaks the whole configuration.

use crate::duration;
use crate::selector;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use trellis_sdk::serde_json::Value;

/// The API version of every monitoring kind.
pub const API_VERSION: &str = "monitoring.coreos.com/v1";

// The CRDs, deploy/crds/monitoring.coreos.com_{servicemonitors,podmonitors}.yaml,
// are generated from the specs below by kube's `CustomResource` derive, in
// tests only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-prometheus crd`.
// Both keep the fields the plugin does not read (tlsConfig, relabelings,
// ...) as written.

/// Fields every scrape endpoint has.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
struct ScrapeFields {
    path: Option<String>,
    #[cfg_attr(test, schemars(extend("enum" = ["http", "https", "HTTP", "HTTPS"])))]
    scheme: Option<String>,
    #[cfg_attr(test, schemars(pattern(duration::PATTERN)))]
    interval: Option<String>,
    #[cfg_attr(test, schemars(pattern(duration::PATTERN)))]
    scrape_timeout: Option<String>,
    honor_labels: Option<bool>,
}

/// `spec.namespaceSelector` of a monitor: where its targets are.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
struct NamespaceSelector {
    /// Every namespace.
    #[serde(default)]
    any: bool,
    /// These namespaces (default: the monitor's own).
    #[serde(default)]
    match_names: Vec<String>,
}

/// A ServiceMonitor or a PodMonitor as the plugin reads it.
#[derive(Debug, Deserialize)]
struct Object<S> {
    metadata: ObjectMeta,
    spec: S,
}

/// The Services whose endpoints a Prometheus scrapes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    test,
    schemars(
        transform = trellis_sdk::crd::without_defaults,
        extend("x-kubernetes-preserve-unknown-fields" = true, "required" = ["selector"])
    )
)]
#[cfg_attr(
    test,
    kube(
        group = "monitoring.coreos.com",
        version = "v1",
        kind = "ServiceMonitor",
        namespaced,
        shortname = "smon",
        category = "prometheus-operator",
        doc = "prometheus-operator's ServiceMonitor, read by the prometheus plugin (plugins/prometheus)",
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub(crate) struct ServiceMonitorSpec {
    /// The Services to scrape.
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    selector: LabelSelector,
    #[serde(default)]
    namespace_selector: NamespaceSelector,
    #[serde(default)]
    endpoints: Vec<ServiceEndpoint>,
    job_label: Option<String>,
    #[serde(default)]
    target_labels: Vec<String>,
    #[serde(default)]
    pod_target_labels: Vec<String>,
}

/// One scraped port of the selected Services.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(extend("x-kubernetes-preserve-unknown-fields" = true)))]
struct ServiceEndpoint {
    port: Option<String>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::int_or_string"))]
    target_port: Option<IntOrString>,
    #[serde(flatten)]
    scrape: ScrapeFields,
}

/// The Pods a Prometheus scrapes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    test,
    schemars(
        transform = trellis_sdk::crd::without_defaults,
        extend("x-kubernetes-preserve-unknown-fields" = true, "required" = ["selector"])
    )
)]
#[cfg_attr(
    test,
    kube(
        group = "monitoring.coreos.com",
        version = "v1",
        kind = "PodMonitor",
        namespaced,
        shortname = "pmon",
        category = "prometheus-operator",
        doc = "prometheus-operator's PodMonitor, read by the prometheus plugin (plugins/prometheus)",
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub(crate) struct PodMonitorSpec {
    /// The Pods to scrape.
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::label_selector"))]
    selector: LabelSelector,
    #[serde(default)]
    namespace_selector: NamespaceSelector,
    #[serde(default)]
    pod_metrics_endpoints: Vec<PodEndpoint>,
    job_label: Option<String>,
    #[serde(default)]
    pod_target_labels: Vec<String>,
}

/// One scraped port of the selected Pods.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(extend("x-kubernetes-preserve-unknown-fields" = true)))]
struct PodEndpoint {
    port: Option<String>,
    #[cfg_attr(test, schemars(range(min = 1, max = 65535)))]
    port_number: Option<i32>,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::int_or_string"))]
    target_port: Option<IntOrString>,
    #[serde(flatten)]
    scrape: ScrapeFields,
}

/// Which kind of monitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Service,
    Pod,
}

impl Kind {
    /// The Kubernetes kind.
    pub fn name(self) -> &'static str {
        match self {
            Self::Service => "ServiceMonitor",
            Self::Pod => "PodMonitor",
        }
    }
}

/// The namespaces a monitor discovers targets in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Every namespace (`any: true`).
    Any,
    /// These namespaces (`matchNames`, else the monitor's own).
    Names(Vec<String>),
}

/// Keeps only targets whose `source_label` matches `regex` (a port).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFilter {
    pub source_label: &'static str,
    pub regex: String,
}

/// One checked scrape endpoint of a monitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Which port to keep; `None` keeps every port.
    pub port: Option<PortFilter>,
    /// The `endpoint` label the targets get.
    pub endpoint_label: Option<String>,
    pub path: Option<String>,
    pub scheme: Option<String>,
    pub interval: Option<String>,
    pub scrape_timeout: Option<String>,
    pub honor_labels: bool,
}

/// A checked ServiceMonitor or PodMonitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// Selects the Services (or Pods) to scrape.
    pub selector: LabelSelector,
    pub discovery: Discovery,
    pub endpoints: Vec<Endpoint>,
    pub job_label: Option<String>,
    /// Service labels copied onto the targets (ServiceMonitors only).
    pub target_labels: Vec<String>,
    /// Pod labels copied onto the targets.
    pub pod_target_labels: Vec<String>,
}

/// `ns/name` of an object, for messages.
pub fn display_name(object: &Value) -> String {
    let meta = |field: &str| object["metadata"][field].as_str().unwrap_or_default().to_owned();
    format!("{}/{}", meta("namespace"), meta("name"))
}

fn port_name(field: &str, name: &str) -> Result<String, String> {
    if !name.is_empty() && selector::is_label_value(name) {
        Ok(name.to_owned())
    } else {
        Err(format!("{field} {name:?} is not a port name"))
    }
}

fn port_number(field: &str, number: i32) -> Result<String, String> {
    if (1..=65535).contains(&number) {
        Ok(number.to_string())
    } else {
        Err(format!("{field} {number} is not a port number"))
    }
}

/// The port filter of `port` (a name) or `target_port`, as
/// prometheus-operator picks it for `kind`; and the `endpoint` label.
fn port_filter(
    kind: Kind,
    port: Option<&str>,
    number: Option<i32>,
    target_port: Option<&IntOrString>,
) -> Result<(Option<PortFilter>, Option<String>), String> {
    let filter = |source_label, regex: String| Some(PortFilter { source_label, regex });
    let named_port = match kind {
        Kind::Service => "__meta_kubernetes_endpoint_port_name",
        Kind::Pod => "__meta_kubernetes_pod_container_port_name",
    };
    if let Some(port) = port.filter(|p| !p.is_empty()) {
        let name = port_name("port", port)?;
        return Ok((filter(named_port, name.clone()), Some(name)));
    }
    if let Some(number) = number.filter(|n| *n != 0) {
        let number = port_number("portNumber", number)?;
        return Ok((filter("__meta_kubernetes_pod_container_port_number", number), None));
    }
    match target_port {
        Some(IntOrString::String(name)) if !name.is_empty() => {
            let name = port_name("targetPort", name)?;
            Ok((
                filter("__meta_kubernetes_pod_container_port_name", name.clone()),
                Some(name),
            ))
        }
        Some(IntOrString::Int(number)) if *number != 0 => {
            let number = port_number("targetPort", *number)?;
            Ok((
                filter("__meta_kubernetes_pod_container_port_number", number.clone()),
                Some(number),
            ))
        }
        _ => Ok((None, None)),
    }
}

/// Checks the scrape fields against what Prometheus accepts, with the
/// Prometheus's scrape interval `global_interval_ms` for a timeout without
/// an interval of its own.
fn endpoint(
    at: usize,
    fields: ScrapeFields,
    port: (Option<PortFilter>, Option<String>),
    global_interval_ms: u64,
) -> Result<Endpoint, String> {
    let field = |name: &str| format!("endpoint {at}: {name}");
    let nonempty = |v: Option<String>| v.filter(|v| !v.is_empty());
    let scheme = nonempty(fields.scheme).map(|s| s.to_ascii_lowercase());
    if let Some(scheme) = scheme.as_deref().filter(|s| *s != "http" && *s != "https") {
        return Err(format!("{} {scheme:?} is neither http nor https", field("scheme")));
    }
    let interval = nonempty(fields.interval);
    let timeout = nonempty(fields.scrape_timeout);
    let parse = |name: &str, value: &Option<String>| match value {
        None => Ok(None),
        Some(v) => duration::millis(v)
            .map(Some)
            .ok_or_else(|| format!("{} {v:?} is not a duration such as 30s", field(name))),
    };
    let interval_ms = parse("interval", &interval)?
        .filter(|ms| *ms > 0)
        .unwrap_or(global_interval_ms);
    if let Some(timeout_ms) = parse("scrapeTimeout", &timeout)?
        && timeout_ms > interval_ms
    {
        return Err(format!(
            "{} {} is longer than the scrape interval",
            field("scrapeTimeout"),
            timeout.unwrap_or_default()
        ));
    }
    let path = nonempty(fields.path);
    if let Some(path) = path.as_deref().filter(|p| !p.starts_with('/')) {
        return Err(format!("{} {path:?} does not start with /", field("path")));
    }
    Ok(Endpoint {
        port: port.0,
        endpoint_label: port.1,
        path,
        scheme,
        interval,
        scrape_timeout: timeout,
        honor_labels: fields.honor_labels.unwrap_or(false),
    })
}

fn discovery(own: &str, selector: NamespaceSelector) -> Discovery {
    if selector.any {
        Discovery::Any
    } else if selector.match_names.is_empty() {
        Discovery::Names(vec![own.to_owned()])
    } else {
        let names: BTreeSet<String> = selector.match_names.into_iter().filter(|n| !n.is_empty()).collect();
        Discovery::Names(names.into_iter().collect())
    }
}

pub fn identity(meta: &ObjectMeta) -> Result<(String, String), String> {
    let name = meta.name.clone().filter(|n| !n.is_empty()).ok_or("it has no name")?;
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or("it has no namespace")?;
    Ok((namespace, name))
}

/// Checks a ServiceMonitor; the error says why it is skipped.
pub fn service_monitor(object: &Value, global_interval_ms: u64) -> Result<Monitor, String> {
    let monitor = Object::<ServiceMonitorSpec>::deserialize(object).map_err(|e| e.to_string())?;
    let (namespace, name) = identity(&monitor.metadata)?;
    let spec = monitor.spec;
    selector::check(&spec.selector).map_err(|e| format!("selector: {e}"))?;
    let endpoints = spec
        .endpoints
        .into_iter()
        .enumerate()
        .map(|(at, ep)| {
            let port = port_filter(Kind::Service, ep.port.as_deref(), None, ep.target_port.as_ref())
                .map_err(|e| format!("endpoint {at}: {e}"))?;
            endpoint(at, ep.scrape, port, global_interval_ms)
        })
        .collect::<Result<_, _>>()?;
    Ok(Monitor {
        kind: Kind::Service,
        discovery: discovery(&namespace, spec.namespace_selector),
        namespace,
        name,
        selector: spec.selector,
        endpoints,
        job_label: spec.job_label.filter(|l| !l.is_empty()),
        target_labels: spec.target_labels,
        pod_target_labels: spec.pod_target_labels,
    })
}

/// Checks a PodMonitor; the error says why it is skipped.
pub fn pod_monitor(object: &Value, global_interval_ms: u64) -> Result<Monitor, String> {
    let monitor = Object::<PodMonitorSpec>::deserialize(object).map_err(|e| e.to_string())?;
    let (namespace, name) = identity(&monitor.metadata)?;
    let spec = monitor.spec;
    selector::check(&spec.selector).map_err(|e| format!("selector: {e}"))?;
    let endpoints = spec
        .pod_metrics_endpoints
        .into_iter()
        .enumerate()
        .map(|(at, ep)| {
            let port = port_filter(Kind::Pod, ep.port.as_deref(), ep.port_number, ep.target_port.as_ref())
                .map_err(|e| format!("endpoint {at}: {e}"))?;
            endpoint(at, ep.scrape, port, global_interval_ms)
        })
        .collect::<Result<_, _>>()?;
    Ok(Monitor {
        kind: Kind::Pod,
        discovery: discovery(&namespace, spec.namespace_selector),
        namespace,
        name,
        selector: spec.selector,
        endpoints,
        job_label: spec.job_label.filter(|l| !l.is_empty()),
        target_labels: Vec::new(),
        pod_target_labels: spec.pod_target_labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_sdk::serde_json::json;

    fn service_monitor_of(spec: Value) -> Result<Monitor, String> {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "ServiceMonitor",
            "metadata": {"name": "web", "namespace": "apps"}, "spec": spec,
        });
        service_monitor(&object, 30_000)
    }

    fn pod_monitor_of(spec: Value) -> Result<Monitor, String> {
        let object = json!({
            "apiVersion": API_VERSION, "kind": "PodMonitor",
            "metadata": {"name": "pods", "namespace": "apps"}, "spec": spec,
        });
        pod_monitor(&object, 30_000)
    }

    #[test]
    fn a_service_monitor_with_its_defaults() {
        let m = service_monitor_of(json!({
            "selector": {"matchLabels": {"app": "web"}},
            "endpoints": [{"port": "metrics", "interval": "15s", "path": "/stats", "scheme": "HTTPS"}],
        }))
        .unwrap();
        assert_eq!(
            (m.kind, m.namespace.as_str(), m.name.as_str()),
            (Kind::Service, "apps", "web")
        );
        assert_eq!(
            m.discovery,
            Discovery::Names(vec!["apps".into()]),
            "its own namespace by default"
        );
        assert_eq!(
            m.endpoints,
            [Endpoint {
                port: Some(PortFilter {
                    source_label: "__meta_kubernetes_endpoint_port_name",
                    regex: "metrics".into()
                }),
                endpoint_label: Some("metrics".into()),
                path: Some("/stats".into()),
                scheme: Some("https".into()),
                interval: Some("15s".into()),
                scrape_timeout: None,
                honor_labels: false,
            }]
        );
    }

    #[test]
    fn discovery_namespaces() {
        let any = service_monitor_of(json!({"namespaceSelector": {"any": true}})).unwrap();
        assert_eq!(any.discovery, Discovery::Any);
        let names = service_monitor_of(json!({"namespaceSelector": {"matchNames": ["b", "a", "b"]}})).unwrap();
        assert_eq!(names.discovery, Discovery::Names(vec!["a".into(), "b".into()]));
    }

    #[test]
    fn ports_as_the_operator_picks_them() {
        let port = |kind: Kind, spec: Value| {
            let m = match kind {
                Kind::Service => service_monitor_of(json!({"endpoints": [spec]})),
                Kind::Pod => pod_monitor_of(json!({"podMetricsEndpoints": [spec]})),
            }
            .unwrap();
            let ep = &m.endpoints[0];
            (
                ep.port.as_ref().map(|p| (p.source_label, p.regex.clone())),
                ep.endpoint_label.clone(),
            )
        };
        let named = |label, regex: &str| Some((label, regex.to_owned()));
        assert_eq!(
            port(Kind::Pod, json!({"port": "web"})),
            (
                named("__meta_kubernetes_pod_container_port_name", "web"),
                Some("web".into())
            )
        );
        assert_eq!(
            port(Kind::Pod, json!({"portNumber": 8080})),
            (named("__meta_kubernetes_pod_container_port_number", "8080"), None)
        );
        assert_eq!(
            port(Kind::Service, json!({"targetPort": 8080})),
            (
                named("__meta_kubernetes_pod_container_port_number", "8080"),
                Some("8080".into())
            )
        );
        assert_eq!(
            port(Kind::Service, json!({"targetPort": "http"})),
            (
                named("__meta_kubernetes_pod_container_port_name", "http"),
                Some("http".into())
            )
        );
        assert_eq!(port(Kind::Service, json!({})), (None, None), "no port: every port");
    }

    #[test]
    fn what_prometheus_would_refuse_is_named() {
        let error = |ep: Value| service_monitor_of(json!({"endpoints": [{"port": "web"}, ep]})).unwrap_err();
        assert_eq!(
            error(json!({"scheme": "ftp"})),
            "endpoint 1: scheme \"ftp\" is neither http nor https"
        );
        assert_eq!(
            error(json!({"interval": "30"})),
            "endpoint 1: interval \"30\" is not a duration such as 30s"
        );
        assert_eq!(
            error(json!({"scrapeTimeout": "1m"})),
            "endpoint 1: scrapeTimeout 1m is longer than the scrape interval"
        );
        assert_eq!(
            error(json!({"interval": "5s", "scrapeTimeout": "10s"})),
            "endpoint 1: scrapeTimeout 10s is longer than the scrape interval"
        );
        assert_eq!(
            error(json!({"path": "metrics"})),
            "endpoint 1: path \"metrics\" does not start with /"
        );
        assert_eq!(
            error(json!({"port": "(web)"})),
            "endpoint 1: port \"(web)\" is not a port name"
        );
        assert_eq!(
            error(json!({"targetPort": 70000})),
            "endpoint 1: targetPort 70000 is not a port number"
        );
        let bad_selector = service_monitor_of(json!({"selector": {"matchLabels": {"a": "b|c"}}})).unwrap_err();
        assert!(
            bad_selector.starts_with("selector: matchLabels value \"b|c\""),
            "{bad_selector}"
        );
        let shape = service_monitor_of(json!({"endpoints": "web"})).unwrap_err();
        assert!(shape.contains("invalid type"), "{shape}");
        assert!(service_monitor_of(json!({"endpoints": [{"interval": "5s", "scrapeTimeout": "5s"}]})).is_ok());
    }

    #[test]
    fn a_pod_monitor_keeps_its_labels() {
        let m = pod_monitor_of(json!({
            "selector": {"matchLabels": {"team": "frontend"}},
            "jobLabel": "app", "podTargetLabels": ["tier"],
            "podMetricsEndpoints": [{"port": "web", "honorLabels": true}],
        }))
        .unwrap();
        assert_eq!(m.kind, Kind::Pod);
        assert_eq!(m.job_label.as_deref(), Some("app"));
        assert_eq!(m.pod_target_labels, ["tier"]);
        assert!(m.endpoints[0].honor_labels);
    }
}
