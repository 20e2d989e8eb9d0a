//! Confinement of plugins' rights, with the host running as its deployed
//! ServiceAccount (a token of `trellis-system/trellis`) under exactly
//! `deploy/`'s RBAC: no plugin acts with more than its own identity.
//!
//! The plugin here declares parent `v1 ConfigMap` and child `v1 Pod`: every
//! namespace holds a ConfigMap (`kube-root-ca.crt`), so a host that served
//! it with broad rights would write Pods into kube-system. Then a tenant
//! asks for more memory than the platform's ceiling, and for a
//! ServiceAccount that has not consented to it; and a tenant's memory bombs
//! stay within the host's memory budget.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use trellis::crd::{ClusterReconcilerPlugin, ReconcilerPlugin};
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

/// The plugin's file in the host's folder, and the Pod it would write for
/// kube-system's `kube-root-ca.crt`.
const MODULE: &str = "pod-from-configmap.wasm";
const KUBE_SYSTEM_POD: &str = "kube-root-ca-crt-pod";
/// The host's memory budget for plugin calls, and what it keeps beside it.
const MEMORY_BUDGET_MIB: u32 = 512;
const RESERVE_MIB: u64 = trellis::memory::RESERVE_MIB as u64;

/// A ServiceAccount `namespace/name` and a ClusterRole (bound cluster-wide) with `rules`.
async fn service_account_with(admin: &kube::Client, namespace: &str, name: &str, rules: Value) {
    let binding = format!("{namespace}-{name}");
    let objects = format!(
        "{}\n---\n{}\n---\n{}",
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": namespace}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": binding}, "rules": rules}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": binding},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": binding},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}]}),
    );
    apply_yaml_stream(admin, &objects).await;
}

/// Waits until the ClusterReconcilerPlugin's `Ready` is False with `reason`; returns the message.
async fn refused_with(admin: &kube::Client, name: &str, reason: &str) -> String {
    registration_ready_is(
        &Api::<ClusterReconcilerPlugin>::all(admin.clone()),
        name,
        "False",
        reason,
    )
    .await
}

/// Pods the plugin wrote anywhere (it labels its children with its name).
async fn plugin_pods(admin: &kube::Client) -> Vec<String> {
    let pods: Api<Pod> = Api::all(admin.clone());
    let mut names = Vec::new();
    for selector in [
        "trellis.dev/plugin=pod-from-configmap",
        "trellis.dev/plugin=configmap-pods",
    ] {
        let list = pods.list(&ListParams::default().labels(selector)).await.unwrap();
        names.extend(list.items.into_iter().map(|p| {
            format!(
                "{}/{}",
                p.metadata.namespace.unwrap_or_default(),
                p.metadata.name.unwrap_or_default()
            )
        }));
    }
    names
}

