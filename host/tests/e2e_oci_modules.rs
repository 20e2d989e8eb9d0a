//! Modules pulled from an OCI registry (`spec.module.oci`), end to end
//! against a real registry (the CNCF distribution registry, TLS and
//! htpasswd) and a real control plane. One test, one host that sees every
//! registration:
//! - a ClusterReconcilerPlugin serves msdeploy by tag, its status naming
//!   the digest the tag resolved to, and the sample reconciles;
//! - a tenant's ReconcilerPlugin (as `trellis plugin pack --oci` prints it)
//!   pulls greeter by tag with a pull Secret of its namespace, read as its
//!   ServiceAccount; a new version pushed under the tag is picked up within
//!   the refresh period;
//! - a wrong pin is refused (DigestMismatch) while the module that served
//!   serves on; a private repository needs the Secret (Unauthorized
//!   without); a Secret of another namespace is refused before any read;
//!   a Secret the tenant's ServiceAccount may not read is refused; a bad
//!   reference is refused.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use trellis::crd::{ClusterReconcilerPlugin, ReconcilerPlugin};
use trellis::testing::guest_module;
use trellis_testenv::TestNamespace;
use trellis_testenv::registry::Registry;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

/// The tenant's ServiceAccount, and the pull Secrets of its namespace.
const TENANT_SA: &str = "puller";
const PULL_SECRET: &str = "registry-pull";
const UNREADABLE_SECRET: &str = "registry-pull-unreadable";

/// Applies a tenant's ReconcilerPlugin acting as [`TENANT_SA`] with `module`.
async fn register_tenant(ns: &TestNamespace, name: &str, module: Value) {
    let object = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin",
        "metadata": {"name": name, "namespace": ns.name()},
        "spec": {"serviceAccountName": TENANT_SA, "module": module}});
    Api::<ReconcilerPlugin>::namespaced(ns.client(), ns.name())
        .patch(
            name,
            &PatchParams::apply("tenant-admin").force(),
            &Patch::Apply(&object),
        )
        .await
        .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}

