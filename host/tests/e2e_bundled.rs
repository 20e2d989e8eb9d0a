//! End-to-end tests of the bundled operator plugins on the real control
//! plane, with kwok running the pods so status reflects real readiness: the
//! samples users already write produce their workloads, and the behaviours
//! each operator is known for hold (etcd resizes one member at a time and
//! rolls versions, Redis credentials are generated once, a MyDaemonSet
//! follows the Nodes).

mod common;

use common::{SETTLE, TestHost, apply_as_user, dynamic_api, eventually_exists, eventually_ready_is};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret, Service};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};
use trellis_testenv::{TestNamespace, shared_env_with_kwok};

const ETCD_CRD: &str = include_str!("../../deploy/crds/etcd.database.coreos.com_etcdclusters.yaml");
const REDIS_CRD: &str = include_str!("../../deploy/crds/app.redislabs.com_redisenterpriseclusters.yaml");
const APPSERVICE_CRD: &str = include_str!("../../deploy/crds/app.example.com_appservices.yaml");
const MYDAEMONSET_CRD: &str = include_str!("../../deploy/crds/apps.zhongmingmao.io_mydaemonsets.yaml");
const SAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/samples/");

/// A namespace on the kwok control plane, the plugin's CRD installed and a
/// host running the plugin; the parent API of the sample's kind.
async fn setup(
    prefix: &str,
    crd: &str,
    plugin: &str,
    sample: &str,
) -> (TestNamespace, TestHost, Api<DynamicObject>, Value) {
    let ns = TestNamespace::create_in(shared_env_with_kwok(), prefix).await;
    install_crd(&ns.client(), &crd_from_yaml(crd)).await;
    let host = TestHost::start(&ns, &[plugin]).await;
    let sample: Value =
        serde_yaml::from_str(&std::fs::read_to_string(format!("{SAMPLES}{sample}")).expect("the sample")).unwrap();
    let api_version = sample["apiVersion"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap();
    let api = dynamic_api(&ns, group, version, sample["kind"].as_str().unwrap());
    (ns, host, api, sample)
}

/// Waits until the parent's status satisfies `check` (which explains what
/// it sees otherwise); returns the status.
async fn eventually_status(
    api: &Api<DynamicObject>,
    name: &str,
    what: &str,
    check: impl Fn(&Value) -> Result<(), String>,
) -> Value {
    until(what, SETTLE * 2, || async {
        let parent = api.get(name).await.map_err(|e| e.to_string())?;
        let status = parent.data["status"].clone();
        check(&status).map_err(|e| format!("{e}; status {status}"))?;
        Ok(status)
    })
    .await
}

fn is(status: &Value, key: &str, want: Value) -> Result<(), String> {
    if status[key] == want {
        Ok(())
    } else {
        Err(format!("{key} is {}, not {want}", status[key]))
    }
}

fn replicas(set: &StatefulSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1)
}

/// Watches the StatefulSet `name` and records each distinct `replicas` it
/// is given, in order (a watch sees every change, however brief).
async fn record_replicas(sets: &Api<StatefulSet>, name: &str) -> Arc<Mutex<Vec<i32>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let stream = watcher(sets.clone(), config).applied_objects();
    let record = seen.clone();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(Ok(set)) = stream.next().await {
            let mut seen = record.lock().unwrap();
            if seen.last() != Some(&replicas(&set)) {
                seen.push(replicas(&set));
            }
        }
    });
    // Recording starts with the current value.
    until("the StatefulSet watch to start", SETTLE, || async {
        if seen.lock().unwrap().is_empty() {
            Err("no event yet".to_owned())
        } else {
            Ok(())
        }
    })
    .await;
    seen
}

/// Waits until the parent's status says Running at `size`; returns the
/// replicas `seen` since the recording started.
async fn replicas_until_settled(
    parents: &Api<DynamicObject>,
    name: &str,
    size: i64,
    seen: &Mutex<Vec<i32>>,
) -> Vec<i32> {
    eventually_status(parents, name, &format!("a Running cluster of {size}"), |s| {
        is(s, "phase", json!("Running"))?;
        is(s, "size", json!(size))
    })
    .await;
    seen.lock().unwrap().clone()
}

