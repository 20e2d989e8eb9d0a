//! Cosign signatures of modules pulled from an OCI registry, end to end:
//! the real distribution registry, a real control plane, and modules signed
//! by the real cosign (`cosign sign --key`, no transparency log). One host
//! requiring a platform key (`--cosign-key`):
//! - a module signed by the platform key serves;
//! - an unsigned module, and one signed by another key only, are refused
//!   with SignatureInvalid;
//! - a registration naming a key of its own (`cosignPublicKey`) needs that
//!   key's signature besides the platform's: refused while the module that
//!   served serves on, served once signed by both;
//! - a tag moved to an unsigned module is refused with the module that
//!   served serving on, and served once signed;
//! - a key that does not read is refused (InvalidCosignKey); a host given a
//!   bad key file does not start.

mod common;

use std::time::Duration;

use common::*;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use trellis::crd::ClusterReconcilerPlugin;
use trellis::host::{HostError, HostOptions, run_host};
use trellis_testenv::TestNamespace;
use trellis_testenv::cosign::KeyPair;
use trellis_testenv::registry::Registry;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

const PULL_SECRET: &str = "registry-pull";

/// Registers (or changes) a ClusterReconcilerPlugin serving `oci`.
async fn register(api: &Api<ClusterReconcilerPlugin>, ns: &TestNamespace, name: &str, oci: Value) {
    let mut oci = oci;
    oci["pullSecret"] = json!({"namespace": ns.name(), "name": PULL_SECRET});
    let object = json!({"apiVersion": "trellis.dev/v1alpha1", "kind": "ClusterReconcilerPlugin",
        "metadata": {"name": name}, "spec": {"module": {"oci": oci}}});
    api.patch(
        name,
        &PatchParams::apply("platform-admin").force(),
        &Patch::Apply(&object),
    )
    .await
    .unwrap_or_else(|e| panic!("registering {name}: {e}"));
}

fn sign(key: &KeyPair, registry: &Registry, pinned: &str) {
    key.sign(registry, pinned).unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn modules_are_served_only_when_signed_by_the_keys_required() {
    let registry = Registry::start().await.unwrap_or_else(|e| panic!("{e}"));
    let platform = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let team = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
    let ns = TestNamespace::create("oci-signatures").await;
    let admin = ns.client();
    for crd in [CLUSTER_RECONCILER_PLUGIN_CRD, RECONCILER_PLUGIN_CRD, GREETER_CRD] {
        install_crd(&admin, &crd_from_yaml(crd)).await;
    }

    // A host given a key file that is no cosign public key does not start.
    let not_a_key = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        not_a_key.path(),
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut options = HostOptions::new(tempfile::tempdir().unwrap().path());
    options.cosign_key_files = vec![not_a_key.path().to_owned()];
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let refused = run_host(
        admin.clone(),
        options,
        trellis::metrics::Metrics::new(),
        Default::default(),
        shutdown,
    )
    .await;
    assert!(matches!(refused, Err(HostError::CosignKey { .. })), "{refused:?}");

    let config = ns.env().config();
    let namespace = ns.name().to_owned();
    let (ca, platform_key) = (registry.ca_cert().to_path_buf(), platform.public_key());
    let _host = TestHost::start_with_client(admin.clone(), tempfile::tempdir().unwrap(), move |mut o| {
        o.namespace = Some(namespace);
        o.plugin_accounts = trellis::controller::PluginAccounts::HostClient;
        o.client_config = Some(config);
        o.registry_ca_files = vec![ca];
        o.cosign_key_files = vec![platform_key];
        o.oci_refresh = Duration::from_secs(2);
        o
    })
    .await;
    apply_yaml_stream(&admin, &pull_secret(&registry, ns.name(), PULL_SECRET).to_string()).await;
    let api: Api<ClusterReconcilerPlugin> = Api::all(admin.clone());

    // Signed by the platform key: served.
    let tag = format!("{}/plugins/greeter:1", registry.host());
    let (v1, _) = push_module(&registry, "trellis-test-greeter-v1", &tag).await;
    sign(&platform, &registry, &v1);
    register(&api, &ns, "greeter", json!({"reference": tag})).await;
    registration_ready_is(&api, "greeter", "True", "Serving").await;
    eventually_serves_artifact(&api, "greeter", &v1).await;
    apply_greeter(&ns, "first").await;
    eventually_greets(&ns, "first", "hello").await;

    // Unsigned, signed by another key only, or a key that does not read:
    // refused (the Greeter kind is taken, but a module refused is refused
    // first).
    let unsigned_tag = format!("{}/plugins/unsigned:1", registry.host());
    push_module(&registry, "trellis-test-greeter-v2", &unsigned_tag).await;
    let team_only_tag = format!("{}/plugins/team-only:1", registry.host());
    let (team_only, _) = push_module(&registry, "trellis-test-greeter-v2", &team_only_tag).await;
    sign(&team, &registry, &team_only);
    let refused = [
        (
            "unsigned",
            json!({"reference": unsigned_tag}),
            "SignatureInvalid",
            "is not signed",
        ),
        (
            "team-only",
            json!({"reference": team_only_tag}),
            "SignatureInvalid",
            "no signature verifies under cosign key",
        ),
        (
            "bad-key",
            json!({"reference": tag, "cosignPublicKey": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}),
            "InvalidCosignKey",
            "cosignPublicKey",
        ),
    ];
    for (name, oci, _, _) in &refused {
        register(&api, &ns, name, oci.clone()).await;
    }
    for (name, _, reason, words) in &refused {
        let message = registration_ready_is(&api, name, "False", reason).await;
        assert!(message.contains(words), "{name}: {message}");
    }

    // The registration requires its team's key besides: refused while only
    // the platform signed, the module that served serving on; served once
    // the team signed too.
    register(
        &api,
        &ns,
        "greeter",
        json!({"reference": tag, "cosignPublicKey": team.public_key_pem()}),
    )
    .await;
    let message = registration_ready_is(&api, "greeter", "False", "SignatureInvalid").await;
    assert!(message.contains("still serving the previous module"), "{message}");
    apply_greeter(&ns, "second").await;
    eventually_greets(&ns, "second", "hello").await;
    sign(&team, &registry, &v1);
    registration_ready_is(&api, "greeter", "True", "Serving").await;

    // The tag moves to an unsigned module: refused, v1 serving on; served
    // once both keys signed it.
    let (v2, _) = push_module(&registry, "trellis-test-greeter-v2", &tag).await;
    let message = registration_ready_is(&api, "greeter", "False", "SignatureInvalid").await;
    assert!(message.contains("is not signed"), "{message}");
    apply_greeter(&ns, "third").await;
    eventually_greets(&ns, "third", "hello").await;
    sign(&platform, &registry, &v2);
    sign(&team, &registry, &v2);
    eventually_serves_artifact(&api, "greeter", &v2).await;
    eventually_greets(&ns, "first", "bonjour").await;
}
