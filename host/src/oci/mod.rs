//! Plugin modules as OCI artifacts: push a module to a registry, resolve a
//! tag to the digest of its manifest, and pull a module back, checked
//! against the manifest's layer digest and, when pinned, the module's
//! sha256. The protocol is oci-client's; the artifact layout (media types,
//! config, which layer is the module) is [`layout`]'s.
//!
//! A reference is `registry/repository:tag` or `registry/repository@sha256:…`.
//! TLS goes through rustls with ring (installed as the process's provider
//! when none is), trusting the system's roots plus any given here.

pub mod layout;
pub mod publish;
pub mod pull_secret;
pub mod signature;

use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, Config, ImageLayer};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::OciImageManifest;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use crate::runtime::{MAX_MODULE_BYTES, digest};
use std::time::Duration;

/// How long a connection to a registry may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a registry may stay silent in the middle of an answer.
const READ_TIMEOUT: Duration = Duration::from_secs(30);
pub use layout::LayoutError;
use signature::{
    MAX_PAYLOAD_BYTES, MAX_SIGNATURES, SIGNATURE_ANNOTATION, SIMPLE_SIGNING, SignatureError, SignedPayload,
};

/// How to reach a registry: credentials and extra roots of trust.
#[derive(Clone, Default)]
pub struct RegistryAccess {
    /// Basic-auth user and password; anonymous when `None`.
    pub basic: Option<(String, String)>,
    /// PEM certificates trusted besides the system's roots.
    pub extra_roots_pem: Vec<Vec<u8>>,
}

impl std::fmt::Debug for RegistryAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAccess")
            .field("user", &self.basic.as_ref().map(|(user, _)| user))
            .field("extra_roots", &self.extra_roots_pem.len())
            .finish()
    }
}

/// A module published by [`push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    /// The digest of the manifest the reference now names.
    pub manifest_digest: String,
    /// `registry/repository@sha256:…`, the immutable reference.
    pub pinned: String,
    /// The module's sha256 (hex), as registrations pin it.
    pub module_sha256: String,
}

/// A module fetched by [`pull`].
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The digest of the manifest the reference resolved to.
    pub manifest_digest: String,
    /// The module.
    pub bytes: Vec<u8>,
    /// Its sha256 (hex).
    pub module_sha256: String,
}

/// Why an OCI operation failed; each names the reference.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    /// The reference does not parse.
    #[error("{reference:?} is not an OCI reference (registry/repository:tag or @sha256:…): {reason}")]
    BadReference {
        /// As given.
        reference: String,
        /// The parser's words.
        reason: String,
    },
    /// A certificate given to trust is not PEM, or the client refused it.
    #[error("a CA certificate to trust for the registry is unusable: {0}")]
    BadRoot(String),
    /// The registry refused the credentials (or their absence).
    #[error("the registry refused access to {reference}: {reason}")]
    Unauthorized {
        /// The reference.
        reference: String,
        /// What the registry said.
        reason: String,
    },
    /// No manifest under that tag or digest.
    #[error("{reference} was not found in its registry")]
    NotFound {
        /// The reference.
        reference: String,
    },
    /// A push to a repository the registry does not know and does not
    /// create on push (as some hosted registries do not).
    #[error(
        "the registry has no repository for {reference} and does not create one on push: create the repository first"
    )]
    NoSuchRepository {
        /// The reference.
        reference: String,
    },
    /// The manifest is not a Wasm artifact's.
    #[error("{reference} is not a Wasm module artifact: {cause}")]
    NotAModule {
        /// The reference.
        reference: String,
        /// What is wrong with it.
        cause: LayoutError,
    },
    /// Content served does not hash to the digest that names it.
    #[error("{reference}: content served does not match its digest: {reason}")]
    ContentDigestMismatch {
        /// The reference.
        reference: String,
        /// oci-client's words (expected and actual digests).
        reason: String,
    },
    /// The reference's digest is not the manifest's.
    #[error("{reference}: the registry served a manifest of digest {actual}")]
    ManifestDigestMismatch {
        /// The reference (with the digest asked for).
        reference: String,
        /// The digest of what was served.
        actual: String,
    },
    /// The module is not the one pinned.
    #[error("{reference}: the module's sha256 is {actual}, the registration pins {expected}")]
    ModuleDigestMismatch {
        /// The reference.
        reference: String,
        /// The pinned sha256.
        expected: String,
        /// The pulled module's.
        actual: String,
    },
    /// The module is larger than the host takes.
    #[error("{reference}: the module is {size} bytes, over the {limit} a module may have")]
    TooLarge {
        /// The reference.
        reference: String,
        /// Its size, as the manifest gives it or as far as it was read.
        size: u64,
        /// [`MAX_MODULE_BYTES`].
        limit: usize,
    },
    /// No cosign signature of the artifact verifies under a key required.
    #[error("{reference}: {cause}")]
    SignatureInvalid {
        /// The reference.
        reference: String,
        /// Why not.
        cause: Box<SignatureError>,
    },
    /// Any other failure of the protocol or the connection.
    #[error("{operation} {reference}: {cause}")]
    Registry {
        /// What was being done (`pull`, `push`, `resolve`).
        operation: &'static str,
        /// The reference.
        reference: String,
        /// oci-client's error.
        cause: OciDistributionError,
    },
}

