//! The `mydaemonset` plugin: reconciles `apps.zhongmingmao.io/v1beta1`
//! `MyDaemonSet` into one Pod of `image` per Node. Nodes are a related kind,
//! so a Node that joins gets its Pod and the Pod of a Node that leaves is
//! pruned. Status counts the Nodes (`desiredReplicas`) and the Pods that are
//! Ready (`availableReplicas`).
//!
//! Admission: `default` gives an image without a tag or digest the tag
//! `latest` (`nginx` becomes `nginx:latest`); `validate` refuses a
//! `MyDaemonSet` without an image.

use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, Toleration};
use trellis_sdk::prelude::*;

/// Longest object name Kubernetes accepts.
const MAX_NAME: usize = 253;

/// A `MyDaemonSet` as the plugin reads it.
#[derive(Debug, Deserialize)]
struct Parent {
    #[serde(default)]
    spec: Spec,
}

// The CRD, deploy/crds/apps.zhongmingmao.io_mydaemonsets.yaml, is generated
// from `Spec` and `Status` by kube's `CustomResource` derive, in tests only:
// `TRELLIS_WRITE_CRD=1 cargo test -p trellis-plugin-mydaemonset crd`.
//
// The original operator's webhook refuses a MyDaemonSet without an image
// with exactly the message of the root rule below; the test drops `spec`
// from the root's `required` so that a missing spec gets this message too (a
// failed `required` skips the CEL rules): "spec.image: Required value: image
// is required".

/// One Pod of `image` on every Node.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[cfg_attr(test, derive(kube::CustomResource, schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::without_defaults))]
#[cfg_attr(
    test,
    kube(
        group = "apps.zhongmingmao.io",
        version = "v1beta1",
        kind = "MyDaemonSet",
        namespaced,
        status = "Status",
        doc = "A daemon set: one Pod of `image` on every Node",
        validation = kube::core::Rule::new("has(self.spec) && has(self.spec.image) && self.spec.image != ''")
            .message("image is required")
            .field_path(".spec.image")
            .reason(kube::core::Reason::FieldValueRequired),
        printcolumn = r#"{"name": "Image", "type": "string", "jsonPath": ".spec.image"}"#,
        printcolumn = r#"{"name": "Desired", "type": "integer", "jsonPath": ".status.desiredReplicas"}"#,
        printcolumn = r#"{"name": "Available", "type": "integer", "jsonPath": ".status.availableReplicas"}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
        crates(k8s_openapi = "trellis_sdk::k8s_openapi", serde_json = "trellis_sdk::serde_json"),
    )
)]
struct Spec {
    /// The image of every Pod; without a tag or digest it gets `latest`.
    #[serde(default)]
    image: String,
}

/// What the plugin reports: the Nodes, and the Pods that are Ready.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[cfg_attr(test, schemars(transform = trellis_sdk::crd::host_status_fields))]
struct Status {
    desired_replicas: i32,
    available_replicas: i32,
}

fn checked_image(parent: &Parent) -> Result<&str, String> {
    let image = parent.spec.image.trim();
    if image.is_empty() {
        Err("image is required".to_owned())
    } else {
        Ok(image)
    }
}

/// The plugin.
pub struct MyDaemonSetPlugin;

impl Reconciler for MyDaemonSetPlugin {
    fn info() -> PluginInfo {
        PluginInfo::new("mydaemonset", "apps.zhongmingmao.io/v1beta1", "MyDaemonSet")
            .version(env!("CARGO_PKG_VERSION"))
            .child::<Pod>()
            .related::<Node>()
            .validating()
            .defaulting()
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: Parent = req.parent()?;
        let image = checked_image(&parent).map_err(Error::invalid_spec)?;
        let labels = req.app_labels(req.name(), "daemon");
        let nodes: Vec<String> = req
            .related::<Node>()
            .into_iter()
            .filter(|n| n.metadata.deletion_timestamp.is_none())
            .filter_map(|n| n.metadata.name)
            .collect();
        let mut response = Response::new();
        let mut available = 0;
        for node in &nodes {
            let name = pod_name(req.name(), node);
            if req.child::<Pod>(&name).is_some_and(|p| is_ready(&p)) {
                available += 1;
            }
            response.push_child(&pod(req, &name, node, image, &labels));
        }
        let desired = i32::try_from(nodes.len()).unwrap_or(i32::MAX);
        let is_ready = available == desired;
        Ok(response
            .status(&Status {
                desired_replicas: desired,
                available_replicas: available,
            })
            .condition(Condition::ready(
                is_ready,
                if is_ready { "PodsAvailable" } else { "PodsNotAvailable" },
                format!("{available}/{desired} pods available"),
            )))
    }

    fn validate(req: &AdmissionRequest) -> Result<(), Vec<String>> {
        if req.operation() == Operation::Delete {
            return Ok(());
        }
        let parent: Parent = req.parent()?;
        checked_image(&parent).map(|_| ()).map_err(|e| vec![e])
    }

    fn default(obj: &mut Value) -> Result<(), Vec<String>> {
        if let Some(image) = obj["spec"]["image"].as_str().and_then(with_default_tag) {
            obj["spec"]["image"] = Value::String(image);
        }
        Ok(())
    }
}

