//! Pods that run without a kubelet: kube-scheduler, kwok and one fake Node.
//!
//! kube-scheduler binds pods to the fake Node `kwok-node-0`; kwok (with the
//! "fast" node and pod stages shipped in its module, copied next to the
//! binaries by `tests/control-plane build --with-kwok`) marks the Node Ready,
//! renews its lease and moves scheduled pods to Running and Ready at once.
//! Deployments and StatefulSets therefore report ready replicas the way they
//! would on a real cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;

use crate::assets::{Assets, AssetsError};
use crate::certs::Certs;
use crate::env::{EnvError, TestEnv, get_ok, wait_ready};
use crate::process::{Process, free_port};

/// The fake Node's name.
pub const NODE_NAME: &str = "kwok-node-0";
/// The annotation kwok selects the Nodes it manages by.
const NODE_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
/// The stage files kwok loads (node lifecycle, heartbeat, pod lifecycle).
const STAGES: [&str; 5] = [
    "node-initialize.yaml",
    "node-heartbeat-with-lease.yaml",
    "pod-ready.yaml",
    "pod-complete.yaml",
    "pod-delete.yaml",
];

/// Fails early, before anything starts, when a kwok asset is missing.
pub(crate) fn check_assets(assets: &Assets) -> Result<(), AssetsError> {
    assets.kube_scheduler()?;
    assets.kwok()?;
    stage_files(assets)?;
    Ok(())
}

fn stage_files(assets: &Assets) -> Result<Vec<PathBuf>, AssetsError> {
    STAGES.iter().map(|name| assets.kwok_stage(name)).collect()
}

/// Starts kube-scheduler, registers the fake Node, starts kwok and waits for
/// the Node to be Ready.
pub(crate) async fn start(
    env: &mut TestEnv,
    assets: &Assets,
    certs: &Certs,
    timeout: Duration,
) -> Result<(), EnvError> {
    let kubeconfig = env.kubeconfig_path().display().to_string();
    let dir = env.dir().to_path_buf();
    let p = |path: &Path| path.display().to_string();

    let port = free_port()?;
    let args = vec![
        format!("--kubeconfig={kubeconfig}"),
        format!("--authentication-kubeconfig={kubeconfig}"),
        format!("--authorization-kubeconfig={kubeconfig}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={port}"),
        format!("--tls-cert-file={}", p(&certs.serving_cert)),
        format!("--tls-private-key-file={}", p(&certs.serving_key)),
        "--leader-elect=false".into(),
        "--profiling=false".into(),
    ];
    let scheduler = assets.kube_scheduler()?;
    env.processes
        .push(Process::spawn("kube-scheduler", &scheduler, &args, &dir)?);
    let client = env.component_client(port)?;
    wait_ready(env.processes.last_mut(), timeout, || get_ok(&client, "/healthz")).await?;

    let nodes: Api<Node> = Api::all(env.client());
    let node = fake_node();
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => {}
        Err(e) => {
            return Err(EnvError::Setup {
                what: format!("create the fake Node {NODE_NAME}"),
                message: e.to_string(),
            });
        }
    }

    let mut args = vec![
        format!("--kubeconfig={kubeconfig}"),
        "--manage-all-nodes=false".into(),
        format!(
            "--manage-nodes-with-annotation-selector={}={}",
            NODE_ANNOTATION.0, NODE_ANNOTATION.1
        ),
        "--cidr=10.0.0.1/24".into(),
        "--node-ip=10.0.0.1".into(),
        "--node-lease-duration-seconds=40".into(),
    ];
    for stage in stage_files(assets)? {
        args.push(format!("--config={}", stage.display()));
    }
    env.processes
        .push(Process::spawn("kwok", &assets.kwok()?, &args, &dir)?);
    wait_ready(env.processes.last_mut(), timeout, || async {
        let node = nodes.get(NODE_NAME).await.map_err(|e| e.to_string())?;
        if node_is_ready(&node) {
            Ok(())
        } else {
            Err(format!("Node {NODE_NAME} is not Ready yet"))
        }
    })
    .await
}

fn fake_node() -> Node {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": NODE_NAME,
            "annotations": { NODE_ANNOTATION.0: NODE_ANNOTATION.1 },
            "labels": {
                "kubernetes.io/hostname": NODE_NAME,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            },
        },
    }))
    .expect("a static Node")
}

fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|conditions| conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