impl OciError {
    /// The CamelCase reason a registration's `Ready=False` condition gives.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadReference { .. } => "InvalidReference",
            Self::BadRoot(_) => "RegistryCAInvalid",
            Self::Unauthorized { .. } => "Unauthorized",
            Self::NotFound { .. } | Self::NoSuchRepository { .. } => "ModuleNotFound",
            Self::NotAModule { .. } => "ModuleInvalid",
            Self::ContentDigestMismatch { .. }
            | Self::ManifestDigestMismatch { .. }
            | Self::ModuleDigestMismatch { .. } => "DigestMismatch",
            Self::TooLarge { .. } => "ModuleTooLarge",
            Self::SignatureInvalid { .. } => "SignatureInvalid",
            Self::Registry { .. } => "RegistryUnavailable",
        }
    }
}

/// Parses a reference (`registry/repository:tag` or `@sha256:…`).
pub fn parse_reference(reference: &str) -> Result<Reference, OciError> {
    reference.parse::<Reference>().map_err(|e| OciError::BadReference {
        reference: reference.to_owned(),
        reason: e.to_string(),
    })
}

/// Publishes `module` under `reference` in the Wasm OCI artifact layout.
pub async fn push(module: &[u8], reference: &str, access: &RegistryAccess) -> Result<Pushed, OciError> {
    let parsed = parse_reference(reference)?;
    let client = client(access)?;
    let auth = auth(access);
    let module_sha256 = digest(module);
    let layer = ImageLayer::new(module.to_vec(), layout::WASM_LAYER.to_owned(), None);
    let config = Config::new(
        layout::config_json(&format!("sha256:{module_sha256}")),
        layout::WASM_CONFIG_V0.to_owned(),
        None,
    );
    let mut manifest = OciImageManifest::build(std::slice::from_ref(&layer), &config, None);
    // The layout's readers (oci-wasm, so wasm-pkg-tools) require the field.
    manifest.media_type = Some(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE.to_owned());
    // The manifest is serialised here, so its digest is of the bytes sent,
    // not a header read back (which a concurrent push could have moved).
    let body = serde_json::to_vec(&manifest).expect("a manifest serialises");
    let manifest_digest = format!("sha256:{}", digest(&body));
    let push_failed = |e| classify("push", reference, e);
    client.store_auth_if_needed(parsed.resolve_registry(), &auth).await;
    client
        .push_blob(&parsed, layer.data.clone(), &manifest.layers[0].digest)
        .await
        .map_err(push_failed)?;
    client
        .push_blob(&parsed, config.data.clone(), &manifest.config.digest)
        .await
        .map_err(push_failed)?;
    client
        .push_manifest_raw(
            &parsed,
            body,
            http::HeaderValue::from_static(oci_client::manifest::OCI_IMAGE_MEDIA_TYPE),
        )
        .await
        .map_err(push_failed)?;
    Ok(Pushed {
        pinned: format!("{}/{}@{manifest_digest}", parsed.registry(), parsed.repository()),
        manifest_digest,
        module_sha256,
    })
}

/// The digest of the manifest `reference` names now (a tag's current one).
pub async fn resolve(reference: &str, access: &RegistryAccess) -> Result<String, OciError> {
    let parsed = parse_reference(reference)?;
    client(access)?
        .fetch_manifest_digest(&parsed, &auth(access))
        .await
        .map_err(|e| classify("resolve", reference, e))
}

