//! The `jmx-exporter` plugin: Banzai Cloud's `banzaicloud.com/v1alpha1`
//! `PrometheusJmxExporter`, without exec into pods.
//!
//! It asks the host for only what a parent needs (selective related
//! reads): the Pods of its namespace matching `spec.labelSelector` and the
//! ConfigMap named in `spec.config`. Each running matching Pod is decorated
//! (the host sets annotations on objects the plugin does not own, and
//! removes them again when they are no longer listed or the parent is
//! deleted) with `prometheus.io/scrape: "true"`, `prometheus.io/port` and
//! the marker [`PROCESSED`]; `status.metricsEndpoints` lists each Pod and
//! port. A missing ConfigMap or key is `Ready=False` with the reason, and
//! nothing is decorated. Pods are never restarted.
//!
//! The original operator loads the agent into the running JVM with `kubectl
//! exec`/`cp`: a sandboxed plugin has no exec, by design. Instead, with
//! `spec.agentImage` set (an image holding the agent jar at
//! `spec.agentJar`), new pods matching the selector get the agent when they
//! are created (`default-related`, a mutating webhook of the host that never
//! blocks a pod): an init container copying the jar into a shared volume,
//! the ConfigMap mounted, and `-javaagent:<jar>=<port>:<config>` added to
//! `JAVA_TOOL_OPTIONS` of every container (see [`inject`]). Running pods
//! are never touched.

mod inject;

use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::api::core::v1::{ConfigMap, Pod};
use trellis_sdk::labels;
use trellis_sdk::prelude::*;

/// The marker annotation of a processed Pod; its value names the parent.
pub const PROCESSED: &str = "banzaicloud.com/prometheus-jmx-exporter";
/// The port when `spec.port` is not set (the exporter's usual one).
pub(crate) const DEFAULT_PORT: u16 = 9400;

/// A `PrometheusJmxExporter` as the plugin reads it.
#[derive(Debug, Deserialize)]
pub(crate) struct JmxExporter {
    #[serde(default)]
    pub(crate) spec: Spec,
}

// The CRD, deploy/crds/banzaicloud.com_prometheusjmxexporters.yaml, is
// generated from `Spec` and `Status` by kube's `CustomResource` derive, in
// tests only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-jmx-exporter crd`.
// The fields the API server requires default to empty here, so that the
// plugin can also explain their absence (the CRD may not be installed).

/// Running Pods matching `labelSelector` are annotated for Prometheus to
/// scrape on `port`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    test,
    schemars(transform = trellis_sdk::crd::without_defaults, extend("required" = ["labelSelector", "config"]))
)]
#[cfg_attr(
    test,
    kube(
        group = "banzaicloud.com",
        version = "v1alpha1",
        kind = "PrometheusJmxExporter",
        namespaced,
        status = "Status",
        doc = "Banzai Cloud's PrometheusJmxExporter: running Pods matching `labelSelector` are annotated for Prometheus to scrape on `port`; `status.metricsEndpoints` lists them",
        printcolumn = r#"{"name": "Port", "type": "integer", "jsonPath": ".spec.port"}"#,
        printcolumn = r#"{"name": "Ready", "type": "string", "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
pub(crate) struct Spec {
    /// The labels of the Pods to scrape.
    #[serde(default)]
    pub(crate) label_selector: BTreeMap<String, String>,
    /// The ConfigMap and key holding the exporter's configuration.
    #[serde(default)]
    pub(crate) config: ConfigRef,
    /// The port the agent serves metrics on (default 9400).
    #[serde(default)]
    #[cfg_attr(test, schemars(range(min = 1)))]
    pub(crate) port: Option<u16>,
    /// An image holding the JMX exporter's Java agent jar. With it, new pods
    /// matching labelSelector get the agent when they are created (an init
    /// container copies the jar; JAVA_TOOL_OPTIONS loads it). Running pods
    /// are never changed.
    #[serde(default)]
    pub(crate) agent_image: Option<String>,
    /// Where the jar is in agentImage (default /jmx_prometheus_javaagent.jar).
    #[serde(default)]
    pub(crate) agent_jar: Option<String>,
}

/// The ConfigMap and key holding the exporter's configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(extend("required" = ["configMapName", "configMapKey"])))]
pub(crate) struct ConfigRef {
    #[serde(default)]
    pub(crate) config_map_name: String,
    #[serde(default)]
    pub(crate) config_map_key: String,
}

/// What the plugin reports: the endpoints Prometheus scrapes.
#[derive(Debug, Serialize, Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
struct Status {
    metrics_endpoints: Vec<Endpoint>,
}

impl Spec {
    pub(crate) fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.label_selector.clone()),
            ..LabelSelector::default()
        }
    }

    pub(crate) fn checked(&self) -> Result<(), String> {
        if self.label_selector.is_empty() {
            return Err("labelSelector must name at least one label (an empty one would pick every pod)".into());
        }
        if self.config.config_map_name.is_empty() || self.config.config_map_key.is_empty() {
            return Err("config.configMapName and config.configMapKey are required".into());
        }
        if self.port == Some(0) {
            return Err("port must be between 1 and 65535".into());
        }
        Ok(())
    }
}

