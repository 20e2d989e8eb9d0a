//! The webhooks' certificates, made with rcgen: a CA kept in a Secret of
//! the host's namespace (so every replica and restart trusts the same one)
//! and a serving certificate signed by it, held in memory and handed to
//! rustls through [`ServingCert`].
//!
//! Rotation never fails a request: a CA is replaced when two thirds of its
//! life have passed, and the old one stays in the Secret as `previous.crt`.
//! `caBundle` carries both; the server switches to a certificate of the new
//! CA only once the configurations with the new bundle have been applied
//! for [`BUNDLE_PROPAGATION`], and the old CA's certificates stay valid
//! until then.

use super::AdmissionError;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;

/// How long the API server may take to see a configuration's new
/// `caBundle` before the server presents a certificate only it trusts.
pub const BUNDLE_PROPAGATION: Duration = Duration::from_secs(5);
/// Certificates are valid from this long before they are made (clocks of
/// the API server and the host may differ a little).
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// Secret keys.
const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";
const PREVIOUS_CA_CERT: &str = "previous.crt";
/// Annotations of the Secret: when the CA was made and when it expires
/// (unix seconds), read instead of parsing the certificate.
const ISSUED_AT: &str = "trellis.dev/ca-issued-at";
const EXPIRES_AT: &str = "trellis.dev/ca-expires-at";

/// Unix seconds now.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// When a certificate made at `issued` and expiring at `expires` should be
/// replaced: two thirds into its life.
pub(crate) fn renew_at(issued: u64, expires: u64) -> u64 {
    issued + expires.saturating_sub(issued) * 2 / 3
}

/// The CA the webhooks' certificates are signed with, and the one before.
#[derive(Clone)]
pub struct Authority {
    /// PEM of the CA certificate.
    pub cert_pem: String,
    key_pem: String,
    /// Unix seconds it was made and expires.
    pub issued: u64,
    pub expires: u64,
    /// PEM of the CA it replaced, still trusted until its certificates go.
    pub previous_pem: Option<String>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("issued", &self.issued)
            .field("expires", &self.expires)
            .field("has_previous", &self.previous_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A new CA valid for `validity` from now, replacing `previous`.
    pub fn generate(validity: Duration, previous: Option<&Authority>) -> Result<Self, AdmissionError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, "trellis webhook CA");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issued = now();
        let expires = issued + validity.as_secs().max(1);
        set_validity(&mut params, issued, expires);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issued,
            expires,
            previous_pem: previous.map(|p| p.cert_pem.clone()),
        })
    }

    /// Whether it should be replaced by now.
    pub fn due(&self, at: u64) -> bool {
        at >= renew_at(self.issued, self.expires)
    }

    /// The CAs the API server should trust: this one and the one before.
    pub fn bundle(&self) -> String {
        let mut bundle = self.cert_pem.clone();
        if let Some(previous) = &self.previous_pem {
            bundle.push_str(previous);
        }
        bundle
    }

    /// A serving certificate for `dns_names` and `ips`, valid until the
    /// CA expires.
    pub fn issue(&self, dns_names: &[String], ips: &[std::net::IpAddr]) -> Result<Issued, AdmissionError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(dns_names.to_vec())?;
        params
            .subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        params.distinguished_name.push(
            DnType::CommonName,
            dns_names.first().map_or("trellis-webhook", String::as_str),
        );
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let issued = now();
        set_validity(&mut params, issued, self.expires);
        let cert = params.signed_by(&key, &issuer)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing =
            rustls::crypto::ring::sign::any_supported_type(&private).map_err(|e| AdmissionError::Tls(e.to_string()))?;
        Ok(Issued {
            key: Arc::new(CertifiedKey::new(vec![cert.der().clone()], signing)),
            ca_pem: self.cert_pem.clone(),
            issued,
            expires: self.expires,
        })
    }

    /// The Secret that keeps it.
    pub fn to_secret(&self, namespace: &str, name: &str) -> Secret {
        let mut data = BTreeMap::from([
            (CA_CERT.to_owned(), ByteString(self.cert_pem.clone().into_bytes())),
            (CA_KEY.to_owned(), ByteString(self.key_pem.clone().into_bytes())),
        ]);
        if let Some(previous) = &self.previous_pem {
            data.insert(PREVIOUS_CA_CERT.to_owned(), ByteString(previous.clone().into_bytes()));
        }
        Secret {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(namespace.to_owned()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_owned(),
                    "trellis".to_owned(),
                )])),
                annotations: Some(BTreeMap::from([
                    (ISSUED_AT.to_owned(), self.issued.to_string()),
                    (EXPIRES_AT.to_owned(), self.expires.to_string()),
                ])),
                ..Default::default()
            },
            type_: Some("Opaque".to_owned()),
            data: Some(data),
            ..Default::default()
        }
    }

    /// The CA a Secret keeps, if it keeps a whole one.
    pub fn from_secret(secret: &Secret) -> Option<Self> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
        let annotation = |key: &str| secret.metadata.annotations.as_ref()?.get(key)?.parse::<u64>().ok();
        let authority = Self {
            cert_pem: text(CA_CERT)?,
            key_pem: text(CA_KEY)?,
            issued: annotation(ISSUED_AT)?,
            expires: annotation(EXPIRES_AT)?,
            previous_pem: text(PREVIOUS_CA_CERT),
        };
        // A key that does not parse is no CA to sign with.
        KeyPair::from_pem(&authority.key_pem).ok()?;
        Some(authority)
    }
}