/// Fetches the module `reference` names, checking the manifest against a
/// digest in the reference and the module against `expected_sha256`.
pub async fn pull(reference: &str, access: &RegistryAccess, expected_sha256: Option<&str>) -> Result<Pulled, OciError> {
    let parsed = parse_reference(reference)?;
    let client = client(access)?;
    // The manifest alone: its config blob is not needed, and is not read
    // (it could be of any size). oci-client hashes the manifest's bytes
    // against the reference's digest or the registry's digest header.
    let (manifest, manifest_digest) = client
        .pull_image_manifest(&parsed, &auth(access))
        .await
        .map_err(|e| classify("pull", reference, e))?;
    // A registry may give a digest of another algorithm (verified by
    // oci-client all the same); only the same algorithm compares.
    if let Some(asked) = parsed.digest()
        && asked.split(':').next() == manifest_digest.split(':').next()
        && asked != manifest_digest
    {
        return Err(OciError::ManifestDigestMismatch {
            reference: reference.to_owned(),
            actual: manifest_digest,
        });
    }
    let layer = layout::module_layer(&manifest).map_err(|cause| OciError::NotAModule {
        reference: reference.to_owned(),
        cause,
    })?;
    let too_large = |size: u64| OciError::TooLarge {
        reference: reference.to_owned(),
        size,
        limit: MAX_MODULE_BYTES,
    };
    if layer.size as u64 > MAX_MODULE_BYTES as u64 {
        return Err(too_large(layer.size as u64));
    }
    // oci-client checks the blob against the layer's digest as it reads; a
    // registry serving more than it declared is cut off at the limit.
    let mut sink = LimitedSink::new(MAX_MODULE_BYTES);
    let pulled = client.pull_blob(&parsed, layer, &mut sink).await;
    if sink.overflowed {
        return Err(too_large(sink.bytes.len() as u64));
    }
    pulled.map_err(|e| classify("pull", reference, e))?;
    let bytes = sink.bytes;
    let module_sha256 = digest(&bytes);
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&module_sha256)
    {
        return Err(OciError::ModuleDigestMismatch {
            reference: reference.to_owned(),
            expected: expected.to_owned(),
            actual: module_sha256,
        });
    }
    Ok(Pulled {
        manifest_digest,
        bytes,
        module_sha256,
    })
}

/// The cosign signatures of the manifest `manifest_digest` in the
/// repository of `reference`: the payloads and signatures of the
/// simple-signing layers of its signature manifest (see [`signature`]).
/// No signature manifest, or one without such layers, is
/// [`OciError::SignatureInvalid`].
pub async fn signatures(
    reference: &str,
    manifest_digest: &str,
    access: &RegistryAccess,
) -> Result<Vec<SignedPayload>, OciError> {
    let parsed = parse_reference(reference)?;
    let tag = signature::signature_tag(manifest_digest);
    let signatures_ref = Reference::with_tag(
        parsed.registry().to_owned(),
        parsed.repository().to_owned(),
        tag.clone(),
    );
    let invalid = |cause| OciError::SignatureInvalid {
        reference: reference.to_owned(),
        cause: Box::new(cause),
    };
    let client = client(access)?;
    let manifest = match client.pull_image_manifest(&signatures_ref, &auth(access)).await {
        Ok((manifest, _)) => manifest,
        Err(e) => {
            return Err(match classify("pull", &signatures_ref.whole(), e) {
                OciError::NotFound { .. } => invalid(SignatureError::Unsigned { tag }),
                other => other,
            });
        }
    };
    let mut found = Vec::new();
    let layers = manifest
        .layers
        .iter()
        .filter(|layer| layer.media_type == SIMPLE_SIGNING)
        .filter_map(|layer| Some((layer, layer.annotations.as_ref()?.get(SIGNATURE_ANNOTATION)?)))
        .take(MAX_SIGNATURES);
    for (layer, signature_b64) in layers {
        let too_large = |size: u64| invalid(SignatureError::PayloadTooLarge { size });
        if !(0..=MAX_PAYLOAD_BYTES as i64).contains(&layer.size) {
            return Err(too_large(layer.size.unsigned_abs()));
        }
        let mut sink = LimitedSink::new(MAX_PAYLOAD_BYTES);
        let pulled = client.pull_blob(&signatures_ref, layer, &mut sink).await;
        if sink.overflowed {
            return Err(too_large(sink.bytes.len() as u64));
        }
        pulled.map_err(|e| classify("pull", &signatures_ref.whole(), e))?;
        found.push(SignedPayload {
            payload: sink.bytes,
            signature_b64: signature_b64.clone(),
        });
    }
    if found.is_empty() {
        return Err(invalid(SignatureError::NoSignatureLayers { tag }));
    }
    Ok(found)
}

/// Collects a blob, refusing to grow past `limit` bytes.
struct LimitedSink {
    bytes: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl LimitedSink {
    fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
            overflowed: false,
        }
    }
}