#[tokio::test]
async fn modules_from_an_oci_registry() {
    let registry = Registry::start().await.unwrap_or_else(|e| panic!("{e}"));
    let ns = TestNamespace::create("oci-modules").await;
    let admin = ns.client();
    for crd in [CLUSTER_RECONCILER_PLUGIN_CRD, RECONCILER_PLUGIN_CRD, GREETER_CRD] {
        install_crd(&admin, &crd_from_yaml(crd)).await;
    }
    install_msdeploy_crd(&admin).await;
    let config = ns.env().config();
    let namespace = ns.name().to_owned();
    let ca = registry.ca_cert().to_path_buf();
    let _host = TestHost::start_with_client(admin.clone(), tempfile::tempdir().unwrap(), move |mut o| {
        o.namespace = Some(namespace);
        o.plugin_accounts = trellis::controller::PluginAccounts::HostClient;
        o.client_config = Some(config);
        o.registry_ca_files = vec![ca];
        o.oci_refresh = Duration::from_secs(2);
        o
    })
    .await;
    for secret in [PULL_SECRET, UNREADABLE_SECRET] {
        apply_yaml_stream(&admin, &pull_secret(&registry, ns.name(), secret).to_string()).await;
    }

    // A platform admin's registration by tag: the tag resolves to a digest
    // shown in status, and msdeploy reconciles the sample.
    let msdeploy_tag = format!("{}/platform/msdeploy:1", registry.host());
    let (msdeploy_pinned, msdeploy_sha) = push_module(&registry, "trellis-plugin-msdeploy", &msdeploy_tag).await;
    let cluster: Api<ClusterReconcilerPlugin> = Api::all(admin.clone());
    let registration = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ClusterReconcilerPlugin",
        "metadata": {"name": "msdeploy-oci"},
        "spec": {"module": {"oci": {"reference": msdeploy_tag, "pullSecret": {"namespace": ns.name(), "name": PULL_SECRET}}}}});
    cluster
        .patch(
            "msdeploy-oci",
            &PatchParams::apply("platform-admin"),
            &Patch::Apply(&registration),
        )
        .await
        .unwrap();
    registration_ready_is(&cluster, "msdeploy-oci", "True", "Serving").await;
    assert_eq!(
        eventually_serves_artifact(&cluster, "msdeploy-oci", &msdeploy_pinned).await,
        msdeploy_sha
    );
    assert!(msdeploy_pinned.contains("@sha256:"), "{msdeploy_pinned}");
    apply_as_user(&msdeploy_api(&ns), &msdeploy_sample()).await;
    eventually_exists(&ns.api::<Deployment>(), "ms-sample-v1s0").await;

    // A tenant pulls with the Secret of its namespace, read as its
    // ServiceAccount, which may get that Secret and no other.
    let rules = json!([
        {"apiGroups": ["test.trellis.dev"], "resources": ["greeters"], "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["test.trellis.dev"], "resources": ["greeters/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [PULL_SECRET], "verbs": ["get"]},
    ]);
    let rbac = format!(
        "{}\n---\n{}\n---\n{}",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": TENANT_SA, "namespace": ns.name()}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": TENANT_SA, "namespace": ns.name()}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": TENANT_SA, "namespace": ns.name()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TENANT_SA},
            "subjects": [{"kind": "ServiceAccount", "name": TENANT_SA, "namespace": ns.name()}]}),
    );
    apply_yaml_stream(&admin, &rbac).await;
    let greeter_tag = format!("{}/{}/greeter:stable", registry.host(), ns.name());
    let (v1_pinned, v1_sha) = push_module(&registry, "trellis-test-greeter-v1", &greeter_tag).await;
    let oci_module = |reference: &str, secret: Value| json!({"oci": {"reference": reference, "pullSecret": secret}});
    // Registered as `trellis plugin pack --oci TAG --pull-secret S` prints it.
    let packed = trellis::pack::pack(&trellis::pack::PackInput {
        module: guest_module("trellis-test-greeter-v1"),
        name: "greeter".into(),
        namespace: ns.name().into(),
        service_account: Some(TENANT_SA.into()),
        service_account_ref: None,
        gzip: false,
        oci: Some(trellis::pack::OciTarget {
            reference: greeter_tag.clone(),
            pull_secret: Some(PULL_SECRET.into()),
            cosign_key: None,
        }),
    })
    .expect("the registration packs");
    apply_yaml_stream(&admin, &packed).await;
    tenant_registration_is(&ns, "greeter", "True", "Serving").await;
    let tenants: Api<ReconcilerPlugin> = Api::namespaced(admin.clone(), ns.name());
    assert_eq!(
        eventually_serves_artifact(&tenants, "greeter", &v1_pinned).await,
        v1_sha
    );
    apply_greeter(&ns, "first").await;
    eventually_greets(&ns, "first", "hello").await;

    // A new version under the same tag is picked up on the next refresh.
    let (v2_pinned, v2_sha) = push_module(&registry, "trellis-test-greeter-v2", &greeter_tag).await;
    assert_ne!(v1_pinned, v2_pinned);
    assert_eq!(
        eventually_serves_artifact(&tenants, "greeter", &v2_pinned).await,
        v2_sha
    );
    eventually_greets(&ns, "first", "bonjour").await;

    // A wrong pin: refused, and the module that served serves on.
    let pinned_wrong =
        json!({"oci": {"reference": greeter_tag, "pullSecret": {"name": PULL_SECRET}}, "sha256": v1_sha});
    register_tenant(&ns, "greeter", pinned_wrong).await;
    let message = tenant_registration_is(&ns, "greeter", "False", "DigestMismatch").await;
    assert!(message.contains("still serving the previous module"), "{message}");
    apply_greeter(&ns, "second").await;
    eventually_greets(&ns, "second", "bonjour").await;

    // Refused, each with its reason (the parent kind is taken here, but a
    // module that does not load is refused first).
    let refused = [
        ("no-secret", json!({"oci": {"reference": greeter_tag}}), "Unauthorized"),
        (
            "other-namespace",
            oci_module(&greeter_tag, json!({"namespace": "kube-system", "name": PULL_SECRET})),
            "PullSecretOutsideNamespace",
        ),
        (
            "unreadable",
            oci_module(&greeter_tag, json!({"name": UNREADABLE_SECRET})),
            "PullSecretForbidden",
        ),
        (
            "missing-secret",
            oci_module(&greeter_tag, json!({"name": "no-such-secret"})),
            // The Role names one Secret: another, even one that does not
            // exist, is forbidden before it is found missing.
            "PullSecretForbidden",
        ),
        (
            "bad-reference",
            oci_module("registry.example/Not/Lowercase:1", json!({"name": PULL_SECRET})),
            "InvalidReference",
        ),
        (
            "no-such-tag",
            oci_module(
                &format!("{}/{}/greeter:absent", registry.host(), ns.name()),
                json!({"name": PULL_SECRET}),
            ),
            "ModuleNotFound",
        ),
    ];
    for (name, module, _) in &refused {
        register_tenant(&ns, name, module.clone()).await;
    }
    for (name, _, reason) in &refused {
        let message = tenant_registration_is(&ns, name, "False", reason).await;
        assert!(!message.is_empty(), "{name}");
    }
}
