//! The shipped manifests are right: `deploy/` applies cleanly to a real
//! apiserver, and the host runs on the RBAC it grants its ServiceAccount
//! (authenticated with a token of that ServiceAccount), nothing more: the
//! host itself may touch no parent or child, the msdeploy plugin acts as
//! its own ServiceAccount `trellis-plugin-msdeploy`, the sample is
//! reconciled, status and events are written, and the leader Lease is taken.
//! With admission served, the host keeps its CA Secret in trellis-system
//! and the webhook configurations of the plugins that ask for hooks.

mod common;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use trellis::leader::LeaderOptions;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::crd_from_yaml;

#[tokio::test]
async fn the_host_runs_on_the_rbac_deploy_grants() {
    let ns = TestNamespace::create("deploy").await;
    let admin = ns.client();
    apply_deploy(&admin).await;
    // The CRDs in deploy/ are the ones the other tests use.
    assert_eq!(
        crd_from_yaml(MSDEPLOY_CRD).metadata.name.as_deref(),
        Some("microservicedeploys.custom.ops")
    );

    let host_config = ns.env().service_account_config("trellis-system", "trellis").await;
    let host_client = kube::Client::try_from(host_config.clone()).unwrap();
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
    // No union role: the host itself may neither read nor write what its plugins do.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(host_client.clone(), "kube-system");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the host's ServiceAccount may list Pods: {other:?}"),
    }
    let deployments: Api<Deployment> = Api::namespaced(host_client.clone(), ns.name());
    match deployments.list(&Default::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("the host's ServiceAccount may list Deployments: {other:?}"),
    }
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
    add_plugin(plugins.path(), "trellis-plugin-mydaemonset", "mydaemonset.wasm");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let admission = trellis::admission::AdmissionOptions::new(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Some(format!("https://127.0.0.1:{port}")),
        "trellis-system",
    )
    .unwrap();
    let _host = TestHost::start_with_client(host_client, plugins, |mut o| {
        o.client_config = Some(host_config);
        o.admission = Some(admission);
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
    // The host may not write Deployments (above): the plugin's own identity wrote this one.
    let deployment = ns.api::<Deployment>().get("ms-sample-v1s0").await.unwrap();
    let managers: Vec<_> = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f.manager.as_deref() == Some("trellis/msdeploy"))
        .collect();
    assert!(!managers.is_empty(), "the Deployment has no fields of trellis/msdeploy");

    // Admission on deploy/'s RBAC: the CA Secret, and mydaemonset's webhooks
    // (msdeploy asks for none).
    eventually_exists(
        &Api::<k8s_openapi::api::core::v1::Secret>::namespaced(admin.clone(), "trellis-system"),
        "trellis-webhook-ca",
    )
    .await;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
    eventually_exists(
        &Api::<ValidatingWebhookConfiguration>::all(admin.clone()),
        "trellis-mydaemonset",
    )
    .await;
    eventually_exists(
        &Api::<MutatingWebhookConfiguration>::all(admin.clone()),
        "trellis-mydaemonset",
    )
    .await;
    let validating: Api<ValidatingWebhookConfiguration> = Api::all(admin.clone());
    assert!(validating.get_opt("trellis-msdeploy").await.unwrap().is_none());
    let daemons = dynamic_api(&ns, "apps.zhongmingmao.io", "v1beta1", "MyDaemonSet");
    let defaulted = trellis_testenv::wait::until("a MyDaemonSet defaulted by the webhook", SETTLE, || async {
        let object = serde_json::json!({"apiVersion": "apps.zhongmingmao.io/v1beta1", "kind": "MyDaemonSet",
            "metadata": {"name": "probe"}, "spec": {"image": "nginx"}});
        let created = daemons
            .create(
                &kube::api::PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .map_err(|e| e.to_string())?;
        match created.data["spec"]["image"].as_str() {
            Some("nginx:latest") => Ok(()),
            other => Err(format!("image {other:?}")),
        }
    })
    .await;
    let () = defaulted;
}
