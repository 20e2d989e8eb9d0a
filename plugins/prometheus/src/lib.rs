//! The `prometheus` plugin: reconciles prometheus-operator's
//! `monitoring.coreos.com/v1` `Prometheus` into a StatefulSet
//! `prometheus-<name>` of Prometheus with its config reloader, the
//! governing Service `prometheus-operated`, the config Secret generated
//! from the selected ServiceMonitors and PodMonitors and from
//! `spec.alerting`, the rules ConfigMap of the selected PrometheusRules and,
//! with more than one replica, a PodDisruptionBudget (see [`children`]).
//!
//! Selection happens here, from whatever related objects the host hands
//! in (see [`select`]); [`Reconciler::related`] asks the host for just
//! those. A monitor or rule Prometheus would refuse is skipped with a
//! Warning event instead of breaking the configuration.
//!
//! Status as prometheus-operator reports it, from the observed StatefulSet:
//! `replicas`, `updatedReplicas`, `availableReplicas`,
//! `unavailableReplicas`, and the conditions `Available` (`False`, reason
//! `Degraded`, until every replica is available) and `Reconciled`; `Ready`
//! repeats `Available` (what `make run` and other Trellis tools wait for).

mod children;
mod config;
mod duration;
mod monitors;
mod rules;
mod scrape;
mod select;
mod selector;
mod spec;

use children::Instance;
use serde::Serialize;
use spec::Parent;
use trellis_sdk::k8s_openapi::api::core::v1::Namespace;
use trellis_sdk::k8s_openapi::api::policy::v1::PodDisruptionBudget;
use trellis_sdk::prelude::*;

/// The plugin.
pub struct PrometheusPlugin;

impl Reconciler for PrometheusPlugin {
    fn info() -> PluginInfo {
        PluginInfo::new("prometheus", monitors::API_VERSION, "Prometheus")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<StatefulSet>()
            .child::<Service>()
            .child::<Secret>()
            .child::<ConfigMap>()
            .child::<PodDisruptionBudget>()
            .related_kind(monitors::API_VERSION, "ServiceMonitor")
            .related_kind(monitors::API_VERSION, "PodMonitor")
            .related_kind(monitors::API_VERSION, "PrometheusRule")
            .related::<Namespace>()
    }

    fn related(parent: &Value) -> Option<Vec<RelatedSelector>> {
        // A parent that reconcile refuses gets the default answer; the
        // reconcile then says what is wrong with it.
        let prometheus = Parent::deserialize(parent).ok()?;
        let namespace = parent["metadata"]["namespace"].as_str().unwrap_or_default();
        let spec = prometheus.spec.checked(namespace).ok()?;
        Some(select::wanted(&spec))
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: Parent = req.parent()?;
        let spec = parent.spec.checked(req.namespace()).map_err(Error::invalid_spec)?;
        let instance = Instance::new(req, &spec);
        let selected = select::select(req, &spec);
        let config = config::render(
            &spec,
            req.namespace(),
            req.name(),
            &selected.monitors,
            &instance.rules_name(),
        );
        let mut response = Response::new()
            .child(&instance.governing_service())
            .child(&instance.config_secret(&config))
            .child(&instance.rules_config_map(&selected.rules))
            .child(&instance.stateful_set());
        if let Some(budget) = instance.disruption_budget() {
            response.push_child(&budget);
        }
        for (reason, message) in &selected.skipped {
            response = response.warning(reason, message.clone());
        }
        let observed = Observed::of(req.child::<StatefulSet>(&instance.name()).as_ref());
        let available = observed.available(spec.replicas);
        // `Ready`, which Trellis tools wait for, says what `Available` does.
        let ready = Condition {
            type_: "Ready".to_owned(),
            ..available.clone()
        };
        Ok(response
            .status(&observed.status())
            .condition(available)
            .condition(ready)
            .condition(Condition::new(
                "Reconciled",
                true,
                "ReconciliationSucceeded",
                selected.summary(),
            )))
    }
}

