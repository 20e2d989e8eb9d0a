//! Plugin modules as OCI artifacts, against a real registry (the CNCF
//! distribution registry built by `tests/go-tool build registry`, on loopback
//! with TLS and htpasswd auth): `trellis plugin push` publishes a module in
//! the Wasm artifact layout, a tag resolves to its manifest's digest and
//! moves when a new version is pushed under it, and a pull is refused for
//! a wrong digest, missing or wrong credentials, an untrusted certificate
//! or an artifact that is not a module.

use std::process::{Command, Output};

use oci_client::client::{ClientConfig, Config, ImageLayer};
use oci_client::secrets::RegistryAuth;
use trellis::oci::{self, OciError, RegistryAccess};
use trellis::testing::guest_module;
use trellis_testenv::registry::{REGISTRY_PASSWORD, REGISTRY_USER, Registry};

fn access(registry: &Registry) -> RegistryAccess {
    RegistryAccess {
        basic: Some((REGISTRY_USER.to_owned(), REGISTRY_PASSWORD.to_owned())),
        extra_roots_pem: vec![std::fs::read(registry.ca_cert()).unwrap()],
    }
}

/// oci-client itself, trusting the registry: to read what push wrote and to
/// push what Trellis would not.
fn raw_client(registry: &Registry) -> oci_client::Client {
    oci_client::Client::new(ClientConfig {
        extra_root_certificates: vec![oci_client::client::Certificate {
            encoding: oci_client::client::CertificateEncoding::Pem,
            data: std::fs::read(registry.ca_cert()).unwrap(),
        }],
        ..ClientConfig::default()
    })
}

async fn start() -> Registry {
    Registry::start().await.unwrap_or_else(|e| panic!("{e}"))
}

/// `trellis plugin push MODULE REF --ca-file CA` with the given credentials.
fn push_cli(registry: &Registry, module: &str, reference: &str, user: Option<&str>, password: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_trellis"));
    command
        .args(["plugin", "push"])
        .arg(guest_module(module))
        .arg(reference)
        .arg("--ca-file")
        .arg(registry.ca_cert())
        .env_remove("TRELLIS_REGISTRY_USERNAME")
        .env_remove("TRELLIS_REGISTRY_PASSWORD");
    if let Some(user) = user {
        command.env("TRELLIS_REGISTRY_USERNAME", user);
    }
    if let Some(password) = password {
        command.env("TRELLIS_REGISTRY_PASSWORD", password);
    }
    command.output().unwrap()
}

fn pushed_digest(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "push failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("digest: "))
        .unwrap_or_else(|| panic!("no digest line in {stdout}"))
        .to_owned()
}