/// One scraped endpoint, as `status.metricsEndpoints` lists it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
struct Endpoint {
    pod: String,
    port: u16,
}

/// The plugin.
pub struct JmxExporterPlugin;

impl Reconciler for JmxExporterPlugin {
    fn info() -> PluginInfo {
        PluginInfo::new("jmx-exporter", "banzaicloud.com/v1alpha1", "PrometheusJmxExporter")
            .version(env!("CARGO_PKG_VERSION"))
            .related::<Pod>()
            .related::<ConfigMap>()
            .defaulting_related::<Pod>()
    }

    fn default_related(obj: &mut Value, parents: &[Value]) -> Result<(), Vec<String>> {
        inject::agent(obj, parents);
        Ok(())
    }

    fn related(parent: &Value) -> Option<Vec<RelatedSelector>> {
        let parent = JmxExporter::deserialize(parent).ok()?;
        parent.spec.checked().ok()?;
        Some(vec![
            RelatedSelector::of::<Pod>().labels(&parent.spec.selector()),
            RelatedSelector::of::<ConfigMap>().named([parent.spec.config.config_map_name.clone()]),
        ])
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: JmxExporter = req.parent()?;
        let spec = &parent.spec;
        spec.checked().map_err(Error::invalid_spec)?;
        let port = spec.port.unwrap_or(DEFAULT_PORT);
        let config = &spec.config;
        let config_map = req
            .related::<ConfigMap>()
            .into_iter()
            .find(|c| c.metadata.name.as_deref() == Some(config.config_map_name.as_str()));
        let missing = match &config_map {
            None => Some((
                "ConfigMapNotFound",
                format!("ConfigMap {} does not exist", config.config_map_name),
            )),
            Some(c) if !c.data.as_ref().is_some_and(|d| d.contains_key(&config.config_map_key)) => Some((
                "ConfigKeyNotFound",
                format!(
                    "ConfigMap {} has no key {}",
                    config.config_map_name, config.config_map_key
                ),
            )),
            Some(_) => None,
        };
        if let Some((reason, message)) = missing {
            let status = Status {
                metrics_endpoints: Vec::new(),
            };
            return Ok(Response::new()
                .status(&status)
                .condition(Condition::ready(false, reason, message)));
        }

        let selector = spec.selector();
        let mut endpoints: Vec<Endpoint> = req
            .related::<Pod>()
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .filter(|p| labels::matches(&selector, p.metadata.labels.as_ref().unwrap_or(&BTreeMap::new())))
            .filter_map(|p| p.metadata.name)
            .map(|pod| Endpoint { pod, port })
            .collect();
        endpoints.sort();
        let mut response = Response::new();
        for endpoint in &endpoints {
            response.push_decoration(
                Decoration::of::<Pod>(&endpoint.pod)
                    .annotation("prometheus.io/scrape", "true")
                    .annotation("prometheus.io/port", port.to_string())
                    .annotation(PROCESSED, req.name()),
            );
        }
        let message = format!("{} pods scraped on port {port}", endpoints.len());
        Ok(response
            .status(&Status {
                metrics_endpoints: endpoints,
            })
            .condition(Condition::ready(true, "EndpointsDecorated", message)))
    }
}

