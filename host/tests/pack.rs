//! `trellis plugin pack`: what it prints is what the host accepts.

use std::io::Read;
use std::process::Command;
use trellis::pack::{PackInput, pack};
use trellis::testing::guest_module;

fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

fn module_bytes(config_map: &serde_json::Value) -> Vec<u8> {
    let k8s: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(config_map.clone()).unwrap();
    k8s.binary_data.unwrap()["module.wasm"].0.clone()
}

#[test]
fn a_large_module_is_compressed_and_pinned_by_its_uncompressed_digest() {
    let module = guest_module("trellis-plugin-msdeploy");
    let raw = std::fs::read(&module).unwrap();
    let yaml = pack(&PackInput {
        module,
        name: "msdeploy".into(),
        namespace: "platform".into(),
        service_account: None,
        service_account_ref: None,
        gzip: false,
        oci: None,
    })
    .unwrap();
    let docs = documents(&yaml);
    assert_eq!(docs.len(), 2);
    assert_eq!(
        (docs[0]["kind"].as_str(), docs[0]["metadata"]["namespace"].as_str()),
        (Some("ConfigMap"), Some("platform"))
    );
    let packed = module_bytes(&docs[0]);
    assert!(
        packed.len() < 1 << 20 && packed.len() < raw.len(),
        "{} bytes",
        packed.len()
    );
    let mut unpacked = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut unpacked)
        .unwrap();
    assert_eq!(unpacked, raw);

    let registration: trellis::crd::ClusterReconcilerPlugin = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(
        registration.spec.plugin.module.sha256.as_deref(),
        Some(trellis::runtime::digest(&raw).as_str())
    );
    let source = registration.spec.plugin.module.config_map.unwrap();
    assert_eq!(
        (source.namespace.as_str(), source.name.as_str(), source.key.as_str()),
        ("platform", "msdeploy", "module.wasm")
    );
    assert_eq!(registration.spec.plugin.parent.unwrap().kind, "MicroServiceDeploy");
}

#[test]
fn a_small_module_is_stored_as_it_is() {
    let module = guest_module("trellis-test-hostile");
    let raw = std::fs::read(&module).unwrap();
    let yaml = pack(&PackInput {
        module,
        name: "hostile".into(),
        namespace: "team-a".into(),
        service_account: None,
        service_account_ref: None,
        gzip: false,
        oci: None,
    })
    .unwrap();
    assert_eq!(module_bytes(&documents(&yaml)[0]), raw);
}