/// The replica counts of the observed StatefulSet (zero before it exists).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Observed {
    replicas: i32,
    updated: i32,
    available: i32,
}

impl Observed {
    fn of(stateful_set: Option<&StatefulSet>) -> Self {
        stateful_set
            .and_then(|s| s.status.as_ref())
            .map(|s| Self {
                replicas: s.replicas,
                updated: s.updated_replicas.unwrap_or_default(),
                available: s.available_replicas.unwrap_or_default(),
            })
            .unwrap_or_default()
    }

    fn status(self) -> Status {
        Status {
            replicas: self.replicas,
            updated_replicas: self.updated,
            available_replicas: self.available,
            unavailable_replicas: (self.replicas - self.available).max(0),
        }
    }

    /// `Available`: every desired replica is available.
    fn available(self, desired: i32) -> Condition {
        let all = self.available >= desired;
        Condition::new(
            "Available",
            all,
            if all { "AllReplicasAvailable" } else { "Degraded" },
            format!("{}/{desired} replicas available", self.available),
        )
    }
}

/// What the plugin reports beside its conditions: the replica counts of the
/// StatefulSet, as prometheus-operator reports them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
pub struct Status {
    replicas: i32,
    updated_replicas: i32,
    available_replicas: i32,
    unavailable_replicas: i32,
}