fn set_validity(params: &mut CertificateParams, issued: u64, expires: u64) {
    let at =
        |secs: u64| time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    params.not_before = at(issued.saturating_sub(CLOCK_SKEW.as_secs()));
    params.not_after = at(expires);
}

/// A serving certificate and what it was made from.
#[derive(Clone)]
pub struct Issued {
    key: Arc<CertifiedKey>,
    /// PEM of the CA that signed it.
    pub ca_pem: String,
    /// Unix seconds it was made and expires.
    pub issued: u64,
    pub expires: u64,
}

impl Issued {
    /// Whether it should be replaced by now.
    pub fn due(&self, at: u64) -> bool {
        at >= renew_at(self.issued, self.expires)
    }
}

/// The certificate the webhook server presents; swapped in place, so a
/// renewal never restarts the server. Empty until the leader made one: a
/// handshake then fails (and the API server applies `failurePolicy`).
#[derive(Clone, Default)]
pub struct ServingCert(Arc<RwLock<Option<Issued>>>);

impl ServingCert {
    /// Presents `issued` from the next handshake on.
    pub fn set(&self, issued: Issued) {
        *self.0.write().expect("serving certificate lock") = Some(issued);
    }

    /// The certificate presented now.
    pub fn current(&self) -> Option<Issued> {
        self.0.read().expect("serving certificate lock").clone()
    }
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingCert")
    }
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current().map(|issued| issued.key)
    }
}

/// The rustls configuration of the webhook server.
pub fn server_config(cert: ServingCert) -> Result<rustls::ServerConfig, AdmissionError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| AdmissionError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(cert));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The DER of a PEM certificate, for clients that pin the CA.
pub fn der_of(pem: &str) -> Option<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn a_ca_is_renewed_two_thirds_into_its_life() {
        assert_eq!(renew_at(100, 400), 300);
        let ca = Authority::generate(Duration::from_secs(3000), None).unwrap();
        assert!(!ca.due(ca.issued));
        assert!(ca.due(ca.issued + 2000));
    }

    #[test]
    fn the_bundle_trusts_the_new_and_the_previous_ca() {
        let old = Authority::generate(Duration::from_secs(60), None).unwrap();
        let new = Authority::generate(Duration::from_secs(60), Some(&old)).unwrap();
        assert_eq!(new.bundle(), format!("{}{}", new.cert_pem, old.cert_pem));
        assert_eq!(old.bundle(), old.cert_pem);
    }

    #[test]
    fn a_secret_keeps_the_whole_authority() {
        let old = Authority::generate(Duration::from_secs(60), None).unwrap();
        let ca = Authority::generate(Duration::from_secs(60), Some(&old)).unwrap();
        let back = Authority::from_secret(&ca.to_secret("ns", "ca")).unwrap();
        assert_eq!(
            (back.cert_pem, back.issued, back.expires),
            (ca.cert_pem.clone(), ca.issued, ca.expires)
        );
        assert_eq!(back.previous_pem, Some(old.cert_pem));
        let mut broken = ca.to_secret("ns", "ca");
        broken.data.as_mut().unwrap().remove(CA_KEY);
        assert!(Authority::from_secret(&broken).is_none());
    }

    #[test]
    fn a_served_certificate_chains_to_its_ca() {
        let ca = Authority::generate(Duration::from_secs(600), None).unwrap();
        let issued = ca
            .issue(
                &["trellis-webhook.trellis-system.svc".into()],
                &["127.0.0.1".parse().unwrap()],
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der_of(&ca.cert_pem).unwrap()).unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_server_cert(&issued.key.cert[0], &[], &name, &[], now)
            .unwrap();
        let other = Authority::generate(Duration::from_secs(600), None).unwrap();
        let mut foreign = rustls::RootCertStore::empty();
        foreign.add(der_of(&other.cert_pem).unwrap()).unwrap();
        let refusing = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(foreign),
            Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .unwrap();
        assert!(
            refusing
                .verify_server_cert(&issued.key.cert[0], &[], &name, &[], now)
                .is_err()
        );
    }
}
