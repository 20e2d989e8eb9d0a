//! `trellis plugin pack`: a module as a ConfigMap plus the registration that
//! serves it (digest pinned), as YAML ready for `kubectl apply --server-side
//! -f -` (client-side apply copies the module into an annotation capped at
//! 256 KiB, which a module outgrows): a
//! `ClusterReconcilerPlugin`, or with a ServiceAccount a tenant's namespaced
//! `ReconcilerPlugin`.
//!
//! The module is gzip-compressed when that is needed to fit a ConfigMap
//! (1 MiB) or asked for; the pin is the sha256 of the uncompressed module,
//! which is what the host checks after decompressing.
//!
//! With `--oci REF` (a module `trellis plugin push` published), no
//! ConfigMap: the registration names the artifact (`spec.module.oci`). A
//! reference by digest is pinned to the module's sha256 as well; a tag is
//! not, so that the host follows it to each version pushed under it.

use crate::runtime::{Limits, PluginInfo, Runtime, RuntimeConfig, RuntimeError, digest};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

/// Most bytes a ConfigMap may hold (the apiserver's limit).
const CONFIG_MAP_LIMIT: usize = 1 << 20;
/// Compress above this size even when not asked (leaves room for metadata).
const COMPRESS_ABOVE: usize = 900 << 10;

/// The first lines of the output: how to apply it. Client-side `kubectl
/// apply` would copy the module into `last-applied-configuration`, an
/// annotation Kubernetes caps at 256 KiB, and refuse every bundled plugin.
const APPLY_HINT: &str = "# apply with `kubectl apply --server-side -f -` or `kubectl create -f -`; client-side\n\
     # `kubectl apply` copies the module into an annotation capped at 256 KiB";

/// What to pack.
#[derive(Debug, Clone)]
pub struct PackInput {
    /// The module (`.wasm`).
    pub module: PathBuf,
    /// Name of the ConfigMap and of the registration.
    pub name: String,
    /// Namespace of the ConfigMap (and of a tenant's registration).
    pub namespace: String,
    /// A tenant's ServiceAccount: register with a namespaced
    /// `ReconcilerPlugin` acting as it (a `ClusterReconcilerPlugin` when `None`).
    pub service_account: Option<String>,
    /// For a `ClusterReconcilerPlugin`: the ServiceAccount it acts as,
    /// `namespace/name` (`spec.serviceAccountRef`; without it,
    /// `trellis-plugin-<name>` of the host's namespace).
    pub service_account_ref: Option<String>,
    /// Compress even if the module would fit as it is.
    pub gzip: bool,
    /// Point at this OCI artifact instead of shipping a ConfigMap.
    pub oci: Option<OciTarget>,
}

/// The OCI artifact a packed registration names.
#[derive(Debug, Clone)]
pub struct OciTarget {
    /// `registry/repository:tag` or `registry/repository@sha256:…`.
    pub reference: String,
    /// A pull Secret of the registration's namespace (`-n`).
    pub pull_secret: Option<String>,
    /// A cosign public key's PEM file: the registration requires the
    /// artifact to be signed by it (`cosignPublicKey`).
    pub cosign_key: Option<PathBuf>,
}

/// Why a module could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Module(#[from] RuntimeError),
    #[error(
        "{path} is {size} bytes compressed; a ConfigMap holds at most {CONFIG_MAP_LIMIT}: ship it as a file in the plugins folder"
    )]
    TooLarge { path: PathBuf, size: usize },
    #[error("cannot print the YAML: {0}")]
    Print(std::io::Error),
    #[error("{0} is not a valid name (lowercase letters, digits and '-')")]
    BadName(String),
    #[error("service account reference {0:?} is not NAMESPACE/NAME")]
    BadServiceAccountRef(String),
    #[error(
        "a tenant's registration acts as its --service-account; --service-account-ref is for cluster registrations"
    )]
    BothAccounts,
    #[error(transparent)]
    Reference(#[from] crate::oci::OciError),
    #[error("cosign key {path}: {cause}")]
    CosignKey {
        path: PathBuf,
        cause: crate::oci::signature::SignatureError,
    },
}