/// `image` with the tag `latest` when it names neither a tag nor a digest;
/// `None` when it needs nothing (or is empty: `validate` refuses that). A
/// colon before the last `/` is a registry's port, not a tag.
fn with_default_tag(image: &str) -> Option<String> {
    let image = image.trim();
    let last = image.rsplit('/').next().unwrap_or(image);
    let pinned = image.contains('@') || last.contains(':');
    (!image.is_empty() && !pinned).then(|| format!("{image}:latest"))
}

/// `<parent>-<node>`, shortened with a hash of the node's name when too long.
fn pod_name(parent: &str, node: &str) -> String {
    let name = format!("{parent}-{node}");
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let suffix = format!("-{hash:016x}");
    let keep = MAX_NAME - suffix.len();
    format!("{}{suffix}", name[..keep].trim_end_matches(['-', '.']))
}

fn pod(req: &Request, name: &str, node: &str, image: &str, labels: &BTreeMap<String, String>) -> Pod {
    // As a DaemonSet's pods: bound to their node, and they stay through the
    // node conditions that evict ordinary pods.
    let tolerate = |key: &str, effect: &str| Toleration {
        key: Some(key.to_owned()),
        operator: Some("Exists".to_owned()),
        effect: Some(effect.to_owned()),
        ..Default::default()
    };
    Pod {
        metadata: req.child_meta_labeled(name, labels),
        spec: Some(PodSpec {
            node_name: Some(node.to_owned()),
            containers: vec![Container {
                name: "main".to_owned(),
                image: Some(image.to_owned()),
                ..Default::default()
            }],
            tolerations: Some(vec![
                tolerate("node.kubernetes.io/not-ready", "NoExecute"),
                tolerate("node.kubernetes.io/unreachable", "NoExecute"),
                tolerate("node.kubernetes.io/unschedulable", "NoSchedule"),
            ]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

trellis_sdk::export_reconciler!(MyDaemonSetPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crd_is_generated_from_the_types() {
        use kube::CustomResourceExt;
        let mut crd = MyDaemonSet::crd();
        // A missing spec is refused by the root rule, with its message.
        for version in &mut crd.spec.versions {
            let root = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut());
            if let Some(root) = root {
                root.required = None;
            }
        }
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/crds/apps.zhongmingmao.io_mydaemonsets.yaml"
        );
        trellis_sdk::crd::assert_current(&crd, path);
    }

    #[test]
    fn long_names_are_shortened_stably() {
        let node = "n".repeat(300);
        let name = pod_name("ds", &node);
        assert!(name.len() <= MAX_NAME);
        assert_eq!(name, pod_name("ds", &node));
        assert_eq!(pod_name("ds", "node-1"), "ds-node-1");
    }

    fn daemon_set(spec: Value) -> Value {
        json!({
            "apiVersion": "apps.zhongmingmao.io/v1beta1", "kind": "MyDaemonSet",
            "metadata": {"name": "ds", "namespace": "ns"}, "spec": spec,
        })
    }

    fn defaulted(image: &str) -> Value {
        let mut obj = daemon_set(json!({"image": image}));
        MyDaemonSetPlugin::default(&mut obj).unwrap();
        obj["spec"]["image"].clone()
    }

    #[test]
    fn an_image_without_tag_or_digest_gets_latest() {
        assert_eq!(defaulted("nginx"), "nginx:latest");
        assert_eq!(defaulted("registry:5000/team/app"), "registry:5000/team/app:latest");
        assert_eq!(defaulted("nginx:1.25"), "nginx:1.25");
        assert_eq!(defaulted("registry:5000/team/app:2"), "registry:5000/team/app:2");
        let digest = format!("nginx@sha256:{}", "a".repeat(64));
        assert_eq!(defaulted(&digest), digest.as_str());
        assert_eq!(defaulted(""), "");
    }

    #[test]
    fn defaulting_leaves_an_object_without_image_alone() {
        let mut obj = daemon_set(json!({}));
        MyDaemonSetPlugin::default(&mut obj).unwrap();
        assert_eq!(obj, daemon_set(json!({})));
    }

    #[test]
    fn an_image_is_required_on_create_and_update() {
        let refused = Err(vec!["image is required".to_owned()]);
        for spec in [json!({}), json!({"image": ""}), json!({"image": "  "})] {
            let create = AdmissionRequest::for_test(Operation::Create, Some(daemon_set(spec.clone())), None);
            assert_eq!(MyDaemonSetPlugin::validate(&create), refused);
            let old = daemon_set(json!({"image": "nginx:latest"}));
            let update = AdmissionRequest::for_test(Operation::Update, Some(daemon_set(spec)), Some(old));
            assert_eq!(MyDaemonSetPlugin::validate(&update), refused);
        }
        let missing_spec = json!({"apiVersion": "apps.zhongmingmao.io/v1beta1", "kind": "MyDaemonSet"});
        let create = AdmissionRequest::for_test(Operation::Create, Some(missing_spec), None);
        assert_eq!(MyDaemonSetPlugin::validate(&create), refused);
    }

    #[test]
    fn an_image_is_accepted_and_deletes_always_are() {
        let good = daemon_set(json!({"image": "nginx:latest"}));
        let create = AdmissionRequest::for_test(Operation::Create, Some(good), None);
        assert_eq!(MyDaemonSetPlugin::validate(&create), Ok(()));
        let delete = AdmissionRequest::for_test(Operation::Delete, None, Some(daemon_set(json!({}))));
        assert_eq!(MyDaemonSetPlugin::validate(&delete), Ok(()));
    }
}
