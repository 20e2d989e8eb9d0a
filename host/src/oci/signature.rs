//! Cosign signatures of module artifacts, verified offline with a public
//! key (no transparency log, no certificate authority).
//!
//! `cosign sign --key` stores a signature of the manifest `sha256:<hex>` as
//! a manifest of its own, tagged `sha256-<hex>.sig` in the same repository.
//! Each of its layers of media type [`SIMPLE_SIGNING`] is a payload naming
//! the signed manifest's digest (`critical.image.docker-manifest-digest`),
//! and carries, base64 in the [`SIGNATURE_ANNOTATION`] annotation, an ECDSA
//! P-256 / SHA-256 signature (DER) of those payload bytes. An artifact is
//! signed by a key when one such layer's signature verifies under the key
//! and its payload names the artifact's digest; the payload is read only
//! after its signature verified.
//!
//! Keys are `cosign generate-key-pair`'s: a PEM `PUBLIC KEY` (SPKI) of an
//! ECDSA P-256 key. Verification is ring's, the host's TLS crypto.

use base64::Engine;
use ring::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The media type of a cosign simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the payload's signature, base64.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The `critical.type` of a cosign payload.
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The largest payload read: cosign's are a few hundred bytes.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The most signature layers examined per artifact.
pub const MAX_SIGNATURES: usize = 32;

/// A cosign public key (ECDSA P-256).
#[derive(Clone, PartialEq, Eq)]
pub struct CosignKey {
    /// The uncompressed curve point, as ring takes it.
    point: Vec<u8>,
    /// `sha256:` and the first 16 hex digits of the SPKI's digest, to name
    /// the key in messages.
    fingerprint: String,
}

impl std::fmt::Debug for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CosignKey({})", self.fingerprint)
    }
}

impl std::fmt::Display for CosignKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cosign key {}", self.fingerprint)
    }
}

/// Why a key or a signature does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The key is not PEM.
    #[error("the cosign public key is not PEM (no -----BEGIN PUBLIC KEY----- block)")]
    KeyNotPem,
    /// The PEM block is not a public key.
    #[error("the cosign public key's PEM block is {label:?}, not PUBLIC KEY")]
    KeyNotPublic {
        /// The block's label.
        label: String,
    },
    /// The public key does not parse as SubjectPublicKeyInfo.
    #[error("the cosign public key is not a SubjectPublicKeyInfo: {0}")]
    KeyMalformed(String),
    /// A key of another algorithm or curve.
    #[error("the cosign public key is not an ECDSA P-256 key (cosign generate-key-pair's): algorithm {algorithm}")]
    KeyNotP256 {
        /// The key's algorithm (and curve) OIDs.
        algorithm: String,
    },
    /// No signature manifest (`sha256-<hex>.sig`) for the artifact.
    #[error("the artifact is not signed (no {tag} in its repository)")]
    Unsigned {
        /// The signature tag looked for.
        tag: String,
    },
    /// A signature manifest with no simple-signing layer.
    #[error("the signature manifest {tag} has no {SIMPLE_SIGNING} layer with a signature")]
    NoSignatureLayers {
        /// Its tag.
        tag: String,
    },
    /// A payload larger than a cosign payload can be.
    #[error("a signature payload is {size} bytes, over the {MAX_PAYLOAD_BYTES} read")]
    PayloadTooLarge {
        /// Its declared size.
        size: u64,
    },
    /// A signature annotation that is not base64.
    #[error("a signature annotation is not base64")]
    SignatureNotBase64,
    /// None of the signatures verifies under the key.
    #[error("no signature verifies under {key} ({examined} examined)")]
    NoneVerifies {
        /// The key ([`CosignKey`]'s display).
        key: String,
        /// How many signature layers were checked.
        examined: usize,
    },
    /// A signature verifies, but its payload is not a cosign payload.
    #[error("a payload signed by the key is not a cosign image signature: {0}")]
    PayloadMalformed(String),
    /// A signature verifies, but for another manifest.
    #[error("the payload signed by {key} names manifest {signed}, not {actual}")]
    OtherManifest {
        /// The key ([`CosignKey`]'s display).
        key: String,
        /// The digest the payload names.
        signed: String,
        /// The artifact's.
        actual: String,
    },
}