impl tokio::io::AsyncWrite for LimitedSink {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        if self.bytes.len() + buf.len() > self.limit {
            self.overflowed = true;
            return std::task::Poll::Ready(Err(std::io::Error::other("the module exceeds the size limit")));
        }
        self.bytes.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Whether `extra_roots_pem` can be trusted (each is PEM the TLS client
/// takes): checked once at start, so a bad file stops the host, not every
/// pull.
pub fn check_roots(extra_roots_pem: &[Vec<u8>]) -> Result<(), OciError> {
    client(&RegistryAccess {
        basic: None,
        extra_roots_pem: extra_roots_pem.to_vec(),
    })
    .map(drop)
}

fn client(access: &RegistryAccess) -> Result<Client, OciError> {
    // reqwest is built without a provider of its own: the process's, ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut extra_root_certificates = Vec::new();
    for pem in &access.extra_roots_pem {
        if !pem.starts_with(b"-----BEGIN") {
            return Err(OciError::BadRoot("not PEM (no -----BEGIN line)".to_owned()));
        }
        extra_root_certificates.push(Certificate {
            encoding: CertificateEncoding::Pem,
            data: pem.clone(),
        });
    }
    Client::try_from(ClientConfig {
        extra_root_certificates,
        // A Wasm artifact is one manifest; an index is not a module.
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        ..ClientConfig::default()
    })
    .map_err(|e| OciError::BadRoot(e.to_string()))
}

fn auth(access: &RegistryAccess) -> RegistryAuth {
    match &access.basic {
        Some((user, password)) => RegistryAuth::Basic(user.clone(), password.clone()),
        None => RegistryAuth::Anonymous,
    }
}

/// oci-client's error, sorted into the causes a registration reports.
fn classify(operation: &'static str, reference: &str, source: OciDistributionError) -> OciError {
    use oci_client::errors::OciErrorCode;
    let reference = reference.to_owned();
    match &source {
        OciDistributionError::AuthenticationFailure(reason) => OciError::Unauthorized {
            reference,
            reason: reason.clone(),
        },
        OciDistributionError::UnauthorizedError { url } => OciError::Unauthorized {
            reference,
            reason: format!("401 from {url}"),
        },
        OciDistributionError::ImageManifestNotFoundError(_) => OciError::NotFound { reference },
        OciDistributionError::ServerError { code: 404, .. } => OciError::NotFound { reference },
        OciDistributionError::ServerError {
            code: 401 | 403,
            message,
            ..
        } => OciError::Unauthorized {
            reference,
            reason: message.clone(),
        },
        OciDistributionError::RegistryError { envelope, .. }
            if operation == "push"
                && envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::NameUnknown)) =>
        {
            OciError::NoSuchRepository { reference }
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
                )
            }) =>
        {
            OciError::NotFound { reference }
        }
        OciDistributionError::RegistryError { envelope, .. }
            if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)) =>
        {
            OciError::Unauthorized {
                reference,
                reason: source.to_string(),
            }
        }
        // oci-client's digest error type is not public: its words are kept.
        OciDistributionError::DigestError(e) => OciError::ContentDigestMismatch {
            reference,
            reason: e.to_string(),
        },
        OciDistributionError::ImageIndexParsingNoPlatformResolverError => OciError::NotAModule {
            reference,
            cause: LayoutError::ImageIndex,
        },
        _ => OciError::Registry {
            operation,
            reference,
            cause: source,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_blob_past_the_module_limit_is_cut_off() {
        let mut sink = LimitedSink::new(MAX_MODULE_BYTES);
        sink.write_all(&vec![0; MAX_MODULE_BYTES]).await.unwrap();
        assert!(sink.write_all(&[0]).await.is_err());
        assert!(sink.overflowed);
        assert_eq!(sink.bytes.len(), MAX_MODULE_BYTES);
    }

    fn registry_error(code: oci_client::errors::OciErrorCode) -> OciDistributionError {
        OciDistributionError::RegistryError {
            envelope: oci_client::errors::OciEnvelope {
                errors: vec![oci_client::errors::OciError {
                    code,
                    message: "repository name not known to registry".into(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "https://registry.example/v2/team-a/greeter/blobs/uploads/".into(),
        }
    }

    #[test]
    fn an_unknown_repository_is_no_such_repository_on_push_and_not_found_on_pull() {
        use oci_client::errors::OciErrorCode;
        let reference = "registry.example/team-a/greeter:1";
        let push = classify("push", reference, registry_error(OciErrorCode::NameUnknown));
        assert!(matches!(push, OciError::NoSuchRepository { .. }), "{push:?}");
        assert_eq!(push.reason(), "ModuleNotFound");
        let pull = classify("pull", reference, registry_error(OciErrorCode::NameUnknown));
        assert!(matches!(pull, OciError::NotFound { .. }), "{pull:?}");
        let denied = classify("pull", reference, registry_error(OciErrorCode::Denied));
        assert_eq!(denied.reason(), "Unauthorized");
    }
}