#[test]
fn what_is_not_a_plugin_is_refused_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args([
            "plugin",
            "pack",
            "--name",
            "readme",
            concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing printed for kubectl to apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("not a valid WebAssembly component"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["plugin", "pack", "--name", "Bad_Name"])
        .arg(guest_module("trellis-test-hostile"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("Bad_Name is not a valid name"));
}

#[test]
fn with_a_service_account_it_registers_for_a_tenant() {
    let output = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["plugin", "pack"])
        .arg(guest_module("trellis-test-greeter-v1"))
        .args([
            "--name",
            "greeter",
            "-n",
            "team-a",
            "--service-account",
            "greeter-plugin",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    let registration: trellis::crd::ReconcilerPlugin = serde_json::from_value(docs[1].clone()).unwrap();
    assert_eq!(registration.metadata.namespace.as_deref(), Some("team-a"));
    assert_eq!(registration.spec.service_account_name, "greeter-plugin");
    let source = registration.spec.plugin.module.config_map.unwrap();
    assert_eq!((source.namespace.as_str(), source.name.as_str()), ("team-a", "greeter"));
}

#[test]
fn with_a_service_account_ref_a_cluster_registration_acts_as_it() {
    let pack_with = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args(["plugin", "pack", "--name", "greeter"])
            .arg(guest_module("trellis-test-greeter-v1"))
            .args(extra)
            .output()
            .unwrap()
    };
    let output = pack_with(&["--service-account-ref", "platform/greeter-runner"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    let registration: trellis::crd::ClusterReconcilerPlugin = serde_json::from_value(docs[1].clone()).unwrap();
    let account = registration.spec.service_account_ref.unwrap();
    assert_eq!(
        (account.namespace.as_str(), account.name.as_str()),
        ("platform", "greeter-runner")
    );

    let bad = pack_with(&["--service-account-ref", "greeter-runner"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not NAMESPACE/NAME"));
    let both = pack_with(&["--service-account-ref", "platform/x", "--service-account", "y"]);
    assert!(!both.status.success(), "a registration cannot act as two accounts");
}

#[test]
fn with_oci_it_names_the_artifact_pinning_a_digest_and_following_a_tag() {
    let pack_oci = |reference: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args([
                "plugin", "pack", "--name", "greeter", "-n", "team-a", "--oci", reference,
            ])
            .arg(guest_module("trellis-test-greeter-v1"))
            .args(extra)
            .output()
            .unwrap()
    };
    let sha256 = trellis::runtime::digest(&std::fs::read(guest_module("trellis-test-greeter-v1")).unwrap());
    let pinned = format!("registry.example:5000/team-a/greeter@sha256:{}", "ab".repeat(32));
    let output = pack_oci(
        &pinned,
        &["--pull-secret", "registry-pull", "--service-account", "greeter-plugin"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(docs.len(), 1, "no ConfigMap: {docs:?}");
    let registration: trellis::crd::ReconcilerPlugin = serde_json::from_value(docs[0].clone()).unwrap();
    let module = registration.spec.plugin.module;
    assert_eq!(module.sha256.as_deref(), Some(sha256.as_str()));
    let oci = module.oci.unwrap();
    assert_eq!(oci.reference, pinned);
    let secret = oci.pull_secret.unwrap();
    assert_eq!((secret.namespace.as_str(), secret.name.as_str()), ("", "registry-pull"));

    let output = pack_oci(
        "registry.example:5000/team-a/greeter:stable",
        &["--pull-secret", "registry-pull"],
    );
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    let registration: trellis::crd::ClusterReconcilerPlugin = serde_json::from_value(docs[0].clone()).unwrap();
    let module = registration.spec.plugin.module;
    assert_eq!(module.sha256, None, "a tag is followed, not pinned");
    let secret = module.oci.unwrap().pull_secret.unwrap();
    assert_eq!(
        (secret.namespace.as_str(), secret.name.as_str()),
        ("team-a", "registry-pull")
    );

    let bad = pack_oci("Registry.example/UPPER:tag", &[]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not an OCI reference"));
}

/// A cosign public key, as `cosign generate-key-pair` wrote it.
const COSIGN_PUB: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEBmRcmpZR0ot7Ht4q9MZmUlBhrc/9
ILEYB+sY9QMWny4WqjgLOl59/3XrvxZON34kCFn6AdyVSjwPQX+SmX+4SA==
-----END PUBLIC KEY-----
";

#[test]
fn with_a_cosign_key_the_registration_requires_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("cosign.pub");
    std::fs::write(&key, COSIGN_PUB).unwrap();
    let pack = |key: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_trellis"))
            .args([
                "plugin",
                "pack",
                "--name",
                "greeter",
                "--oci",
                "registry.example/p/greeter:1",
            ])
            .arg(guest_module("trellis-test-greeter-v1"))
            .arg("--cosign-key")
            .arg(key)
            .output()
            .unwrap()
    };
    let output = pack(&key);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let docs = documents(&String::from_utf8(output.stdout).unwrap());
    let registration: trellis::crd::ClusterReconcilerPlugin = serde_json::from_value(docs[0].clone()).unwrap();
    let oci = registration.spec.plugin.module.oci.unwrap();
    assert_eq!(oci.cosign_public_key.as_deref(), Some(COSIGN_PUB));

    let not_a_key = dir.path().join("cosign.key");
    std::fs::write(
        &not_a_key,
        "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
    )
    .unwrap();
    let bad = pack(&not_a_key);
    assert!(!bad.status.success(), "a private key is no public key");
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("not PUBLIC KEY"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}