#[tokio::test]
async fn a_pushed_module_pulls_back_by_tag_and_by_digest_and_a_tag_moves() {
    let registry = start().await;
    let reference = format!("{}/plugins/msdeploy:1", registry.host());
    let digest = pushed_digest(&push_cli(
        &registry,
        "trellis-plugin-msdeploy",
        &reference,
        Some(REGISTRY_USER),
        Some(REGISTRY_PASSWORD),
    ));
    assert!(digest.starts_with("sha256:") && digest.len() == 71, "{digest}");

    let module = std::fs::read(guest_module("trellis-plugin-msdeploy")).unwrap();
    let access = access(&registry);
    assert_eq!(oci::resolve(&reference, &access).await.unwrap(), digest);
    let by_tag = oci::pull(&reference, &access, None).await.unwrap();
    assert_eq!(
        (by_tag.manifest_digest.as_str(), by_tag.bytes == module),
        (digest.as_str(), true)
    );
    assert_eq!(by_tag.module_sha256, trellis::runtime::digest(&module));

    // The manifest is the Wasm artifact layout wasm-pkg-tools reads.
    let client = raw_client(&registry);
    let (manifest, _, config) = client
        .pull_manifest_and_config(
            &reference.parse().unwrap(),
            &RegistryAuth::Basic(REGISTRY_USER.into(), REGISTRY_PASSWORD.into()),
        )
        .await
        .unwrap();
    assert_eq!(
        manifest.media_type.as_deref(),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(manifest.config.media_type, "application/vnd.wasm.config.v0+json");
    let layers: Vec<&str> = manifest.layers.iter().map(|l| l.media_type.as_str()).collect();
    assert_eq!(layers, ["application/wasm"]);
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(config["layerDigests"][0], manifest.layers[0].digest.as_str());
    assert!(
        config["created"]
            .as_str()
            .is_some_and(|c| c.parse::<jiff::Timestamp>().is_ok()),
        "{config}"
    );

    // By digest, pinned to the module too.
    let pinned = format!("{}/plugins/msdeploy@{digest}", registry.host());
    let by_digest = oci::pull(&pinned, &access, Some(&by_tag.module_sha256)).await.unwrap();
    assert_eq!(by_digest.bytes, module);

    // A new version under the same tag: the tag resolves to it, the old
    // digest still pulls the old module.
    let moved = pushed_digest(&push_cli(
        &registry,
        "trellis-test-greeter-v2",
        &reference,
        Some(REGISTRY_USER),
        Some(REGISTRY_PASSWORD),
    ));
    assert_ne!(moved, digest);
    assert_eq!(oci::resolve(&reference, &access).await.unwrap(), moved);
    let greeter = std::fs::read(guest_module("trellis-test-greeter-v2")).unwrap();
    assert_eq!(oci::pull(&reference, &access, None).await.unwrap().bytes, greeter);
    assert_eq!(oci::pull(&pinned, &access, None).await.unwrap().bytes, module);
}

#[tokio::test]
async fn wrong_digests_credentials_and_artifacts_are_refused() {
    let registry = start().await;
    let reference = format!("{}/team/greeter:v1", registry.host());
    pushed_digest(&push_cli(
        &registry,
        "trellis-test-greeter-v1",
        &reference,
        Some(REGISTRY_USER),
        Some(REGISTRY_PASSWORD),
    ));
    let access = access(&registry);

    // The module is not the one pinned.
    let wrong = "0".repeat(64);
    match oci::pull(&reference, &access, Some(&wrong)).await {
        Err(OciError::ModuleDigestMismatch { expected, .. }) => assert_eq!(expected, wrong),
        other => panic!("expected a module digest mismatch, got {other:?}"),
    }
    // No manifest of that digest.
    let absent = format!("{}/team/greeter@sha256:{wrong}", registry.host());
    assert!(matches!(
        oci::pull(&absent, &access, None).await,
        Err(OciError::NotFound { .. })
    ));
    // An unknown tag.
    let unknown = format!("{}/team/greeter:v9", registry.host());
    assert!(matches!(
        oci::pull(&unknown, &access, None).await,
        Err(OciError::NotFound { .. })
    ));

    // Anonymous, and a wrong password.
    let anonymous = RegistryAccess {
        basic: None,
        ..access.clone()
    };
    let err = oci::pull(&reference, &anonymous, None).await.unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");
    let wrong_password = RegistryAccess {
        basic: Some((REGISTRY_USER.into(), "not-it".into())),
        ..access.clone()
    };
    let err = oci::pull(&reference, &wrong_password, None).await.unwrap_err();
    assert!(matches!(err, OciError::Unauthorized { .. }), "{err}");

    // A certificate the client does not trust.
    let untrusted = RegistryAccess {
        extra_roots_pem: Vec::new(),
        ..access.clone()
    };
    let err = oci::pull(&reference, &untrusted, None).await.unwrap_err();
    let OciError::Registry {
        operation: "pull",
        cause,
        ..
    } = &err
    else {
        panic!("expected a registry error, got {err}");
    };
    let mut chain = Vec::new();
    let mut next: Option<&dyn std::error::Error> = Some(cause);
    while let Some(e) = next {
        chain.push(e.to_string());
        next = e.source();
    }
    let chain = chain.join(": ");
    assert!(chain.to_lowercase().contains("certificate"), "{chain}");

    // A container image is not a module.
    let image = format!("{}/team/not-a-module:1", registry.host());
    let client = raw_client(&registry);
    client
        .push(
            &image.parse().unwrap(),
            &[ImageLayer::oci_v1(b"not wasm".to_vec(), None)],
            Config::oci_v1(b"{}".to_vec(), None),
            &RegistryAuth::Basic(REGISTRY_USER.into(), REGISTRY_PASSWORD.into()),
            None,
        )
        .await
        .unwrap();
    let err = oci::pull(&image, &access, None).await.unwrap_err();
    assert!(
        matches!(err, OciError::NotAModule { .. })
            && err.to_string().contains("application/vnd.oci.image.config.v1+json"),
        "{err}"
    );

    // A module over the host's limit is refused by its declared size.
    let huge = format!("{}/team/huge:1", registry.host());
    let mut bytes = b"\0asm\x0d\0\x01\0".to_vec();
    bytes.resize(trellis::runtime::MAX_MODULE_BYTES + 1, 0);
    let layer = ImageLayer::new(bytes, oci::layout::WASM_LAYER.to_owned(), None);
    let config = Config::new(
        oci::layout::config_json(&layer.sha256_digest()),
        oci::layout::WASM_CONFIG_V0.to_owned(),
        None,
    );
    client
        .push(
            &huge.parse().unwrap(),
            &[layer],
            config,
            &RegistryAuth::Basic(REGISTRY_USER.into(), REGISTRY_PASSWORD.into()),
            None,
        )
        .await
        .unwrap();
    let err = oci::pull(&huge, &access, None).await.unwrap_err();
    assert!(matches!(err, OciError::TooLarge { .. }), "{err}");

    // A module whose stored bytes were altered no longer matches its digest.
    let pulled = oci::pull(&reference, &access, None).await.unwrap();
    let layer_hex = trellis::runtime::digest(&pulled.bytes);
    let blob = registry
        .storage_dir()
        .join("docker/registry/v2/blobs/sha256")
        .join(&layer_hex[..2])
        .join(&layer_hex)
        .join("data");
    let mut altered = std::fs::read(&blob).unwrap();
    *altered.last_mut().unwrap() ^= 0xff;
    std::fs::write(&blob, altered).unwrap();
    let err = oci::pull(&reference, &access, None).await.unwrap_err();
    assert!(matches!(err, OciError::ContentDigestMismatch { .. }), "{err}");

    // A bad reference.
    assert!(matches!(
        oci::pull("Not A Reference", &access, None).await,
        Err(OciError::BadReference { .. })
    ));
}

#[tokio::test]
async fn push_says_what_is_wrong_and_publishes_nothing() {
    let registry = start().await;
    let reference = format!("{}/team/refused:1", registry.host());
    let half = push_cli(
        &registry,
        "trellis-test-greeter-v1",
        &reference,
        Some(REGISTRY_USER),
        None,
    );
    assert!(!half.status.success());
    assert!(
        String::from_utf8_lossy(&half.stderr).contains("TRELLIS_REGISTRY_PASSWORD"),
        "{}",
        String::from_utf8_lossy(&half.stderr)
    );
    let anonymous = push_cli(&registry, "trellis-test-greeter-v1", &reference, None, None);
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(
        !anonymous.status.success() && stderr.contains("refused access"),
        "{stderr}"
    );
    // Not a module at all: refused before any upload.
    let not_wasm = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(not_wasm.path(), b"not wasm").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["plugin", "push"])
        .arg(not_wasm.path())
        .arg(&reference)
        .arg("--ca-file")
        .arg(registry.ca_cert())
        .env("TRELLIS_REGISTRY_USERNAME", REGISTRY_USER)
        .env("TRELLIS_REGISTRY_PASSWORD", REGISTRY_PASSWORD)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = oci::resolve(&reference, &access(&registry)).await.unwrap_err();
    assert!(matches!(err, OciError::NotFound { .. }), "{err}");
}