#[tokio::test]
async fn an_etcd_cluster_comes_up_resizes_one_member_at_a_time_and_rolls_a_new_version() {
    let (ns, _host, parents, mut sample) =
        setup("etcd", ETCD_CRD, "trellis-plugin-etcd-cluster", "etcdcluster.yaml").await;
    apply_as_user(&parents, &sample).await;
    let status = eventually_status(&parents, "example", "the sample cluster to run", |s| {
        is(s, "phase", json!("Running"))?;
        is(s, "readyMembers", json!(3))?;
        is(s, "currentVersion", json!("3.2.13"))
    })
    .await;
    assert_eq!(status["serviceName"], "example-client");

    let sets = ns.api::<StatefulSet>();
    let set = sets.get("example").await.unwrap();
    let container = &set.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("quay.io/coreos/etcd:v3.2.13"));
    let peers = ns.api::<Service>().get("example").await.unwrap();
    assert_eq!(peers.spec.as_ref().unwrap().cluster_ip.as_deref(), Some("None"));
    eventually_exists(&ns.api::<Service>(), "example-client").await;
    let budget = ns.api::<PodDisruptionBudget>().get("example").await.unwrap();
    assert_eq!(
        budget.spec.unwrap().min_available,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(2)),
        "quorum of 3"
    );
    let config = ns.api::<ConfigMap>().get("example-config").await.unwrap();
    assert_eq!(config.data.unwrap()["size"], "3");

    // Grow: one member per step.
    let seen = record_replicas(&sets, "example").await;
    sample["spec"]["size"] = json!(5);
    apply_as_user(&parents, &sample).await;
    let grown = replicas_until_settled(&parents, "example", 5, &seen).await;
    assert_eq!(grown, vec![3, 4, 5], "growth steps");

    // A new version rolls through and is reported once every member runs it.
    sample["spec"]["version"] = json!("3.3.25");
    apply_as_user(&parents, &sample).await;
    eventually_status(&parents, "example", "version 3.3.25 to be rolled out", |s| {
        is(s, "currentVersion", json!("3.3.25"))?;
        is(s, "phase", json!("Running"))
    })
    .await;

    // Shrink: each member leaves the cluster (a Job) before its pod goes.
    let seen = record_replicas(&sets, "example").await;
    sample["spec"]["size"] = json!(3);
    apply_as_user(&parents, &sample).await;
    eventually_exists(&ns.api::<Job>(), "example-remove-member-4").await;
    let shrunk = replicas_until_settled(&parents, "example", 3, &seen).await;
    assert_eq!(shrunk, vec![5, 4, 3], "shrink steps");
    until("the removal Jobs to be pruned", SETTLE, || async {
        let jobs = ns
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
        if jobs.items.is_empty() {
            Ok(())
        } else {
            Err(format!("{} jobs left", jobs.items.len()))
        }
    })
    .await;

    // Out of range: a clear reason, and the cluster is left as it is.
    sample["spec"]["size"] = json!(10);
    apply_as_user(&parents, &sample).await;
    let message = eventually_ready_is(&parents, "example", "False", "InvalidSpec").await;
    assert!(message.contains("size 10 is above 9"), "{message}");
    assert_eq!(replicas(&sets.get("example").await.unwrap()), 3);
}

