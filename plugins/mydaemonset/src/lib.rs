//! The `mydaemonset` plugin: reconciles `apps.zhongmingmao.io/v1beta1`
//! `MyDaemonSet` into one Pod of `image` per Node. Nodes are a related kind,
//! so a Node that joins gets its Pod and the Pod of a Node that leaves is
//! pruned. Status counts the Nodes (`desiredReplicas`) and the Pods that are
//! Ready (`availableReplicas`).

use std::collections::BTreeMap;
use trellis_sdk::k8s_openapi::api::core::v1::{Container, Node, Pod, PodSpec, Toleration};
use trellis_sdk::prelude::*;

/// Longest object name Kubernetes accepts.
const MAX_NAME: usize = 253;

/// A `MyDaemonSet` (only what the plugin reads).
#[derive(Debug, Deserialize)]
struct MyDaemonSet {
    #[serde(default)]
    spec: Spec,
}

#[derive(Debug, Default, Deserialize)]
struct Spec {
    #[serde(default)]
    image: String,
}

fn checked_image(parent: &MyDaemonSet) -> Result<&str, String> {
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
    }

    fn reconcile(req: &Request) -> Result<Response, Error> {
        let parent: MyDaemonSet = req.parent()?;
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
        let desired = nodes.len();
        let is_ready = available == desired;
        Ok(response
            .status(&json!({"desiredReplicas": desired, "availableReplicas": available}))
            .condition(Condition::ready(
                is_ready,
                if is_ready { "PodsAvailable" } else { "PodsNotAvailable" },
                format!("{available}/{desired} pods available"),
            )))
    }

    fn validate(obj: &Value, _old: Option<&Value>) -> Result<(), Vec<String>> {
        let parent: MyDaemonSet = serde_json::from_value(obj.clone()).map_err(|e| vec![e.to_string()])?;
        checked_image(&parent).map(|_| ()).map_err(|e| vec![e])
    }
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
    fn long_names_are_shortened_stably() {
        let node = "n".repeat(300);
        let name = pod_name("ds", &node);
        assert!(name.len() <= MAX_NAME);
        assert_eq!(name, pod_name("ds", &node));
        assert_eq!(pod_name("ds", "node-1"), "ds-node-1");
    }
}
