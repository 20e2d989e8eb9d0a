//! Modules shipped in ConfigMaps, end to end (one test: one host sees the
//! cluster-scoped registrations): install with `trellis plugin pack`,
//! replace the module and see the new behaviour, push a corrupt module or a
//! wrong pin and see the previous module keep serving with the reason
//! shown, and restart onto the compiled-module cache.

mod common;

use common::*;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use trellis::crd::ClusterReconcilerPlugin;
use trellis::pack::{PackInput, pack};
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::{crd_from_yaml, install_crd, until};

const REGISTRATION: &str = "greeter";

fn packed(ns: &TestNamespace, plugin_crate: &str, gzip: bool) -> String {
    pack(&PackInput {
        module: trellis::testing::guest_module(plugin_crate),
        name: REGISTRATION.into(),
        namespace: ns.name().into(),
        service_account: None,
        service_account_ref: None,
        gzip,
        oci: None,
    })
    .expect("the module packs")
}

fn digest_of(plugin_crate: &str) -> String {
    trellis::runtime::digest(&std::fs::read(trellis::testing::guest_module(plugin_crate)).unwrap())
}

fn greeter(name: &str) -> serde_json::Value {
    json!({"apiVersion": "test.trellis.dev/v1", "kind": "Greeter", "metadata": {"name": name}, "spec": {}})
}

async fn eventually_registration(
    registrations: &Api<ClusterReconcilerPlugin>,
    ready: &str,
    reason: &str,
    digest: &str,
) -> String {
    until(
        &format!("the registration to be Ready={ready} ({reason}) serving {digest}"),
        SETTLE,
        || async {
            let r = registrations.get(REGISTRATION).await.map_err(|e| e.to_string())?;
            let status = r.status.unwrap_or_default();
            match status.conditions.iter().find(|c| c.type_ == "Ready") {
                Some(c) if c.status == ready && c.reason == reason && status.digest.as_deref() == Some(digest) => {
                    Ok(c.message.clone())
                }
                other => Err(format!("{other:?}, digest {:?}", status.digest)),
            }
        },
    )
    .await
}

#[tokio::test]
async fn modules_from_config_maps() {
    let ns = TestNamespace::create("configmap").await;
    let client = ns.client();
    for crd in [CLUSTER_RECONCILER_PLUGIN_CRD, GREETER_CRD] {
        install_crd(&client, &crd_from_yaml(crd)).await;
    }
    let module_cache = tempfile::tempdir().unwrap();
    let cache_dir = module_cache.path().to_path_buf();
    let with_cache = move |mut o: trellis::host::HostOptions| {
        o.module_cache_dir = Some(cache_dir.clone());
        o
    };
    let host = TestHost::start_in(&ns, tempfile::tempdir().unwrap(), with_cache.clone()).await;
    let registrations: Api<ClusterReconcilerPlugin> = Api::all(client.clone());
    let (v1, v2) = (
        digest_of("trellis-test-greeter-v1"),
        digest_of("trellis-test-greeter-v2"),
    );

    // Install: one pipe from `trellis plugin pack`.
    apply_yaml_stream(&client, &packed(&ns, "trellis-test-greeter-v1", false)).await;
    eventually_registration(&registrations, "True", "Serving", &v1).await;
    let greeters = dynamic_api(&ns, "test.trellis.dev", "v1", "Greeter");
    apply_as_user(&greeters, &greeter("first")).await;
    eventually_greets(&ns, "first", "hello").await;

    // Update (compressed this time): existing parents get the new behaviour.
    apply_yaml_stream(&client, &packed(&ns, "trellis-test-greeter-v2", true)).await;
    eventually_registration(&registrations, "True", "Serving", &v2).await;
    eventually_greets(&ns, "first", "bonjour").await;

    // A corrupt module: refused with the reason, the previous one serves on.
    let config_maps = ns.api::<ConfigMap>();
    let corrupt = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": REGISTRATION},
        "binaryData": {"module.wasm": "bm90IGEgbW9kdWxl"}});
    config_maps
        .patch(
            REGISTRATION,
            &PatchParams::apply("test-admin").force(),
            &Patch::Apply(&corrupt),
        )
        .await
        .unwrap();
    let message = eventually_registration(&registrations, "False", "ModuleInvalid", &v2).await;
    assert!(message.contains("still serving the previous module"), "{message}");
    apply_as_user(&greeters, &greeter("second")).await;
    eventually_greets(&ns, "second", "bonjour").await;
    let events: Api<Event> = Api::all(client.clone());
    until("a Warning event on the registration", SETTLE, || async {
        let list = events.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let found = list.items.iter().any(|e| {
            e.involved_object.kind.as_deref() == Some("ClusterReconcilerPlugin")
                && e.involved_object.name.as_deref() == Some(REGISTRATION)
                && e.reason.as_deref() == Some("ModuleInvalid")
        });
        if found { Ok(()) } else { Err("none yet".to_string()) }
    })
    .await;

    // Restore v2, then pin the wrong digest: refused, v2 serves on.
    apply_yaml_stream(&client, &packed(&ns, "trellis-test-greeter-v2", true)).await;
    eventually_registration(&registrations, "True", "Serving", &v2).await;
    let wrong_pin = json!({"spec": {"module": {"sha256": v1}}});
    registrations
        .patch(REGISTRATION, &PatchParams::default(), &Patch::Merge(&wrong_pin))
        .await
        .unwrap();
    let message = eventually_registration(&registrations, "False", "DigestMismatch", &v2).await;
    assert!(message.contains(&v1), "{message}");
    apply_as_user(&greeters, &greeter("third")).await;
    eventually_greets(&ns, "third", "bonjour").await;

    // A restart with the same module compiles nothing: the cache serves it.
    apply_yaml_stream(&client, &packed(&ns, "trellis-test-greeter-v2", true)).await;
    eventually_registration(&registrations, "True", "Serving", &v2).await;
    let _ = host.stop().await;
    let restarted = TestHost::start_in(&ns, tempfile::tempdir().unwrap(), with_cache).await;
    until(
        "the restarted host to load the module from its cache",
        SETTLE,
        || async {
            let hits = counter(&restarted.metrics, r#"trellis_module_cache_compiles{result="hit"}"#);
            let misses = counter(&restarted.metrics, r#"trellis_module_cache_compiles{result="miss"}"#);
            if hits >= 1.0 && misses == 0.0 {
                Ok(())
            } else {
                Err(format!("{hits} hits, {misses} misses"))
            }
        },
    )
    .await;
    apply_as_user(&greeters, &greeter("fourth")).await;
    eventually_greets(&ns, "fourth", "bonjour").await;
}