#[tokio::test]
async fn no_plugin_acts_beyond_its_own_identity() {
    let ns = TestNamespace::create("confined").await;
    let admin = ns.client();
    apply_deploy(&admin).await;

    // The folder plugin's own ServiceAccount exists and may do all it
    // asks, cluster-wide: only the rule on built-in parent kinds keeps it
    // from being served.
    service_account_with(
        &admin,
        "trellis-system",
        "trellis-plugin-pod-from-configmap",
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch", "patch", "update"]},
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]},
        ]),
    )
    .await;
    // A ServiceAccount that may read ConfigMaps everywhere but not Pods.
    service_account_with(
        &admin,
        ns.name(),
        "configmap-reader",
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]),
    )
    .await;

    let host_config = ns.env().service_account_config("trellis-system", "trellis").await;
    let host_client = kube::Client::try_from(host_config.clone()).unwrap();
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-test-pod-from-configmap", MODULE);
    let host = TestHost::start_with_client(host_client, plugins, |mut o| {
        o.client_config = Some(host_config);
        o.service_account_consent = true;
        o.memory_budget_mib = MEMORY_BUDGET_MIB;
        o
    })
    .await;

    // (1) The file alone claims ConfigMaps: not served, though its
    // ServiceAccount could. A host that served it would reconcile
    // kube-system's ConfigMaps within a poll or two.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(plugin_pods(&admin).await, Vec::<String>::new());
    assert_eq!(
        counter(&host.metrics, "trellis_reconciles_total{plugin=\"pod-from-configmap\""),
        0.0,
        "the folder plugin for ConfigMaps was served"
    );

    // (2) An explicit registration, acting as a ServiceAccount that may not
    // list Pods cluster-wide: refused before anything is watched.
    let registrations: Api<ClusterReconcilerPlugin> = Api::all(admin.clone());
    let registration = |account: Value| {
        json!({
            "apiVersion": "trellis.dev/v1alpha1", "kind": "ClusterReconcilerPlugin",
            "metadata": {"name": "configmap-pods"},
            "spec": {"module": {"file": MODULE}, "serviceAccountRef": account},
        })
    };
    registrations
        .patch(
            "configmap-pods",
            &PatchParams::apply("platform-admin"),
            &Patch::Apply(registration(
                json!({"namespace": ns.name(), "name": "configmap-reader"}),
            )),
        )
        .await
        .unwrap();
    let message = refused_with(&admin, "configmap-pods", "Forbidden").await;
    assert!(
        message.contains(&format!("system:serviceaccount:{}:configmap-reader", ns.name()))
            && message.contains("v1 Pod")
            && message.contains("cluster-wide"),
        "{message}"
    );

    // (3) A ServiceAccount that does not exist: refused, and it says so.
    registrations
        .patch(
            "configmap-pods",
            &PatchParams::apply("platform-admin"),
            &Patch::Apply(registration(json!({"namespace": ns.name(), "name": "nobody"}))),
        )
        .await
        .unwrap();
    let message = refused_with(&admin, "configmap-pods", "ServiceAccountNotFound").await;
    assert!(
        message.contains(&format!("ServiceAccount {}/nobody", ns.name())),
        "{message}"
    );

    // Nothing was written into kube-system (or anywhere) at any point.
    let kube_system: Api<Pod> = Api::namespaced(admin.clone(), "kube-system");
    assert!(kube_system.get_opt(KUBE_SYSTEM_POD).await.unwrap().is_none());
    assert_eq!(plugin_pods(&admin).await, Vec::<String>::new());
    registrations
        .delete("configmap-pods", &Default::default())
        .await
        .unwrap();

    let team = tenant_ceiling_and_consent(&admin).await;
    let bombers = memory_bombs_stay_within_the_budget(&admin, &team).await;
    floods_are_capped(&host.metrics, &bombers).await;
    host.stop().await;
}

/// (f) 32 parents whose plugin asks for 2,000 events and a requeue after 0 s
/// on every reconcile: at most 10 events are written per reconcile and 30
/// per parent a minute (the rest counted as dropped), and each parent is
/// reconciled at most once a second.
async fn floods_are_capped(metrics: &trellis::metrics::Metrics, ns: &TestNamespace) {
    let hostiles = hostile_api(ns);
    let plugin = format!("{}.bomber", ns.name());
    let reconciles = format!("trellis_reconciles_total{{plugin=\"{plugin}\"}}");
    let dropped = format!("trellis_events_dropped_total{{plugin=\"{plugin}\"}}");
    for i in 0..32 {
        let name = format!("flood-{i}");
        apply_as_user(&hostiles, &hostile(&name, "event-flood")).await;
    }
    // After the first reconciles (and the finalizer's), 8 s of flooding.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = counter(metrics, &reconciles);
    let dropped_before = counter(metrics, &dropped);
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let ran = counter(metrics, &reconciles) - before;
    let seconds = started.elapsed().as_secs_f64();
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(ns.client(), ns.name());
    let written = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("Flood"))
        .count();
    let dropped = counter(metrics, &dropped) - dropped_before;
    eprintln!("flood: {ran} reconciles of 32 parents in {seconds:.1} s, {written} events written, {dropped} dropped");
    assert!(ran >= 32.0, "the flooding parents were not reconciled ({ran})");
    // One a second per parent at most, plus the first.
    assert!(
        ran <= 32.0 * (seconds + 1.0),
        "{ran} reconciles in {seconds:.1} s: the requeue floor did not hold"
    );
    let all_reconciles = counter(metrics, &reconciles);
    assert!(
        written as f64 <= 10.0 * all_reconciles,
        "{written} events for {all_reconciles} reconciles: above the cap of 10"
    );
    assert!(
        dropped >= (2000.0 - 10.0) * ran - 0.5,
        "dropped events not counted: {dropped}"
    );
    for i in 0..32 {
        hostiles
            .delete(&format!("flood-{i}"), &Default::default())
            .await
            .unwrap();
    }
}

