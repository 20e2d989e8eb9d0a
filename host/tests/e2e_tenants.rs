//! Tenants on one host, end to end: each team registers its own plugin with
//! a namespaced `ReconcilerPlugin` (module from a ConfigMap of its
//! namespace, acting as its ServiceAccount). A hostile team's plugin —
//! loops, memory bombs, deep recursion, panics, huge or malformed output, a
//! child in another namespace, a ClusterRoleBinding to cluster-admin, a
//! forged ownerReference, a write its RBAC forbids, a Secret it may not
//! read — changes nothing outside its namespace, and the other team's
//! reconciles keep their latency.
//!
//! One test, in phases: every tenant shares the one host of this binary.

mod common;

use common::{
    CLUSTER_RECONCILER_PLUGIN_CRD, GREETER_CRD, HOSTILE_CRD, RECONCILER_PLUGIN_CRD, SETTLE, TestHost, counter,
    dynamic_api, eventually_ready_is, hostile, hostile_api, tenant_registration_is,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;
use trellis::crd::ReconcilerPlugin;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};

/// The plugin's ServiceAccount in each tenant namespace.
const PLUGIN_SA: &str = "plugin";

/// A ServiceAccount `plugin` with a Role of `rules`, then the module packed
/// as a ConfigMap and a `ReconcilerPlugin` named `name` acting as it, with
/// `spec` merged into the registration's spec.
async fn onboard(ns: &TestNamespace, name: &str, plugin_crate: &str, rules: Value, spec: Value) {
    common::onboard(&ns.client(), ns, PLUGIN_SA, json!({}), rules, name, plugin_crate).await;
    if spec.as_object().is_some_and(|s| !s.is_empty()) {
        let registrations: Api<ReconcilerPlugin> = Api::namespaced(ns.client(), ns.name());
        let patch = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin", "spec": spec});
        registrations
            .patch(name, &PatchParams::apply("tenant-admin"), &Patch::Apply(&patch))
            .await
            .expect("narrowing the registration");
    }
}