/// The YAML stream: the ConfigMap, then the registration.
pub fn pack(input: &PackInput) -> Result<String, PackError> {
    for name in [&input.name, &input.namespace] {
        if !crate::runtime::is_dns_label(name) {
            return Err(PackError::BadName(name.clone()));
        }
    }
    let account_ref = match (&input.service_account, &input.service_account_ref) {
        (Some(_), Some(_)) => return Err(PackError::BothAccounts),
        (_, Some(reference)) => Some(service_account_ref(reference)?),
        _ => None,
    };
    let (bytes, info) = checked_module(&input.module)?;
    let sha256 = digest(&bytes);
    let (module, config_map) = match &input.oci {
        Some(target) => (oci_module(input, target, &sha256)?, None),
        None => {
            let config_map = config_map(input, bytes)?;
            let module = json!({
                "configMap": { "namespace": input.namespace, "name": input.name, "key": "module.wasm" },
                "sha256": sha256,
            });
            (module, Some(config_map))
        }
    };
    let mut registration = json!({
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "ClusterReconcilerPlugin",
        "metadata": { "name": input.name },
        "spec": {
            "parent": { "apiVersion": info.parent.api_version, "kind": info.parent.kind },
            "module": module,
        },
    });
    if let Some((namespace, name)) = account_ref {
        registration["spec"]["serviceAccountRef"] = json!({"namespace": namespace, "name": name});
    }
    if let Some(service_account) = &input.service_account {
        registration["kind"] = json!("ReconcilerPlugin");
        registration["metadata"]["namespace"] = json!(input.namespace);
        registration["spec"]["serviceAccountName"] = json!(service_account);
    }
    let mut out = format!(
        "# {} {} reconciles {}; module sha256 {sha256}\n",
        info.name, info.version, info.parent
    );
    match &input.oci {
        Some(_) if registration["spec"]["module"].get("sha256").is_none() => {
            out.push_str("# a tag: the host follows it to each module pushed under it (every --oci-refresh-seconds)\n")
        }
        Some(_) => {}
        None => {
            out.push_str(APPLY_HINT);
            out.push('\n');
        }
    }
    for document in config_map.into_iter().chain([registration]) {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&document).expect("YAML of JSON"));
    }
    Ok(out)
}

/// The ConfigMap holding `bytes` (compressed when needed or asked).
fn config_map(input: &PackInput, bytes: Vec<u8>) -> Result<serde_json::Value, PackError> {
    let payload = if input.gzip || bytes.len() > COMPRESS_ABOVE {
        gzip(&bytes)
    } else {
        bytes
    };
    if payload.len() > CONFIG_MAP_LIMIT - (4 << 10) {
        return Err(PackError::TooLarge {
            path: input.module.clone(),
            size: payload.len(),
        });
    }
    let config_map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(input.name.clone()),
            namespace: Some(input.namespace.clone()),
            labels: Some([("app.kubernetes.io/part-of".to_owned(), "trellis".to_owned())].into()),
            ..ObjectMeta::default()
        },
        binary_data: Some([("module.wasm".to_owned(), ByteString(payload))].into()),
        ..ConfigMap::default()
    };
    let mut config_map = serde_json::to_value(&config_map).expect("a ConfigMap serialises");
    config_map["apiVersion"] = json!("v1");
    config_map["kind"] = json!("ConfigMap");
    Ok(config_map)
}

/// `spec.module` naming `target`: pinned to `sha256` when the reference is
/// by digest, following the tag otherwise.
fn oci_module(input: &PackInput, target: &OciTarget, sha256: &str) -> Result<serde_json::Value, PackError> {
    let reference = crate::oci::parse_reference(&target.reference)?;
    let mut oci = json!({ "reference": target.reference });
    if let Some(secret) = &target.pull_secret {
        if !crate::runtime::is_dns_subdomain(secret) {
            return Err(PackError::BadName(secret.clone()));
        }
        oci["pullSecret"] = match input.service_account {
            // A tenant's Secret is of its own namespace.
            Some(_) => json!({ "name": secret }),
            None => json!({ "namespace": input.namespace, "name": secret }),
        };
    }
    if let Some(path) = &target.cosign_key {
        let pem = std::fs::read(path).map_err(|source| PackError::Read {
            path: path.clone(),
            source,
        })?;
        crate::oci::signature::CosignKey::from_pem(&pem).map_err(|cause| PackError::CosignKey {
            path: path.clone(),
            cause,
        })?;
        oci["cosignPublicKey"] = json!(String::from_utf8_lossy(&pem));
    }
    let mut module = json!({ "oci": oci });
    if reference.digest().is_some() {
        module["sha256"] = json!(sha256);
    }
    Ok(module)
}

/// The module at `path` and what it says of itself, refused as the host
/// would refuse it: it must load and describe itself.
pub fn checked_module(path: &std::path::Path) -> Result<(Vec<u8>, PluginInfo), PackError> {
    let bytes = std::fs::read(path).map_err(|source| PackError::Read {
        path: path.to_owned(),
        source,
    })?;
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 2,
        ..RuntimeConfig::default()
    })?;
    let info = runtime
        .load(&path.display().to_string(), &bytes, Limits::default())?
        .info()
        .clone();
    Ok((bytes, info))
}

/// `namespace/name` of a ServiceAccount, checked.
fn service_account_ref(reference: &str) -> Result<(&str, &str), PackError> {
    match reference.split_once('/') {
        Some((namespace, name))
            if crate::runtime::is_dns_label(namespace) && crate::runtime::is_dns_subdomain(name) =>
        {
            Ok((namespace, name))
        }
        _ => Err(PackError::BadServiceAccountRef(reference.to_owned())),
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}
