//! The shipped manifests are right: `deploy/` applies cleanly to a real
//! apiserver, and the host runs on the RBAC it grants its ServiceAccount
//! (impersonated here), nothing more: the msdeploy sample is reconciled,
//! status and events are written, and the leader Lease is taken.

mod common;

use std::path::Path;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::discovery::pinned_kind;
use trellis::leader::LeaderOptions;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

const SERVICE_ACCOUNT: &str = "system:serviceaccount:trellis-system:trellis";

/// Every object of the YAML files that `deploy/kustomization.yaml` lists, in order.
fn deploy_objects() -> Vec<serde_json::Value> {
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let kustomization: serde_json::Value =
        serde_yaml::from_str(&std::fs::read_to_string(deploy.join("kustomization.yaml")).unwrap()).unwrap();
    let mut objects = Vec::new();
    for file in kustomization["resources"].as_array().unwrap() {
        let text = std::fs::read_to_string(deploy.join(file.as_str().unwrap())).unwrap();
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(document).unwrap();
            if !value.is_null() {
                objects.push(value);
            }
        }
    }
    objects
}

async fn apply(client: &kube::Client, object: &serde_json::Value, dry_run: bool) {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    let gvk = GroupVersionKind::gvk(group, version, object["kind"].as_str().unwrap());
    let (resource, caps) = pinned_kind(client, &gvk).await.unwrap();
    let name = object["metadata"]["name"].as_str().unwrap();
    let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
        Some(ns) if caps.scope == kube::discovery::Scope::Namespaced => {
            Api::namespaced_with(client.clone(), ns, &ApiResource { ..resource })
        }
        _ => Api::all_with(client.clone(), &resource),
    };
    let mut params = PatchParams::apply("test-admin").force();
    params.dry_run = dry_run;
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .unwrap_or_else(|e| panic!("applying {} {name} from deploy/: {e}", gvk.kind));
}

#[tokio::test]
async fn the_host_runs_on_the_rbac_deploy_grants() {
    let ns = TestNamespace::create("deploy").await;
    let admin = ns.client();
    for object in deploy_objects() {
        let kind = object["kind"].as_str().unwrap();
        if kind == "CustomResourceDefinition" {
            install_crd(&admin, &serde_json::from_value(object.clone()).unwrap()).await;
        } else {
            // The Deployment would only run with an image; check it validates.
            apply(&admin, &object, kind == "Deployment").await;
        }
    }
    // The CRDs in deploy/ are the ones the other tests use.
    assert_eq!(
        crd_from_yaml(MSDEPLOY_CRD).metadata.name.as_deref(),
        Some("microservicedeploys.custom.ops")
    );

    let host_client = ns.env().client_as(
        SERVICE_ACCOUNT,
        &[
            "system:serviceaccounts",
            "system:serviceaccounts:trellis-system",
            "system:authenticated",
        ],
    );
    // Least privilege: the host's identity holds what its plugins emit and
    // nothing that would let it grant itself more.
    let bindings: Api<k8s_openapi::api::rbac::v1::ClusterRoleBinding> = Api::all(host_client.clone());
    match bindings.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the host's ServiceAccount may list ClusterRoleBindings: {other:?}"),
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(host_client.clone());
    match nodes.delete("kwok-node-0", &Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the host's ServiceAccount may delete Nodes: {other:?}"),
    }
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
    let _host = TestHost::start_with_client(host_client, plugins, |mut o| {
        o.leader = Some(LeaderOptions {
            namespace: "trellis-system".into(),
            name: "trellis-leader".into(),
            identity: "deploy-test".into(),
            lease_duration: std::time::Duration::from_secs(15),
        });
        o
    })
    .await;

    apply_as_user(&msdeploy_api(&ns), &msdeploy_sample()).await;
    eventually_exists(&ns.api::<Deployment>(), "ms-sample-v1s0").await;
    eventually_exists(&ns.api::<Service>(), "ms-sample-v1s0").await;
    eventually_ready_is(&msdeploy_api(&ns), "ms-sample-v1s0", "False", "ReplicasNotReady").await;
    let lease = Api::<Lease>::namespaced(admin.clone(), "trellis-system")
        .get("trellis-leader")
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some("deploy-test"));
}