trellis_sdk::export_reconciler!(PrometheusPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_are_generated_from_the_types() {
        use kube::CustomResourceExt;
        let file = |plural: &str| {
            format!(
                "{}/../../deploy/crds/monitoring.coreos.com_{plural}.yaml",
                env!("CARGO_MANIFEST_DIR")
            )
        };
        trellis_sdk::crd::assert_current(&spec::Prometheus::crd(), file("prometheuses"));
        trellis_sdk::crd::assert_current(&monitors::ServiceMonitor::crd(), file("servicemonitors"));
        trellis_sdk::crd::assert_current(&monitors::PodMonitor::crd(), file("podmonitors"));
        trellis_sdk::crd::assert_current(&rules::PrometheusRule::crd(), file("prometheusrules"));
    }

    fn prometheus(spec: Value) -> Value {
        json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus",
            "metadata": {"name": "k8s", "namespace": "mon"}, "spec": spec,
        })
    }

    fn stateful_set(replicas: i32, updated: i32, available: i32) -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "prometheus-k8s", "namespace": "mon"},
            "spec": {"selector": {}, "template": {}, "serviceName": "prometheus-operated"},
            "status": {"replicas": replicas, "updatedReplicas": updated, "availableReplicas": available},
        })
    }

    fn child<'a>(response: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
        response
            .iter()
            .find(|c| c["kind"] == kind && c["metadata"]["name"] == name)
    }

    #[test]
    fn the_children_of_a_single_replica() {
        let response = PrometheusPlugin::reconcile(&Request::new(prometheus(json!({})))).unwrap();
        let children = response.children_json();
        let kinds: Vec<_> = children.iter().map(|c| c["kind"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["Service", "Secret", "ConfigMap", "StatefulSet"],
            "no budget for one replica"
        );
        let sts = child(&children, "StatefulSet", "prometheus-k8s").unwrap();
        assert_eq!(sts["spec"]["replicas"], 1);
        assert_eq!(sts["spec"]["serviceName"], "prometheus-operated");
        let pod = &sts["spec"]["template"]["spec"];
        assert!(pod.get("serviceAccountName").is_none());
        let prometheus = &pod["containers"][0];
        assert_eq!(prometheus["image"], "quay.io/prometheus/prometheus:v3.5.0");
        let args: Vec<&str> = prometheus["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert!(args.contains(&"--config.file=/etc/prometheus/config/prometheus.yaml"));
        assert!(!args.contains(&"--web.enable-admin-api"));
        assert_eq!(prometheus["readinessProbe"]["httpGet"]["path"], "/-/ready");
        assert_eq!(prometheus["livenessProbe"]["httpGet"]["path"], "/-/healthy");
        assert_eq!(pod["containers"][1]["name"], "config-reloader");
        let secret = child(&children, "Secret", "prometheus-k8s").unwrap();
        assert!(secret["data"]["prometheus.yaml"].is_string(), "base64 data");
        let rules = child(&children, "ConfigMap", "prometheus-k8s-rulefiles-0").unwrap();
        assert_eq!(rules["data"], json!({}));
        let service = child(&children, "Service", "prometheus-operated").unwrap();
        assert_eq!(service["spec"]["clusterIP"], "None");
        assert_eq!(
            service["spec"]["selector"],
            json!({"app.kubernetes.io/name": "prometheus"})
        );
    }

    #[test]
    fn replicas_admin_api_and_service_account() {
        let spec = json!({"replicas": 2, "enableAdminAPI": true, "serviceAccountName": "prometheus"});
        let response = PrometheusPlugin::reconcile(&Request::new(prometheus(spec))).unwrap();
        let children = response.children_json();
        let budget = child(&children, "PodDisruptionBudget", "prometheus-k8s").unwrap();
        assert_eq!(budget["spec"]["maxUnavailable"], 1);
        let sts = child(&children, "StatefulSet", "prometheus-k8s").unwrap();
        assert_eq!(sts["spec"]["replicas"], 2);
        let pod = &sts["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], "prometheus");
        assert!(
            pod["containers"][0]["args"]
                .as_array()
                .unwrap()
                .contains(&json!("--web.enable-admin-api"))
        );
        assert!(
            children.iter().all(|c| c["kind"] != "ServiceAccount"),
            "the service account is used, never created"
        );
    }

    #[test]
    fn status_follows_the_observed_stateful_set() {
        let spec = json!({"replicas": 3});
        let fresh = PrometheusPlugin::reconcile(&Request::new(prometheus(spec.clone()))).unwrap();
        assert_eq!(
            fresh.status_json(),
            Some(&json!({"replicas": 0, "updatedReplicas": 0, "availableReplicas": 0, "unavailableReplicas": 0}))
        );
        let req = Request::new(prometheus(spec.clone())).with_child(stateful_set(3, 3, 2));
        let degraded = PrometheusPlugin::reconcile(&req).unwrap();
        assert_eq!(degraded.status_json().unwrap()["unavailableReplicas"], 1);
        let available = &degraded.conditions()[0];
        assert_eq!(
            (
                available.type_.as_str(),
                available.status.as_str(),
                available.reason.as_str()
            ),
            ("Available", "False", "Degraded")
        );
        assert_eq!(available.message, "2/3 replicas available");
        let req = Request::new(prometheus(spec)).with_child(stateful_set(3, 3, 3));
        let ready = PrometheusPlugin::reconcile(&req).unwrap();
        assert_eq!(ready.conditions()[0].status, "True");
        let mirrored = &ready.conditions()[1];
        assert_eq!((mirrored.type_.as_str(), mirrored.status.as_str()), ("Ready", "True"));
        assert_eq!(degraded.conditions()[1].status, "False", "Ready follows Available");
        let reconciled = &ready.conditions()[2];
        assert_eq!(
            (reconciled.type_.as_str(), reconciled.status.as_str()),
            ("Reconciled", "True")
        );
    }

    #[test]
    fn a_bad_spec_is_an_invalid_spec() {
        let error = PrometheusPlugin::reconcile(&Request::new(prometheus(json!({"version": "latest"})))).unwrap_err();
        assert!(
            matches!(error, Error::InvalidSpec(ref m) if m.contains("version \"latest\"")),
            "{error:?}"
        );
    }

    #[test]
    fn related_asks_for_the_selected_kinds_only() {
        let spec = json!({"serviceMonitorSelector": {"matchLabels": {"team": "frontend"}}});
        let selectors = PrometheusPlugin::related(&prometheus(spec)).unwrap();
        assert_eq!(selectors.len(), 1);
        assert_eq!(PrometheusPlugin::related(&prometheus(json!({}))), Some(Vec::new()));
        assert_eq!(PrometheusPlugin::related(&prometheus(json!({"replicas": -1}))), None);
    }
}
