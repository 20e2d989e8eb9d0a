//! The `appservice` plugin: reconciles `app.example.com/v1` `AppService`
//! (the operator-sdk tutorial's kind) into a Deployment of `size` replicas of
//! `image` and a NodePort Service exposing `ports`. Status reports the ready
//! replicas of the observed Deployment.
//!
//! Admission: `validate` refuses what reconcile would refuse, and a
//! `nodePort` another AppService already asks for. For that the plugin reads
//! its own kind as a related kind; the host passes the AppServices of the
//! object's namespace only, so although nodePorts are cluster-wide only
//! those are compared (the check runs over whatever related list the host
//! passes). Reconcile ignores the related AppServices.

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
/// The parent kind, also read as a related kind.
const API_VERSION: &str = "app.example.com/v1";
const KIND: &str = "AppService";

/// An `AppService` as the plugin reads it.
#[derive(Debug, Deserialize)]
struct Parent {
    spec: Spec,
}

// The CRD, deploy/crds/app.example.com_appservices.yaml, is generated from
// `Spec` and `AppServiceStatus` by kube's `CustomResource` derive, in tests
// only: `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-appservice crd`.

/// What an AppService asks for.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(
    test,
    kube(
        group = "app.example.com",
        version = "v1",
        kind = "AppService",
        namespaced,
        status = "AppServiceStatus",
        doc = "An application: a Deployment of `size` pods of `image`, and a NodePort Service for `ports`",
        printcolumn = r#"{"name": "Size", "type": "integer", "jsonPath": ".spec.size"}"#,
        printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.image"}"#,
        printcolumn = r#"{"name": "Ready", "type": "integer", "jsonPath": ".status.readyReplicas"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
struct Spec {
    /// How many pods run `image`.
    #[cfg_attr(test, schemars(range(min = 0, max = 1000)))]
    size: i32,
    /// The container image of each pod.
    #[cfg_attr(test, schemars(length(min = 1)))]
    image: String,
    /// The ports the Service exposes on every node.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<Port>,
}

/// One port of the Service.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
struct Port {
    #[cfg_attr(test, schemars(range(min = 1, max = 65535)))]
    port: i32,
    #[serde(default)]
    #[cfg_attr(test, schemars(schema_with = "trellis_sdk::crd::int_or_string"))]
    target_port: Option<IntOrString>,
    #[cfg_attr(test, schemars(range(min = 30000, max = 32767)))]
    node_port: Option<i32>,
    name: Option<String>,
    #[cfg_attr(test, schemars(extend("enum" = ["TCP", "UDP", "SCTP"])))]
    protocol: Option<String>,
}

/// What the plugin reports: the observed Deployment's replicas.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
struct AppServiceStatus {
    replicas: i32,
    ready_replicas: i32,
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
        PluginInfo::new("appservice", API_VERSION, KIND)
            .version(env!("CARGO_PKG_VERSION"))
            .child::<Deployment>()
            .child::<Service>()
            .related_kind(API_VERSION, KIND)
            .validating()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: Parent = req.parent()?;
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

    fn validate(req: &AdmissionRequest) -> Result<(), Vec<String>> {
        if req.operation() == Operation::Delete {
            return Ok(());
        }
        let parent: Parent = req.parent()?;
        let mut problems = parent.spec.problems();
        problems.extend(node_port_conflicts(req, &parent.spec));
        if problems.is_empty() { Ok(()) } else { Err(problems) }
    }
}

/// The nodePorts `spec` asks for that another AppService of the related
/// list (not the object itself, by namespace and name) asks for too. On an
/// update only the nodePorts the stored object did not have are checked, so
/// a clash from before this check does not block every other edit.
fn node_port_conflicts(req: &AdmissionRequest, spec: &Spec) -> Vec<String> {
    let had: Vec<i32> = req.old_json().map(node_ports).unwrap_or_default();
    let others: Vec<&Value> = req
        .related_kind_json(API_VERSION, KIND)
        .into_iter()
        .filter(|o| o["metadata"]["namespace"] != req.namespace() || o["metadata"]["name"] != req.name())
        .collect();
    let mut problems = Vec::new();
    for node_port in spec.ports.iter().filter_map(|p| p.node_port) {
        if had.contains(&node_port) {
            continue;
        }
        if let Some(other) = others.iter().find(|o| node_ports(o).contains(&node_port)) {
            let (namespace, name) = (&other["metadata"]["namespace"], &other["metadata"]["name"]);
            problems.push(format!(
                "nodePort {node_port} is already used by AppService {}/{}",
                namespace.as_str().unwrap_or_default(),
                name.as_str().unwrap_or_default()
            ));
        }
    }
    problems
}

/// The nodePorts an AppService asks for, read leniently (another object's
/// spec need not be valid to hold a port).
fn node_ports(app_service: &Value) -> Vec<i32> {
    app_service["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["nodePort"].as_i64())
        .filter_map(|p| i32::try_from(p).ok())
        .collect()
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
        .status(&AppServiceStatus {
            replicas,
            ready_replicas: ready,
        })
        .condition(Condition::ready(
            is_ready,
            if is_ready { "ReplicasReady" } else { "ReplicasNotReady" },
            format!("{ready}/{} replicas ready", spec.size),
        ))
}

trellis_sdk::export_reconciler!(AppServicePlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_is_generated_from_the_types() {
        use kube::CustomResourceExt;
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crds/app.example.com_appservices.yaml"
        );
        trellis_sdk::crd::assert_current(&AppService::crd(), path);
    }

    fn app(namespace: &str, name: &str, node_ports: &[i32]) -> Value {
        let ports: Vec<Value> = node_ports
            .iter()
            .enumerate()
            .map(|(i, p)| json!({"port": 80 + i, "nodePort": p}))
            .collect();
        json!({
            "apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"size": 1, "image": "nginx", "ports": ports},
        })
    }

    fn create(obj: Value, related: &[Value]) -> Result<(), Vec<String>> {
        let req = related.iter().cloned().fold(
            AdmissionRequest::for_test(Operation::Create, Some(obj), None),
            AdmissionRequest::with_related,
        );
        AppServicePlugin::validate(&req)
    }

    #[test]
    fn a_node_port_of_another_app_service_is_refused() {
        let others = [app("team-a", "web", &[30080]), app("team-a", "api", &[30090])];
        assert_eq!(
            create(app("team-a", "shop", &[30090, 30100]), &others),
            Err(vec![
                "nodePort 30090 is already used by AppService team-a/api".to_owned()
            ])
        );
        assert_eq!(create(app("team-a", "shop", &[30100]), &others), Ok(()));
    }

    #[test]
    fn the_object_itself_and_other_kinds_do_not_count() {
        let stored = app("team-a", "web", &[30080]);
        let mut changed = app("team-a", "web", &[30080, 30081]);
        changed["spec"]["size"] = json!(3);
        let req =
            AdmissionRequest::for_test(Operation::Update, Some(changed), Some(stored.clone())).with_related(stored);
        assert_eq!(AppServicePlugin::validate(&req), Ok(()));
        let mut not_an_app_service = app("team-a", "other", &[30080]);
        not_an_app_service["kind"] = json!("Other");
        assert_eq!(create(app("team-a", "new", &[30080]), &[not_an_app_service]), Ok(()));
        // Same name in another namespace is another AppService.
        assert_eq!(
            create(app("team-a", "web", &[30080]), &[app("team-b", "web", &[30080])]),
            Err(vec![
                "nodePort 30080 is already used by AppService team-b/web".to_owned()
            ])
        );
    }

    #[test]
    fn an_update_is_refused_only_for_node_ports_it_adds() {
        let others = app("team-a", "api", &[30080, 30090]);
        let stored = app("team-a", "web", &[30080]);
        let keeps = AdmissionRequest::for_test(Operation::Update, Some(stored.clone()), Some(stored.clone()))
            .with_related(others.clone());
        assert_eq!(AppServicePlugin::validate(&keeps), Ok(()));
        let adds = AdmissionRequest::for_test(
            Operation::Update,
            Some(app("team-a", "web", &[30080, 30090])),
            Some(stored),
        )
        .with_related(others);
        assert_eq!(
            AppServicePlugin::validate(&adds),
            Err(vec![
                "nodePort 30090 is already used by AppService team-a/api".to_owned()
            ])
        );
    }

    #[test]
    fn spec_problems_are_refused_and_deletes_accepted() {
        let mut bad = app("team-a", "web", &[80]);
        bad["spec"]["image"] = json!("");
        assert_eq!(
            create(bad, &[]),
            Err(vec![
                "image is required".to_owned(),
                "nodePort 80 is outside 30000-32767".to_owned()
            ])
        );
        let delete = AdmissionRequest::for_test(Operation::Delete, None, Some(app("team-a", "web", &[30080])))
            .with_related(app("team-a", "api", &[30080]));
        assert_eq!(AppServicePlugin::validate(&delete), Ok(()));
    }

    #[test]
    fn reconcile_ignores_related_app_services() {
        let parent = app("team-a", "web", &[30080]);
        let alone = AppServicePlugin::reconcile(&Request::new(parent.clone())).unwrap();
        let with_others =
            AppServicePlugin::reconcile(&Request::new(parent).with_related(app("team-a", "api", &[30080]))).unwrap();
        assert_eq!(alone.children_json(), with_others.children_json());
        assert_eq!(alone.status_json(), with_others.status_json());
    }
}
