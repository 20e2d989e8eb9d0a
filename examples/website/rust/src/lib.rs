//! The Website example plugin in Rust: a Deployment, a Service and an
//! Ingress per `samples.trellis.dev/v1alpha1` `Website`, and the Website's
//! status from the observed Deployment.
//!
//! The same plugin is written in Python (`../python`) and TypeScript
//! (`../typescript`); all three render identically
//! (`host/tests/render_examples.rs`), so the checks and messages here are
//! kept word for word the same as theirs.

use trellis_sdk::prelude::*;

/// The most replicas a Website may ask for.
const MAX_REPLICAS: i64 = 20;

/// `spec.<key>`: an integer from `low` to `high`, `default` when absent.
fn integer(spec: &Value, key: &str, default: i64, low: i64, high: i64) -> Result<i64, Error> {
    match spec.get(key) {
        None => Ok(default),
        Some(value) => value
            .as_i64()
            .filter(|n| (low..=high).contains(n))
            .ok_or_else(|| Error::invalid_spec(format!("spec.{key} must be an integer from {low} to {high}"))),
    }
}

/// `spec.<key>`: a string that is not empty.
fn text<'a>(spec: &'a Value, key: &str) -> Result<&'a str, Error> {
    spec.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| Error::invalid_spec(format!("spec.{key} is required")))
}

/// The plugin.
pub struct Website;

impl Reconciler for Website {
    fn info() -> PluginInfo {
        PluginInfo::new("website", "samples.trellis.dev/v1alpha1", "Website")
            .child_kind("apps/v1", "Deployment")
            .child_kind("v1", "Service")
            .child_kind("networking.k8s.io/v1", "Ingress")
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let none = json!({});
        let spec = req.parent_json().get("spec").filter(|s| !s.is_null()).unwrap_or(&none);
        let image = text(spec, "image")?;
        let host = text(spec, "host")?;
        let replicas = integer(spec, "replicas", 1, 0, MAX_REPLICAS)?;
        let port = integer(spec, "port", 8080, 1, 65535)?;
        let path = match spec.get("path") {
            None => "/",
            Some(path) => path
                .as_str()
                .filter(|p| p.starts_with('/'))
                .ok_or_else(|| Error::invalid_spec("spec.path must start with /"))?,
        };

        let name = req.name();
        let selector = json!({"app.kubernetes.io/name": "website", "app.kubernetes.io/instance": name});
        let mut labels = selector.clone();
        labels["app.kubernetes.io/component"] = json!("web");
        let meta = || {
            let mut meta = json!({"name": name, "labels": labels});
            if !req.namespace().is_empty() {
                meta["namespace"] = json!(req.namespace());
            }
            meta
        };
        let deployment = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta(),
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [
                        {"name": "web", "image": image, "ports": [{"name": "http", "containerPort": port}]}
                    ]},
                },
            },
        });
        let service = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(),
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
        });
        let ingress = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": meta(),
            "spec": {"rules": [{
                "host": host,
                "http": {"paths": [{
                    "path": path,
                    "pathType": "Prefix",
                    "backend": {"service": {"name": name, "port": {"name": "http"}}},
                }]},
            }]},
        });

        let observed = req
            .children_json()
            .iter()
            .find(|c| c["apiVersion"] == "apps/v1" && c["kind"] == "Deployment" && c["metadata"]["name"] == name);
        let count = |field: &str| observed.and_then(|d| d["status"][field].as_i64()).unwrap_or(0);
        let (ready, available) = (count("readyReplicas"), count("availableReplicas"));
        let condition = match observed {
            None => Condition::ready(false, "Pending", "the Deployment is not created yet"),
            Some(_) if available >= replicas => {
                Condition::ready(true, "Available", format!("{ready}/{replicas} replicas ready"))
            }
            Some(_) => Condition::ready(false, "Progressing", format!("{ready}/{replicas} replicas ready")),
        };
        Ok(Response::new()
            .child(&deployment)
            .child(&service)
            .child(&ingress)
            .status(&json!({"url": format!("http://{host}{path}"), "replicas": replicas, "readyReplicas": ready}))
            .condition(condition))
    }
}

trellis_sdk::export_reconciler!(Website);