impl CosignKey {
    /// Reads a PEM `PUBLIC KEY` of an ECDSA P-256 key.
    pub fn from_pem(pem: &[u8]) -> Result<Self, SignatureError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| SignatureError::KeyNotPem)?;
        if block.label != "PUBLIC KEY" {
            return Err(SignatureError::KeyNotPublic { label: block.label });
        }
        let (_, spki) =
            SubjectPublicKeyInfo::from_der(&block.contents).map_err(|e| SignatureError::KeyMalformed(e.to_string()))?;
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        if spki.algorithm.algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve.as_ref() != Some(&OID_EC_P256) {
            let algorithm = match curve {
                Some(curve) => format!("{} ({curve})", spki.algorithm.algorithm),
                None => spki.algorithm.algorithm.to_string(),
            };
            return Err(SignatureError::KeyNotP256 { algorithm });
        }
        let fingerprint = format!("sha256:{}", &crate::runtime::digest(spki.raw)[..16]);
        Ok(Self {
            point: spki.subject_public_key.data.to_vec(),
            fingerprint,
        })
    }

    /// Whether `signature_b64` (a layer's annotation) is this key's
    /// signature of `payload`.
    fn signed(&self, payload: &[u8], signature_b64: &str) -> Result<bool, SignatureError> {
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signature_b64.trim())
            .map_err(|_| SignatureError::SignatureNotBase64)?;
        Ok(UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(payload, &signature)
            .is_ok())
    }
}

/// The tag of the signature manifest of the manifest `digest`
/// (`sha256:<hex>` gives `sha256-<hex>.sig`).
pub fn signature_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// One signature layer: its payload and its signature annotation.
pub struct SignedPayload {
    /// The payload's bytes, as signed.
    pub payload: Vec<u8>,
    /// The base64 signature.
    pub signature_b64: String,
}

/// Whether one of `signatures` is `key`'s signature of a payload naming
/// `manifest_digest`. Errors say why none is.
pub fn verify(key: &CosignKey, manifest_digest: &str, signatures: &[SignedPayload]) -> Result<(), SignatureError> {
    let mut other_manifest = None;
    for signed in signatures {
        if !key.signed(&signed.payload, &signed.signature_b64)? {
            continue;
        }
        match signed_digest(&signed.payload)? {
            digest if digest == manifest_digest => return Ok(()),
            digest => other_manifest = Some(digest),
        }
    }
    Err(match other_manifest {
        Some(signed) => SignatureError::OtherManifest {
            key: key.to_string(),
            signed,
            actual: manifest_digest.to_owned(),
        },
        None => SignatureError::NoneVerifies {
            key: key.to_string(),
            examined: signatures.len(),
        },
    })
}