/// Rules of a tenant's Role: full use of `plural` (and its status) in
/// `group`, and `config_map_verbs` on ConfigMaps.
fn rules(group: &str, plural: &str, config_map_verbs: &[&str]) -> Value {
    json!([
        {"apiGroups": [group], "resources": [plural], "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": [group], "resources": [format!("{plural}/status")], "verbs": ["get", "patch", "update"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": config_map_verbs},
    ])
}

/// Seconds from creating a Greeter to its ConfigMap, for `count` new ones.
async fn greeter_latencies(ns: &TestNamespace, prefix: &str, count: usize) -> Vec<f64> {
    let greeters = dynamic_api(ns, "test.trellis.dev", "v1", "Greeter");
    let config_maps = ns.api::<ConfigMap>();
    let mut out = Vec::new();
    for i in 0..count {
        let name = format!("{prefix}-{i}");
        let started = Instant::now();
        let object = json!({"apiVersion": "test.trellis.dev/v1", "kind": "Greeter", "metadata": {"name": name}});
        greeters
            .patch(&name, &PatchParams::apply("team-b"), &Patch::Apply(&object))
            .await
            .unwrap();
        until(&format!("{name}'s greeting"), SETTLE, || async {
            match config_maps.get_opt(&format!("{name}-greeting")).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err("not yet".to_owned()),
                Err(e) => Err(e.to_string()),
            }
        })
        .await;
        out.push(started.elapsed().as_secs_f64());
    }
    out
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

/// Every object of the kinds a hostile plugin might reach, outside
/// `except`, by kind/namespace/name, with its resourceVersion.
async fn snapshot(client: &kube::Client, except: &str) -> BTreeMap<String, String> {
    let kinds = [
        ("", "v1", "ConfigMap"),
        ("", "v1", "Secret"),
        ("", "v1", "ServiceAccount"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("test.trellis.dev", "v1", "Greeter"),
    ];
    let mut out = BTreeMap::new();
    for (group, version, kind) in kinds {
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for object in api.list(&ListParams::default()).await.unwrap().items {
            let namespace = object.metadata.namespace.clone().unwrap_or_default();
            if namespace == except {
                continue;
            }
            let key = format!(
                "{kind} {namespace}/{}",
                object.metadata.name.clone().unwrap_or_default()
            );
            out.insert(key, object.metadata.resource_version.clone().unwrap_or_default());
        }
    }
    out
}

#[tokio::test]
async fn tenants_are_confined_to_their_namespace_identity_and_fair_share() {
    let team_a = TestNamespace::create("team-a").await;
    let team_b = TestNamespace::create("team-b").await;
    let team_c = TestNamespace::create("team-c").await;
    let admin = team_a.client();
    for crd in [
        CLUSTER_RECONCILER_PLUGIN_CRD,
        RECONCILER_PLUGIN_CRD,
        GREETER_CRD,
        HOSTILE_CRD,
    ] {
        install_crd(&admin, &crd_from_yaml(crd)).await;
    }
    // One host for every namespace, able to act as tenants' ServiceAccounts.
    let config = team_a.env().config();
    let host = TestHost::start_with_client(admin.clone(), tempfile::tempdir().unwrap(), |mut o| {
        o.client_config = Some(config);
        o
    })
    .await;

    // Team B: a well-behaved greeter; its latency before any trouble.
    onboard(
        &team_b,
        "greeter",
        "trellis-test-greeter-v1",
        rules(
            "test.trellis.dev",
            "greeters",
            &["get", "list", "watch", "create", "patch", "update", "delete"],
        ),
        json!({}),
    )
    .await;
    tenant_registration_is(&team_b, "greeter", "True", "Serving").await;
    let calm = greeter_latencies(&team_b, "calm", 5).await;

    // Team A: the hostile plugin, narrowed to ConfigMaps and no related
    // kinds; its Role may not even create ConfigMaps.
    onboard(
        &team_a,
        "hostile",
        "trellis-test-hostile",
        rules(
            "test.trellis.dev",
            "hostiles",
            &["get", "list", "watch", "patch", "update", "delete"],
        ),
        json!({"children": [{"apiVersion": "v1", "kind": "ConfigMap"}], "related": [],
               "limits": {"timeoutMs": 300, "maxConcurrentReconciles": 2}}),
    )
    .await;
    tenant_registration_is(&team_a, "hostile", "True", "Serving").await;

    let before = snapshot(&admin, team_a.name()).await;
    let hostiles = hostile_api(&team_a);
    let modes = [
        ("loop", "PluginTimeout"),
        ("alloc-bomb", "PluginMemoryLimit"),
        ("recursion", "PluginTrapped"),
        ("panic", "PluginTrapped"),
        ("huge-response", "ResponseTooLarge"),
        ("garbage-json", "InvalidResponse"),
        ("other-namespace", "InvalidResponse"),
        ("cluster-admin", "UnknownChildKind"),
        ("forged-owner", "InvalidResponse"),
        ("bad-name", "InvalidResponse"),
        // A child its RBAC forbids: the API's reason, nothing written.
        ("ok", "ApplyForbidden"),
    ];
    for (mode, _) in modes {
        let parent = hostile(mode, mode);
        hostiles
            .patch(mode, &PatchParams::apply("team-a"), &Patch::Apply(&parent))
            .await
            .unwrap();
    }
    // More loops, to keep the hostile tenant's queue busy.
    for i in 0..6 {
        let name = format!("loop-{i}");
        hostiles
            .patch(
                &name,
                &PatchParams::apply("team-a"),
                &Patch::Apply(&hostile(&name, "loop")),
            )
            .await
            .unwrap();
    }
    for (mode, reason) in modes {
        eventually_ready_is(&hostiles, mode, "False", reason).await;
    }

    // Team B while team A misbehaves.
    let stormy = greeter_latencies(&team_b, "stormy", 5).await;
    let (calm_median, stormy_median) = (median(&calm), median(&stormy));
    println!(
        "team B create-to-child latency: calm median {calm_median:.3} s {calm:?}; with team A hostile {stormy_median:.3} s {stormy:?}"
    );
    assert!(
        stormy_median <= calm_median * 3.0 + 0.5,
        "team B slowed down: {calm_median:.3} s -> {stormy_median:.3} s"
    );
    // Per-plugin metrics tell the two apart.
    let plugin_a = format!("{}.hostile", team_a.name());
    let plugin_b = format!("{}.greeter", team_b.name());
    let timeouts_a = counter(
        &host.metrics,
        &format!("trellis_reconcile_errors_total{{plugin=\"{plugin_a}\",cause=\"PluginTimeout\"}}"),
    );
    let reconciles_b = counter(
        &host.metrics,
        &format!("trellis_reconciles_total{{plugin=\"{plugin_b}\"}}"),
    );
    println!("metrics: {plugin_a} timeouts {timeouts_a}, {plugin_b} reconciles {reconciles_b}");
    assert!(timeouts_a >= 7.0, "team A's timeouts: {timeouts_a}");
    assert!(reconciles_b >= 10.0, "team B's reconciles: {reconciles_b}");
    let errors_b: Vec<String> = host
        .metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("trellis_reconcile_errors_total") && l.contains(&plugin_b))
        .map(str::to_owned)
        .collect();
    assert!(errors_b.is_empty(), "team B had errors: {errors_b:?}");

    // Team C asks for Secrets its ServiceAccount may not read: refused up
    // front, no Secret ever reaches the plugin.
    onboard(
        &team_c,
        "hostile",
        "trellis-test-hostile",
        rules(
            "test.trellis.dev",
            "hostiles",
            &["get", "list", "watch", "create", "patch", "update", "delete"],
        ),
        json!({"children": [{"apiVersion": "v1", "kind": "ConfigMap"}]}),
    )
    .await;
    let message = tenant_registration_is(&team_c, "hostile", "False", "Forbidden").await;
    assert!(message.contains("may not list v1 Secret"), "{message}");
    // A tenant cannot use the host's plugins folder, nor another namespace's ConfigMap.
    let registrations: Api<ReconcilerPlugin> = Api::namespaced(admin.clone(), team_c.name());
    for (name, module) in [
        ("from-file", json!({"file": "msdeploy.wasm"})),
        (
            "from-elsewhere",
            json!({"configMap": {"namespace": team_b.name(), "name": "greeter"}}),
        ),
    ] {
        let object = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin",
            "metadata": {"name": name}, "spec": {"module": module, "serviceAccountName": PLUGIN_SA}});
        registrations
            .patch(name, &PatchParams::apply("team-c"), &Patch::Apply(&object))
            .await
            .unwrap();
    }
    tenant_registration_is(&team_c, "from-file", "False", "FileModuleNotAllowed").await;
    tenant_registration_is(&team_c, "from-elsewhere", "False", "ModuleOutsideNamespace").await;

    // Nothing outside team A's namespace changed.
    let after = snapshot(&admin, team_a.name()).await;
    for (key, version) in &before {
        assert_eq!(after.get(key), Some(version), "{key} changed or went away");
    }
    let new: Vec<&String> = after.keys().filter(|k| !before.contains_key(*k)).collect();
    for key in &new {
        let ours = key.contains(team_b.name()) || key.contains(team_c.name());
        assert!(ours, "an object appeared outside the tenants' own doings: {key}");
    }
    // And inside team A, the forbidden child was not written either.
    assert!(team_a.api::<ConfigMap>().get_opt("ok-out").await.unwrap().is_none());
}
