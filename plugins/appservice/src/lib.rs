//! The `appservice` plugin: reconciles `app.example.com/v1` `AppService`
//! (the operator-sdk tutorial's kind) into a Deployment of `size` replicas of
//! `image` and a NodePort Service exposing `ports`. Status reports the ready
//! replicas of the observed Deployment.

use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::api::apps::v1::DeploymentSpec;
use trellis_sdk::k8s_openapi::api::core::v1::{
    Container, ContainerPort, PodSpec, PodTemplateSpec, ServicePort, ServiceSpec,
};
use trellis_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use trellis_sdk::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use trellis_sdk::prelude::*;

/// Largest `size` accepted (as in the CRD).
const MAX_SIZE: i32 = 1000;
/// The NodePort range of a default cluster.
const NODE_PORTS: std::ops::RangeInclusive<i32> = 30000..=32767;

/// An `AppService` (only what the plugin reads).
#[derive(Debug, Deserialize)]
struct AppService {
    spec: Spec,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    size: i32,
    #[serde(default)]
    image: String,
    #[serde(default)]
    ports: Vec<Port>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Port {
    port: i32,
    target_port: Option<IntOrString>,
    node_port: Option<i32>,
    name: Option<String>,
    protocol: Option<String>,
}

impl Spec {
    /// The spec's errors, one sentence each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.image.is_empty() {
            problems.push("image is required".to_owned());
        }
        if !(0..=MAX_SIZE).contains(&self.size) {
            problems.push(format!("size must be between 0 and {MAX_SIZE}, not {}", self.size));
        }
        for port in &self.ports {
            if !(1..=65535).contains(&port.port) {
                problems.push(format!("port {} is not between 1 and 65535", port.port));
            }
            if let Some(node_port) = port.node_port.filter(|p| !NODE_PORTS.contains(p)) {
                problems.push(format!("nodePort {node_port} is outside 30000-32767"));
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for port in &self.ports {
            if !seen.insert(port.port) {
                problems.push(format!("port {} is listed twice", port.port));
            }
        }
        problems
    }
}

/// The plugin.
pub struct AppServicePlugin;

impl Reconciler for AppServicePlugin {
    fn info() -> PluginInfo {
        PluginInfo::new("appservice", "app.example.com/v1", "AppService")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<Deployment>()
            .child::<Service>()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: AppService = req.parent()?;
        let problems = parent.spec.problems();
        if !problems.is_empty() {
            return Err(Error::invalid_spec(problems.join("; ")));
        }
        let labels = req.app_labels(req.name(), "app");
        let mut response = Response::new().child(&deployment(req, &parent.spec, &labels));
        if !parent.spec.ports.is_empty() {
            response.push_child(&service(req, &parent.spec, &labels));
        }
        Ok(status(req, &parent.spec, response))
    }

    fn validate(obj: &Value, _old: Option<&Value>) -> Result<(), Vec<String>> {
        let parent: AppService = serde_json::from_value(obj.clone()).map_err(|e| vec![e.to_string()])?;
        let problems = parent.spec.problems();
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// The port the container listens on: a numeric `targetPort`, else `port`.
fn container_port(port: &Port) -> i32 {
    match &port.target_port {
        Some(IntOrString::Int(target)) => *target,
        _ => port.port,
    }
}

fn deployment(req: &Request, spec: &Spec, labels: &BTreeMap<String, String>) -> Deployment {
    let container = Container {
        name: req.name().to_owned(),
        image: Some(spec.image.clone()),
        ports: Some(
            spec.ports
                .iter()
                .map(|p| ContainerPort {
                    container_port: container_port(p),
                    name: p.target_port.as_ref().and_then(|t| match t {
                        IntOrString::String(name) => Some(name.clone()),
                        IntOrString::Int(_) => None,
                    }),
                    protocol: p.protocol.clone(),
                    ..Default::default()
                })
                .collect(),
        )
        .filter(|ports: &Vec<_>| !ports.is_empty()),
        ..Default::default()
    };
    Deployment {
        metadata: req.child_meta_labeled(req.name(), labels),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.size),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn service(req: &Request, spec: &Spec, labels: &BTreeMap<String, String>) -> Service {
    let ports = spec
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| ServicePort {
            // Kubernetes wants every port named once there are several.
            name: p
                .name
                .clone()
                .or_else(|| (spec.ports.len() > 1).then(|| format!("port-{i}"))),
            port: p.port,
            target_port: Some(p.target_port.clone().unwrap_or(IntOrString::Int(p.port))),
            node_port: p.node_port,
            protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".to_owned())),
            ..Default::default()
        })
        .collect();
    Service {
        metadata: req.child_meta_labeled(req.name(), labels),
        spec: Some(ServiceSpec {
            type_: Some("NodePort".to_owned()),
            selector: Some(labels.clone()),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Status from the observed Deployment.
fn status(req: &Request, spec: &Spec, response: Response) -> Response {
    let observed = req.child::<Deployment>(req.name()).and_then(|d| d.status);
    let ready = observed.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0);
    let replicas = observed.as_ref().and_then(|s| s.replicas).unwrap_or(0);
    let is_ready = ready >= spec.size;
    response
        .status(&json!({"replicas": replicas, "readyReplicas": ready}))
        .condition(Condition::ready(
            is_ready,
            if is_ready { "ReplicasReady" } else { "ReplicasNotReady" },
            format!("{ready}/{} replicas ready", spec.size),
        ))
}

trellis_sdk::export_reconciler!(AppServicePlugin);