#[tokio::test]
async fn redis_credentials_are_generated_once_and_the_nodes_get_volumes() {
    let (ns, _host, parents, mut sample) = setup(
        "redis",
        REDIS_CRD,
        "trellis-plugin-redis",
        "redisenterprisecluster.yaml",
    )
    .await;
    apply_as_user(&parents, &sample).await;
    let secrets = ns.api::<Secret>();
    let secret = eventually_exists(&secrets, "redis-enterprise").await;
    let data = secret.data.clone().unwrap();
    assert_eq!(data["username"].0, b"admin@acme.com");
    assert_eq!(data["password"].0.len(), 24);
    let set = eventually_exists(&ns.api::<StatefulSet>(), "redis-enterprise").await;
    let spec = set.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    let container = &spec.template.spec.as_ref().unwrap().containers[0];
    assert_eq!(container.image.as_deref(), Some("redislabs/redis:5.4.0-19"));
    assert_eq!(
        container.resources.as_ref().unwrap().limits.as_ref().unwrap()["memory"].0,
        "4Gi"
    );
    let claims = spec
        .volume_claim_templates
        .expect("volume claims with persistentSpec.enabled");
    assert_eq!(
        claims[0].spec.as_ref().unwrap().storage_class_name.as_deref(),
        Some("gp2")
    );
    let ui = eventually_exists(&ns.api::<Service>(), "redis-enterprise-ui").await;
    assert_eq!(ui.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
    eventually_exists(&ns.api::<PodDisruptionBudget>(), "redis-enterprise").await;
    eventually_status(&parents, "redis-enterprise", "the state to be reported", |s| {
        is(s, "nodes", json!(3))
    })
    .await;

    // Later reconciles (an edit of the parent) keep the password.
    sample["spec"]["nodes"] = json!(5);
    apply_as_user(&parents, &sample).await;
    until("the StatefulSet to have 5 nodes", SETTLE, || async {
        let set = ns
            .api::<StatefulSet>()
            .get("redis-enterprise")
            .await
            .map_err(|e| e.to_string())?;
        match set.spec.and_then(|s| s.replicas) {
            Some(5) => Ok(()),
            other => Err(format!("replicas {other:?}")),
        }
    })
    .await;
    let again = secrets.get("redis-enterprise").await.unwrap();
    assert_eq!(again.data, secret.data, "the password was regenerated");
    assert_eq!(again.metadata.resource_version, secret.metadata.resource_version);
}

#[tokio::test]
async fn redis_without_persistence_runs_and_reports_ready_nodes() {
    let (_ns, _host, parents, _) = setup(
        "redis-eph",
        REDIS_CRD,
        "trellis-plugin-redis",
        "redisenterprisecluster.yaml",
    )
    .await;
    let parent = json!({
        "apiVersion": "app.redislabs.com/v1alpha1",
        "kind": "RedisEnterpriseCluster",
        "metadata": {"name": "cache"},
        "spec": {"nodes": 1, "persistentSpec": {"enabled": false},
                 "redisEnterpriseNodeResources": {"requests": {"cpu": "100m", "memory": "256Mi"}}},
    });
    apply_as_user(&parents, &parent).await;
    eventually_status(&parents, "cache", "the node to be ready", |s| {
        is(s, "state", json!("Running"))?;
        is(s, "readyNodes", json!(1))
    })
    .await;
}

#[tokio::test]
async fn an_appservice_runs_its_replicas_behind_a_node_port() {
    let (ns, _host, parents, mut sample) =
        setup("appsvc", APPSERVICE_CRD, "trellis-plugin-appservice", "appservice.yaml").await;
    apply_as_user(&parents, &sample).await;
    let service = eventually_exists(&ns.api::<Service>(), "nginx-app").await;
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("NodePort"));
    assert_eq!(spec.ports.unwrap()[0].node_port, Some(30002));
    eventually_status(&parents, "nginx-app", "2 ready replicas", |s| {
        is(s, "readyReplicas", json!(2))
    })
    .await;
    eventually_ready_is(&parents, "nginx-app", "True", "ReplicasReady").await;

    sample["spec"]["size"] = json!(3);
    apply_as_user(&parents, &sample).await;
    eventually_status(&parents, "nginx-app", "3 ready replicas", |s| {
        is(s, "readyReplicas", json!(3))
    })
    .await;
    let deployment = ns.api::<Deployment>().get("nginx-app").await.unwrap();
    assert_eq!(deployment.spec.unwrap().replicas, Some(3));
}

#[tokio::test]
async fn a_mydaemonset_follows_the_nodes() {
    let (ns, _host, parents, sample) = setup(
        "myds",
        MYDAEMONSET_CRD,
        "trellis-plugin-mydaemonset",
        "mydaemonset.yaml",
    )
    .await;
    let nodes: Api<Node> = Api::all(ns.client());
    let node_count = nodes.list(&ListParams::default()).await.unwrap().items.len();
    apply_as_user(&parents, &sample).await;
    eventually_status(&parents, "mydaemonset-sample", "a ready pod on every node", |s| {
        is(s, "desiredReplicas", json!(node_count))?;
        is(s, "availableReplicas", json!(node_count))
    })
    .await;
    let pods = ns.api::<Pod>();
    let pod = pods.get("mydaemonset-sample-kwok-node-0").await.unwrap();
    let spec = pod.spec.unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("kwok-node-0"));
    assert_eq!(spec.containers[0].image.as_deref(), Some("nginx:stable-alpine3.17"));

    // A Node joins: it gets a pod. It leaves: its pod goes.
    let node_name = format!("{}-extra", ns.name());
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node_name, "annotations": {"kwok.x-k8s.io/node": "fake"}},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
    let extra_pod = format!("mydaemonset-sample-{node_name}");
    eventually_exists(&pods, &extra_pod).await;
    eventually_status(&parents, "mydaemonset-sample", "the new node's pod to be ready", |s| {
        is(s, "availableReplicas", json!(node_count + 1))
    })
    .await;
    nodes.delete(&node_name, &DeleteParams::default()).await.unwrap();
    // The host deletes the pod; with its node gone nobody confirms the
    // termination, so it may linger as terminating until the pod GC runs.
    until("the gone node's pod to be deleted", SETTLE, || async {
        match pods.get_opt(&extra_pod).await.map_err(|e| e.to_string())? {
            Some(pod) if pod.metadata.deletion_timestamp.is_none() => Err("still there".to_owned()),
            _ => Ok(()),
        }
    })
    .await;
    eventually_status(&parents, "mydaemonset-sample", "one pod per node again", |s| {
        is(s, "desiredReplicas", json!(node_count))
    })
    .await;
}
