//! `ClusterReconcilerPlugin` registrations and misbehaving plugins, end to end.
//!
//! One test in this binary (so one host sees the cluster-scoped
//! registrations): a hostile module registered through a `ClusterReconcilerPlugin`
//! that narrows its children, traps and loops while msdeploy, beside it,
//! keeps working; a registration whose sha256 pin does not match is refused
//! with its reason.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use trellis::crd::ClusterReconcilerPlugin;
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};

#[tokio::test]
async fn registrations_and_failing_plugins() {
    let ns = TestNamespace::create("registrations").await;
    let client = ns.client();
    for crd in [CLUSTER_RECONCILER_PLUGIN_CRD, HOSTILE_CRD, MSDEPLOY_CRD] {
        install_crd(&client, &crd_from_yaml(crd)).await;
    }
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
    add_plugin(plugins.path(), "trellis-test-hostile", "hostile.wasm");
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "pinned.wasm");

    // The hostile module declares a cluster-scoped child kind, which a
    // namespaced parent may not have: alone it is refused...
    let registrations: Api<ClusterReconcilerPlugin> = Api::all(client.clone());
    let register = |name: &str, spec: serde_json::Value| {
        let registrations = registrations.clone();
        let object = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ClusterReconcilerPlugin", "metadata": {"name": name}, "spec": spec});
        let name = name.to_owned();
        async move {
            registrations
                .patch(&name, &PatchParams::apply("test-admin").force(), &Patch::Apply(&object))
                .await
                .unwrap_or_else(|e| panic!("registering {name}: {e}"));
        }
    };
    // ...so the admin narrows it to ConfigMaps.
    register(
        "hostile-narrowed",
        json!({"module": {"file": "hostile.wasm"}, "children": [{"apiVersion": "v1", "kind": "ConfigMap"}], "limits": {"timeoutMs": 300}}),
    )
    .await;
    register(
        "wrong-pin",
        json!({"module": {"file": "pinned.wasm", "sha256": "0".repeat(64)}}),
    )
    .await;
    // No polling to speak of: every change below takes effect because the
    // registry wakes on the watches of registrations and module ConfigMaps.
    let _host = TestHost::start_in(&ns, plugins, |mut o| {
        o.poll = std::time::Duration::from_secs(3600);
        o
    })
    .await;

    // The registration serves and reports its digest.
    let digest =
        trellis::runtime::digest(&std::fs::read(trellis::testing::guest_module("trellis-test-hostile")).unwrap());
    until("hostile-narrowed to be Ready", SETTLE, || async {
        let r = registrations.get("hostile-narrowed").await.map_err(|e| e.to_string())?;
        let status = r.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True" && c.reason == "Serving");
        if ready && status.digest.as_deref() == Some(digest.as_str()) {
            Ok(())
        } else {
            Err(format!("{status:?}"))
        }
    })
    .await;
    // A wrong pin is refused with the reason, and nothing serves from that file.
    until("wrong-pin to be refused", SETTLE, || async {
        let r = registrations.get("wrong-pin").await.map_err(|e| e.to_string())?;
        let status = r.status.clone().unwrap_or_default();
        match status.conditions.iter().find(|c| c.type_ == "Ready") {
            Some(c) if c.status == "False" && c.reason == "DigestMismatch" && c.message.contains("pinned.wasm") => {
                Ok(())
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // A well-behaved parent of the hostile plugin gets its ConfigMap.
    let hostiles = hostile_api(&ns);
    apply_as_user(&hostiles, &hostile("calm", "ok")).await;
    eventually_exists(&ns.api::<ConfigMap>(), "calm-out").await;

    // A trap and an endless loop become Ready=False with the reason, and a Warning event.
    apply_as_user(&hostiles, &hostile("trapper", "panic")).await;
    apply_as_user(&hostiles, &hostile("looper", "loop")).await;
    let message = eventually_ready_is(&hostiles, "trapper", "False", "PluginTrapped").await;
    assert!(message.contains("hostile"), "the message names the plugin: {message}");
    eventually_ready_is(&hostiles, "looper", "False", "PluginTimeout").await;
    let events: Api<Event> = ns.api();
    until("a Warning event on the trapping parent", SETTLE, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let found = list.items.iter().any(|e| {
            e.type_.as_deref() == Some("Warning")
                && e.reason.as_deref() == Some("PluginTrapped")
                && e.involved_object.name.as_deref() == Some("trapper")
        });
        if found {
            Ok(())
        } else {
            Err(format!("{} events, none matching", list.items.len()))
        }
    })
    .await;

    // Meanwhile msdeploy, served from its drop-in file, works as usual.
    apply_as_user(&msdeploy_api(&ns), &msdeploy_sample()).await;
    eventually_exists(&ns.api::<Service>(), "ms-sample-v1s0").await;
    // And the well-behaved hostile parent is still fine.
    let calm = hostiles.get("calm").await.unwrap();
    assert_eq!(ready_condition(&calm).map(|c| c.0), Some("True".to_string()));

    // The plugin asked for a finalizer: a deleted parent stays until the
    // plugin says it is finalized.
    until("the finalizer on calm", SETTLE, || async {
        let calm = hostiles.get("calm").await.map_err(|e| e.to_string())?;
        let finalizers = calm.metadata.finalizers.unwrap_or_default();
        if finalizers.iter().any(|f| f == "trellis.dev/finalizer") {
            Ok(())
        } else {
            Err(format!("{finalizers:?}"))
        }
    })
    .await;
    hostiles.delete("calm", &Default::default()).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let held = hostiles.get("calm").await.expect("held by the plugin's finalizer");
    assert!(held.metadata.deletion_timestamp.is_some());
    let release = json!({"metadata": {"annotations": {"test.trellis.dev/release": "yes"}}});
    hostiles
        .patch("calm", &PatchParams::default(), &Patch::Merge(&release))
        .await
        .unwrap();
    eventually_gone(&hostiles, "calm").await;

    // The registrations are watched, not listed on every sync (every 300 ms
    // here): ten syncs later the apiserver has served no more LISTs of them.
    // (The ReconcilerPlugin CRD is not installed here: its watch retries,
    // with backoff, LISTs that fail; only the ones that succeed count.)
    let before = registration_lists(&client).await;
    assert!(
        before >= 1,
        "the ClusterReconcilerPlugins are listed once, when their watch starts"
    );
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let after = registration_lists(&client).await;
    assert_eq!(after, before, "the registry listed registrations while syncing");

    // (g) A registration that put finalizers on parents is deleted: the
    // parents are released, so they and their namespace can be deleted.
    apply_as_user(&hostiles, &hostile("kept", "ok")).await;
    let has_host_finalizer = |object: &kube::api::DynamicObject| {
        object
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.iter().any(|f| f == "trellis.dev/finalizer"))
    };
    until("the finalizer on kept", SETTLE, || async {
        let kept = hostiles.get("kept").await.map_err(|e| e.to_string())?;
        has_host_finalizer(&kept)
            .then_some(())
            .ok_or_else(|| "no finalizer yet".to_owned())
    })
    .await;
    let registration = registrations.get("hostile-narrowed").await.unwrap();
    assert!(
        registration
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"trellis.dev/release-parents".to_owned()),
        "the serving registration carries the registry's finalizer"
    );
    registrations
        .delete("hostile-narrowed", &Default::default())
        .await
        .unwrap();
    eventually_gone(&registrations, "hostile-narrowed").await;
    let kept = hostiles.get("kept").await.unwrap();
    assert!(
        !has_host_finalizer(&kept),
        "the parent kept the host's finalizer: {:?}",
        kept.metadata.finalizers
    );
    hostiles.delete("kept", &Default::default()).await.unwrap();
    eventually_gone(&hostiles, "kept").await;
    // Trapper and looper carried the finalizer too: released, the namespace goes.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.delete(ns.name(), &Default::default()).await.unwrap();
    eventually_gone(&namespaces, ns.name()).await;
}

/// LISTs of either registration kind the apiserver has answered with 200,
/// from its `apiserver_request_total`.
async fn registration_lists(client: &kube::Client) -> u64 {
    let request = http::Request::get("/metrics").body(Vec::new()).expect("a request");
    let metrics = client.request_text(request).await.expect("the apiserver's /metrics");
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{") && l.contains(r#"verb="LIST""#) && l.contains(r#"code="200""#)
        })
        .filter(|l| {
            l.contains(r#"resource="clusterreconcilerplugins""#) || l.contains(r#"resource="reconcilerplugins""#)
        })
        .filter_map(|l| l.rsplit_once(' ').and_then(|(_, n)| n.trim().parse::<f64>().ok()))
        .sum::<f64>() as u64
}