trellis_sdk::export_reconciler!(JmxExporterPlugin);

#[cfg(test)]
mod tests {
    #[test]
    fn crd_is_generated_from_the_types() {
        use kube::CustomResourceExt;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crds/banzaicloud.com_prometheusjmxexporters.yaml"
        );
        trellis_sdk::crd::assert_current(&super::PrometheusJmxExporter::crd(), path);
    }

    use super::*;

    fn parent() -> Value {
        json!({
            "apiVersion": "banzaicloud.com/v1alpha1", "kind": "PrometheusJmxExporter",
            "metadata": {"name": "example-prom-jmx-exp", "namespace": "apps", "uid": "u1"},
            "spec": {
                "labelSelector": {"app": "dummyapp"},
                "config": {"configMapName": "prometheus-jmx-exporter-config", "configMapKey": "config.yaml"},
                "port": 9400
            }
        })
    }

    fn pod(name: &str, app: &str, phase: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "apps", "labels": {"app": app}},
            "status": {"phase": phase}})
    }

    fn config_map(key: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "prometheus-jmx-exporter-config", "namespace": "apps"},
            "data": {key: "rules: []"}})
    }

    #[test]
    fn running_matching_pods_are_decorated_and_listed() {
        let req = Request::new(parent())
            .with_related(config_map("config.yaml"))
            .with_related(pod("b", "dummyapp", "Running"))
            .with_related(pod("a", "dummyapp", "Running"))
            .with_related(pod("pending", "dummyapp", "Pending"))
            .with_related(pod("other", "web", "Running"));
        let response = JmxExporterPlugin::reconcile(&req).unwrap();
        let names: Vec<&str> = response.decorations().iter().map(|d| d.name()).collect();
        assert_eq!(names, ["a", "b"]);
        let a = &response.decorations()[0];
        assert_eq!(a.annotations()["prometheus.io/port"], Some("9400".to_owned()));
        assert_eq!(a.annotations()[PROCESSED], Some("example-prom-jmx-exp".to_owned()));
        let status = response.status_json().unwrap();
        assert_eq!(
            status["metricsEndpoints"],
            json!([{"pod": "a", "port": 9400}, {"pod": "b", "port": 9400}])
        );
        assert_eq!(response.conditions()[0].status, "True");
    }

    #[test]
    fn a_missing_config_map_or_key_decorates_nothing() {
        for (related, reason) in [
            (None, "ConfigMapNotFound"),
            (Some(config_map("other.yaml")), "ConfigKeyNotFound"),
        ] {
            let mut req = Request::new(parent()).with_related(pod("a", "dummyapp", "Running"));
            if let Some(c) = related {
                req = req.with_related(c);
            }
            let response = JmxExporterPlugin::reconcile(&req).unwrap();
            assert!(response.decorations().is_empty());
            assert_eq!(response.conditions()[0].reason, reason);
            assert_eq!(response.conditions()[0].status, "False");
        }
    }

    #[test]
    fn it_asks_for_its_pods_and_its_config_map_only() {
        assert_eq!(JmxExporterPlugin::related(&parent()).map(|s| s.len()), Some(2));
        let mut empty = parent();
        empty["spec"]["labelSelector"] = json!({});
        assert!(
            JmxExporterPlugin::related(&empty).is_none(),
            "reconcile reports the spec error"
        );
        let err = JmxExporterPlugin::reconcile(&Request::new(empty)).unwrap_err();
        assert!(matches!(err, Error::InvalidSpec(_)), "{err:?}");
    }
}
