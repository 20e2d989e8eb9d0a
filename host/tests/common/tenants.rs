//! Tenants as a platform team onboards them: a ServiceAccount with a Role
//! of its namespace, and a packed module registered to act as it.

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use trellis::crd::ReconcilerPlugin;
use trellis::pack::{PackInput, pack};
use trellis_testenv::TestNamespace;

use super::{apply_yaml_stream, registration_ready_is};

/// A tenant's ServiceAccount `account` (with `annotations`) and a Role of
/// `rules` bound to it in `ns`, then `plugin_crate` packed as the
/// ReconcilerPlugin `name` acting as it.
pub async fn onboard(
    admin: &kube::Client,
    ns: &TestNamespace,
    account: &str,
    annotations: Value,
    rules: Value,
    name: &str,
    plugin_crate: &str,
) {
    let rbac = format!(
        "{}\n---\n{}\n---\n{}",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": ns.name(), "annotations": annotations}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": account, "namespace": ns.name()}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": account, "namespace": ns.name()},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns.name()}]}),
    );
    apply_yaml_stream(admin, &rbac).await;
    let packed = pack(&PackInput {
        module: trellis::testing::guest_module(plugin_crate),
        name: name.into(),
        namespace: ns.name().into(),
        service_account: Some(account.into()),
        service_account_ref: None,
        gzip: false,
        oci: None,
    })
    .expect("the module packs");
    apply_yaml_stream(admin, &packed).await;
}

/// Waits until the tenant's ReconcilerPlugin `Ready` is `status` with `reason`; returns the message.
pub async fn tenant_registration_is(ns: &TestNamespace, name: &str, status: &str, reason: &str) -> String {
    registration_ready_is(
        &Api::<ReconcilerPlugin>::namespaced(ns.client(), ns.name()),
        name,
        status,
        reason,
    )
    .await
}

/// The greeter test plugin onboarded as the tenant `greeter` of `ns`,
/// acting as its ServiceAccount `greeter-plugin` (no consent annotation).
pub async fn onboard_greeter(admin: &kube::Client, ns: &TestNamespace) {
    onboard(
        admin,
        ns,
        "greeter-plugin",
        json!({}),
        greeter_tenant_rules(),
        "greeter",
        "trellis-test-greeter-v1",
    )
    .await;
}

/// The Role a tenant of the greeter test plugins needs: its Greeters and
/// their status, and the ConfigMaps it makes.
fn greeter_tenant_rules() -> Value {
    json!([
        {"apiGroups": ["test.trellis.dev"], "resources": ["greeters"], "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": ["test.trellis.dev"], "resources": ["greeters/status"], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
    ])
}

/// The hostile test plugin onboarded as the tenant `name` of `ns` (its
/// ServiceAccount, with `annotations`, may run its Hostiles and write
/// ConfigMaps), narrowed to ConfigMap children with `limits`; returns once
/// it serves.
pub async fn onboard_hostile(admin: &kube::Client, ns: &TestNamespace, name: &str, annotations: Value, limits: Value) {
    let rules = json!([
        {"apiGroups": ["test.trellis.dev"], "resources": ["hostiles", "hostiles/status"], "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
    ]);
    onboard(admin, ns, name, annotations, rules, name, "trellis-test-hostile").await;
    let narrowed = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin", "spec": {
        "children": [{"apiVersion": "v1", "kind": "ConfigMap"}], "related": [], "limits": limits}});
    Api::<ReconcilerPlugin>::namespaced(admin.clone(), ns.name())
        .patch(name, &PatchParams::apply("platform-team"), &Patch::Apply(narrowed))
        .await
        .unwrap_or_else(|e| panic!("narrowing {name}: {e}"));
    tenant_registration_is(ns, name, "True", "Serving").await;
}