/// This process's resident memory now and at its peak, in MiB (the host runs in it).
fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .map(|kib| kib >> 10)
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// (c) Eight parents of a plugin that allocates until its 256 MiB limit,
/// over and over: the calls at once are bounded by the 512 MiB budget (two,
/// where the instance slots alone would allow all eight, 2 GiB), and the other tenant
/// is still served.
async fn memory_bombs_stay_within_the_budget(admin: &kube::Client, greeter_team: &TestNamespace) -> TestNamespace {
    install_crd(admin, &crd_from_yaml(HOSTILE_CRD)).await;
    let bombers = TestNamespace::create("bombers").await;
    onboard_hostile(
        admin,
        &bombers,
        "bomber",
        json!({"trellis.dev/allowed-registrations": "*"}),
        json!({"memoryMib": 256, "timeoutMs": 5000, "maxConcurrentReconciles": 8}),
    )
    .await;

    let (before, _) = rss_mib();
    let hostiles = hostile_api(&bombers);
    for i in 0..8 {
        let name = format!("bomb-{i}");
        apply_as_user(&hostiles, &hostile(&name, "alloc-bomb")).await;
    }
    for i in 0..8 {
        eventually_ready_is(&hostiles, &format!("bomb-{i}"), "False", "PluginMemoryLimit").await;
    }
    // Keep bombing (the parents are retried with backoff) while the other
    // tenant creates a parent: it is served.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let greeters = dynamic_api(greeter_team, "test.trellis.dev", "v1", "Greeter");
    apply_as_user(
        &greeters,
        &json!({"apiVersion": "test.trellis.dev/v1", "kind": "Greeter", "metadata": {"name": "during-bombs"}}),
    )
    .await;
    eventually_exists(
        &greeter_team.api::<k8s_openapi::api::core::v1::ConfigMap>(),
        "during-bombs-greeting",
    )
    .await;
    let (_, peak) = rss_mib();
    eprintln!(
        "resident memory: {before} MiB before the bombs, peak {peak} MiB (budget {MEMORY_BUDGET_MIB} MiB + reserve {RESERVE_MIB} MiB)"
    );
    assert!(
        peak <= before + u64::from(MEMORY_BUDGET_MIB) + RESERVE_MIB,
        "peak {peak} MiB, from {before} MiB before the bombs: above the budget and reserve"
    );
    // Released (the plugin's finalizer lets go) and deleted.
    let release = json!({"metadata": {"annotations": {"test.trellis.dev/release": "yes"}}});
    for i in 0..8 {
        let name = format!("bomb-{i}");
        hostiles
            .patch(&name, &PatchParams::default(), &Patch::Merge(&release))
            .await
            .unwrap();
        hostiles.delete(&name, &Default::default()).await.unwrap();
    }
    for i in 0..8 {
        eventually_gone(&hostiles, &format!("bomb-{i}")).await;
    }
    bombers
}

/// A tenant registration asking for 1 GiB is refused (`LimitAboveCeiling`);
/// within the ceiling, it serves only once its ServiceAccount consents.
async fn tenant_ceiling_and_consent(admin: &kube::Client) -> TestNamespace {
    install_crd(admin, &crd_from_yaml(GREETER_CRD)).await;
    let team = TestNamespace::create("team").await;
    let registrations: Api<ReconcilerPlugin> = Api::namespaced(admin.clone(), team.name());
    let limits = |memory_mib: u64| json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ReconcilerPlugin", "spec": {"limits": {"memoryMib": memory_mib}}});
    // Asked for from the start: it never serves with 1 GiB.
    onboard_greeter(admin, &team).await;
    registrations
        .patch(
            "greeter",
            &PatchParams::apply("team-admin"),
            &Patch::Apply(limits(1024)),
        )
        .await
        .unwrap();
    let message = tenant_registration_is(&team, "greeter", "False", "LimitAboveCeiling").await;
    assert!(
        message.contains("memoryMib is 1024") && message.contains("256"),
        "{message}"
    );

    registrations
        .patch("greeter", &PatchParams::apply("team-admin"), &Patch::Apply(limits(32)))
        .await
        .unwrap();
    let message = tenant_registration_is(&team, "greeter", "False", "ServiceAccountNotAllowed").await;
    assert!(message.contains("trellis.dev/allowed-registrations"), "{message}");
    let greeters = dynamic_api(&team, "test.trellis.dev", "v1", "Greeter");
    apply_as_user(
        &greeters,
        &json!({"apiVersion": "test.trellis.dev/v1", "kind": "Greeter", "metadata": {"name": "hi"}}),
    )
    .await;

    // The ServiceAccount names the registration: now it serves.
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), team.name());
    let consent = json!({"metadata": {"annotations": {"trellis.dev/allowed-registrations": "greeter"}}});
    accounts
        .patch("greeter-plugin", &PatchParams::default(), &Patch::Merge(&consent))
        .await
        .unwrap();
    tenant_registration_is(&team, "greeter", "True", "Serving").await;
    eventually_exists(&team.api::<k8s_openapi::api::core::v1::ConfigMap>(), "hi-greeting").await;
    team
}