/// Whether one of `signatures` is a signature of `manifest_digest` by one
/// of `keys` (any: a host trusting an old and a new key while it rotates).
/// The error is the first key's.
pub fn verify_any(
    keys: &[CosignKey],
    manifest_digest: &str,
    signatures: &[SignedPayload],
) -> Result<(), SignatureError> {
    let mut first = None;
    for key in keys {
        match verify(key, manifest_digest, signatures) {
            Ok(()) => return Ok(()),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

/// The manifest digest a cosign payload names.
fn signed_digest(payload: &[u8]) -> Result<String, SignatureError> {
    #[derive(serde::Deserialize)]
    struct Payload {
        critical: Critical,
    }
    #[derive(serde::Deserialize)]
    struct Critical {
        #[serde(rename = "type")]
        kind: String,
        image: Image,
    }
    #[derive(serde::Deserialize)]
    struct Image {
        #[serde(rename = "docker-manifest-digest")]
        digest: String,
    }
    let parsed: Payload =
        serde_json::from_slice(payload).map_err(|e| SignatureError::PayloadMalformed(e.to_string()))?;
    if parsed.critical.kind != PAYLOAD_TYPE {
        return Err(SignatureError::PayloadMalformed(format!(
            "critical.type is {:?}",
            parsed.critical.kind
        )));
    }
    Ok(parsed.critical.image.digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

    /// A key pair, and its public key as cosign writes it (PEM SPKI).
    fn key_pair() -> (EcdsaKeyPair, Vec<u8>) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let point = pair.public_key().as_ref();
        // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } BIT STRING point.
        let mut spki = vec![
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
            0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
        ];
        spki.extend_from_slice(point);
        let body = base64::engine::general_purpose::STANDARD.encode(&spki);
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{body}\n-----END PUBLIC KEY-----\n");
        (pair, pem.into_bytes())
    }

    fn signed(pair: &EcdsaKeyPair, digest: &str) -> SignedPayload {
        let payload = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"registry.example/plugins/greeter"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"{PAYLOAD_TYPE}"}},"optional":null}}"#
        )
        .into_bytes();
        let signature = pair.sign(&SystemRandom::new(), &payload).unwrap();
        SignedPayload {
            payload,
            signature_b64: base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
        }
    }

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const OTHER: &str = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

    #[test]
    fn a_signature_of_the_manifest_by_the_key_verifies() {
        let (pair, pem) = key_pair();
        let key = CosignKey::from_pem(&pem).unwrap();
        assert_eq!(
            verify(&key, DIGEST, &[signed(&pair, OTHER), signed(&pair, DIGEST)]),
            Ok(())
        );
    }

    #[test]
    fn another_key_or_another_manifest_or_a_changed_payload_does_not() {
        let (pair, pem) = key_pair();
        let (other_pair, _) = key_pair();
        let key = CosignKey::from_pem(&pem).unwrap();
        let named = key.to_string();
        assert_eq!(
            verify(&key, DIGEST, &[signed(&other_pair, DIGEST)]),
            Err(SignatureError::NoneVerifies {
                key: named.clone(),
                examined: 1
            })
        );
        assert_eq!(
            verify(&key, DIGEST, &[signed(&pair, OTHER)]),
            Err(SignatureError::OtherManifest {
                key: named.clone(),
                signed: OTHER.into(),
                actual: DIGEST.into()
            })
        );
        let mut tampered = signed(&pair, OTHER);
        tampered.payload = String::from_utf8(tampered.payload)
            .unwrap()
            .replace(OTHER, DIGEST)
            .into_bytes();
        assert_eq!(
            verify(&key, DIGEST, &[tampered]),
            Err(SignatureError::NoneVerifies {
                key: named.clone(),
                examined: 1
            })
        );
        assert_eq!(
            verify(&key, DIGEST, &[]),
            Err(SignatureError::NoneVerifies {
                key: named,
                examined: 0
            })
        );
    }

    #[test]
    fn any_of_several_keys_may_have_signed() {
        let (old, old_pem) = key_pair();
        let (_, new_pem) = key_pair();
        let keys = [
            CosignKey::from_pem(&new_pem).unwrap(),
            CosignKey::from_pem(&old_pem).unwrap(),
        ];
        assert_eq!(verify_any(&keys, DIGEST, &[signed(&old, DIGEST)]), Ok(()));
        assert!(matches!(
            verify_any(&keys[..1], DIGEST, &[signed(&old, DIGEST)]),
            Err(SignatureError::NoneVerifies { key, .. }) if key == keys[0].to_string()
        ));
    }

    #[test]
    fn keys_that_are_not_p256_public_keys_are_refused() {
        assert_eq!(CosignKey::from_pem(b"not a key"), Err(SignatureError::KeyNotPem));
        let (_, pem) = key_pair();
        let private = String::from_utf8(pem).unwrap().replace("PUBLIC KEY", "PRIVATE KEY");
        assert!(matches!(
            CosignKey::from_pem(private.as_bytes()),
            Err(SignatureError::KeyNotPublic { .. })
        ));
        // An Ed25519 SubjectPublicKeyInfo.
        let mut ed25519 = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        ed25519.extend_from_slice(&[7; 32]);
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(&ed25519)
        );
        assert!(matches!(
            CosignKey::from_pem(pem.as_bytes()),
            Err(SignatureError::KeyNotP256 { .. })
        ));
    }

    #[test]
    fn the_signature_tag_is_cosigns() {
        assert_eq!(
            signature_tag(DIGEST),
            "sha256-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.sig"
        );
    }
}
