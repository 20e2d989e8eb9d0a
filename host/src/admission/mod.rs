//! Admission through plugins: the host serves validating and mutating
//! webhooks from the same `.wasm` that reconciles.
//!
//! - [`server`]: the HTTPS endpoint (`/validate/<registration>`,
//!   `/mutate/<registration>`) on its own port; [`review`] answers each
//!   AdmissionReview by calling the plugin.
//! - [`certs`]: the CA in a Secret of the host's namespace, rotated before
//!   expiry, and the serving certificate it signs.
//! - [`configs`]: one Validating/MutatingWebhookConfiguration per
//!   registration whose plugin asks for hooks (pure planning).
//! - [`accounts`]: the opt-in check that whoever names a ServiceAccount in
//!   a registration may impersonate it.
//! - [`Webhooks`]: the leader's part, run on every registry sync: which
//!   registrations the server answers for ([`Targets`]), the CA, the
//!   configurations (applied, and pruned once their registration is gone),
//!   the serving certificate, and in cluster the EndpointSlice that sends
//!   the API server's calls to the leader.

pub mod accounts;
pub mod certs;
pub mod configs;
pub mod review;
pub mod server;

use crate::controller::{AdmissionTarget, KindController};
use certs::{Authority, BUNDLE_PROPAGATION, ServingCert};
use configs::{Endpoint, MANAGED_BY, WebhookPlan};
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// The field manager of everything the host writes for admission.
const FIELD_MANAGER: &str = "trellis";
/// Configurations are applied again this often even when unchanged (one
/// edited or deleted by hand comes back).
const REAPPLY_EVERY: Duration = Duration::from_secs(60);

/// Why admission could not be set up or kept.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error("cannot make a certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("TLS setup failed: {0}")]
    Tls(String),
    #[error("cannot serve webhooks on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("--webhook-url {url:?} is not an https:// URL with a host")]
    BadUrl { url: String },
    #[error("the API refused {what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// How the host serves admission.
#[derive(Debug, Clone)]
pub struct AdmissionOptions {
    /// Where the webhook server listens.
    pub addr: SocketAddr,
    /// How the API server reaches it.
    pub endpoint: Endpoint,
    /// The host's namespace: the CA Secret lives there.
    pub namespace: String,
    /// The CA Secret's name.
    pub secret_name: String,
    /// How long a CA is valid; it is replaced two thirds into its life.
    pub ca_validity: Duration,
    /// This pod's IP, in cluster: the leader points the Service's
    /// EndpointSlice at it.
    pub pod_ip: Option<IpAddr>,
    /// Check that whoever names a ServiceAccount in a registration may
    /// impersonate it ([`accounts`]).
    pub check_service_account_use: bool,
}

impl AdmissionOptions {
    /// Admission served on `addr`, reached at `url` (out of cluster) or
    /// else through the Service `trellis-webhook` of `namespace`.
    pub fn new(addr: SocketAddr, url: Option<String>, namespace: &str) -> Result<Self, AdmissionError> {
        let endpoint = match url {
            Some(url) => {
                if host_of(&url).is_none() {
                    return Err(AdmissionError::BadUrl { url });
                }
                Endpoint::Url(url)
            }
            None => Endpoint::Service {
                namespace: namespace.to_owned(),
                name: SERVICE_NAME.to_owned(),
                port: 443,
            },
        };
        Ok(Self {
            addr,
            endpoint,
            namespace: namespace.to_owned(),
            secret_name: "trellis-webhook-ca".to_owned(),
            ca_validity: Duration::from_secs(365 * 24 * 3600),
            pod_ip: None,
            check_service_account_use: false,
        })
    }

    /// The names the serving certificate is for.
    fn subject_names(&self) -> (Vec<String>, Vec<IpAddr>) {
        match &self.endpoint {
            Endpoint::Url(url) => match host_of(url) {
                Some(host) => match host.parse::<IpAddr>() {
                    Ok(ip) => (vec!["trellis-webhook".into()], vec![ip]),
                    Err(_) => (vec![host], Vec::new()),
                },
                None => (vec!["trellis-webhook".into()], Vec::new()),
            },
            Endpoint::Service { namespace, name, .. } => (
                vec![
                    format!("{name}.{namespace}.svc"),
                    format!("{name}.{namespace}.svc.cluster.local"),
                    format!("{name}.{namespace}"),
                    name.clone(),
                ],
                Vec::new(),
            ),
        }
    }
}

/// The Service the API server calls in cluster (deploy/manager).
pub const SERVICE_NAME: &str = "trellis-webhook";
/// The port the webhook server listens on in cluster.
pub const DEFAULT_PORT: u16 = 9443;

/// The host of an `https://host[:port][/path]` URL (brackets of an IPv6
/// address removed).
fn host_of(url: &str) -> Option<String> {
    let rest = url.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    (!host.is_empty()).then(|| host.to_owned())
}

/// The registrations the webhook server answers for, by name. Empty on a
/// replica that does not lead.
#[derive(Clone, Default)]
pub struct Targets(Arc<RwLock<HashMap<String, AdmissionTarget>>>);

impl Targets {
    /// The target of `registration`, if served now.
    pub fn get(&self, registration: &str) -> Option<AdmissionTarget> {
        self.0.read().expect("targets lock").get(registration).cloned()
    }

    fn replace(&self, targets: HashMap<String, AdmissionTarget>) {
        *self.0.write().expect("targets lock") = targets;
    }

    /// Forgets every target (the registry stopped).
    pub fn clear(&self) {
        self.0.write().expect("targets lock").clear();
    }
}

/// What the process shares with the leader's [`Webhooks`]: the targets the
/// server reads, and the certificate it presents.
#[derive(Clone, Default)]
pub struct Serving {
    pub targets: Targets,
    pub cert: ServingCert,
}

/// The leader's part of admission, brought in line on every registry sync.
pub struct Webhooks {
    client: Client,
    options: AdmissionOptions,
    serving: Serving,
    authority: Option<Authority>,
    /// The CA whose bundle every configuration carries, and since when.
    propagated: Option<(String, Instant)>,
    /// What was applied last, by `kind/name`, and when.
    applied: BTreeMap<String, (Value, Instant)>,
    /// Whether configurations of earlier runs were looked for.
    listed: bool,
}

impl Webhooks {
    /// The admission of a leader over `serving`.
    pub fn new(client: Client, options: AdmissionOptions, serving: Serving) -> Self {
        Self {
            client,
            options,
            serving,
            authority: None,
            propagated: None,
            applied: BTreeMap::new(),
            listed: false,
        }
    }

    /// Stops answering for any registration (the registry stopped).
    pub fn forget_targets(&self) {
        self.serving.targets.clear();
    }

    /// Brings the targets, the CA, the configurations and the serving
    /// certificate in line with the controllers running now. Failures are
    /// logged and retried on the next sync.
    pub async fn sync<'a>(&mut self, running: impl Iterator<Item = &'a KindController>) {
        let mut targets = HashMap::new();
        let mut plans = Vec::new();
        for controller in running {
            let registration = controller.registration();
            let info = registration.plugin.info();
            let hooks = info.admission;
            if !hooks.any() && info.default_related.is_empty() {
                continue;
            }
            let target = controller.admission_target();
            let parent = target.parent();
            let default_related = info
                .default_related
                .iter()
                .filter_map(|kind| target.related_kind(kind))
                .map(|served| configs::RelatedRule {
                    group: served.resource.group.clone(),
                    version: served.resource.version.clone(),
                    plural: served.resource.plural.clone(),
                    namespaced: served.namespaced,
                })
                .collect();
            plans.push(WebhookPlan {
                registration: registration.name.clone(),
                group: parent.resource.group.clone(),
                version: parent.resource.version.clone(),
                plural: parent.resource.plural.clone(),
                namespaced: parent.namespaced,
                hooks,
                failure_policy: registration.failure_policy,
                namespace: registration.tenant_namespace.clone().or_else(|| {
                    // A host watching one namespace serves only it.
                    controller.watched_namespace().filter(|_| parent.namespaced)
                }),
                default_related,
            });
            targets.insert(registration.name.clone(), target);
        }
        self.serving.targets.replace(targets);
        if let Err(error) = self.keep(&plans).await {
            tracing::warn!(%error, "admission webhooks not in line; retrying");
        }
    }

    async fn keep(&mut self, plans: &[WebhookPlan]) -> Result<(), AdmissionError> {
        let authority = self.authority().await?;
        let bundle = authority.bundle();
        let mut validating = BTreeMap::new();
        let mut mutating = BTreeMap::new();
        for plan in plans {
            if let Some(config) = plan.validating(&self.options.endpoint, &bundle) {
                validating.insert(config.metadata.name.clone().unwrap_or_default(), config);
            }
            if let Some(config) = plan.mutating(&self.options.endpoint, &bundle) {
                mutating.insert(config.metadata.name.clone().unwrap_or_default(), config);
            }
        }
        if self.options.check_service_account_use {
            let config = accounts::configuration(&self.options.endpoint, &bundle);
            validating.insert(accounts::CONFIG_NAME.to_owned(), config);
        }
        self.apply_all(&validating).await?;
        self.apply_all(&mutating).await?;
        self.prune::<ValidatingWebhookConfiguration>(&validating).await?;
        self.prune::<MutatingWebhookConfiguration>(&mutating).await?;
        self.listed = true;
        if self.propagated.as_ref().is_none_or(|(ca, _)| *ca != authority.cert_pem) {
            self.propagated = Some((authority.cert_pem.clone(), Instant::now()));
        }
        self.keep_serving_cert(&authority)?;
        self.keep_endpoint_slice().await
    }

    /// The CA: the one held, the Secret's, or a new one; replaced when due.
    async fn authority(&mut self) -> Result<Authority, AdmissionError> {
        let now = certs::now();
        if let Some(held) = &self.authority
            && !held.due(now)
        {
            return Ok(held.clone());
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.options.namespace);
        let name = &self.options.secret_name;
        let api_error = |what: &str| {
            let what = format!("{what} Secret {}/{name}", self.options.namespace);
            move |source| AdmissionError::Api { what, source }
        };
        let stored = secrets.get_opt(name).await.map_err(api_error("reading"))?;
        let kept = stored.as_ref().and_then(Authority::from_secret);
        let authority = match (&stored, kept) {
            (_, Some(kept)) if !kept.due(now) => kept,
            (Some(stored), kept) => {
                let next = Authority::generate(self.options.ca_validity, kept.as_ref())?;
                let mut secret = next.to_secret(&self.options.namespace, name);
                secret.metadata.resource_version = stored.metadata.resource_version.clone();
                secrets
                    .replace(name, &PostParams::default(), &secret)
                    .await
                    .map_err(api_error("rotating the CA in"))?;
                tracing::info!(secret = %name, expires = next.expires, "webhook CA rotated; the previous one stays trusted");
                next
            }
            (None, _) => {
                let next = Authority::generate(self.options.ca_validity, None)?;
                secrets
                    .create(&PostParams::default(), &next.to_secret(&self.options.namespace, name))
                    .await
                    .map_err(api_error("creating"))?;
                tracing::info!(secret = %name, expires = next.expires, "webhook CA created");
                next
            }
        };
        self.authority = Some(authority.clone());
        Ok(authority)
    }

    /// Applies the configurations that changed since last applied (or
    /// were applied over a minute ago).
    async fn apply_all<K>(&mut self, configs: &BTreeMap<String, K>) -> Result<(), AdmissionError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + serde::Serialize
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        for (name, config) in configs {
            let body = serde_json::to_value(config).unwrap_or_default();
            let key = format!("{}/{name}", K::kind(&()));
            if self
                .applied
                .get(&key)
                .is_some_and(|(last, at)| *last == body && at.elapsed() < REAPPLY_EVERY)
            {
                continue;
            }
            // k8s-openapi serialises apiVersion and kind with the object.
            api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&body))
                .await
                .map_err(|source| AdmissionError::Api {
                    what: format!("applying {key}"),
                    source,
                })?;
            tracing::debug!(config = %key, "webhook configuration applied");
            self.applied.insert(key, (body, Instant::now()));
        }
        Ok(())
    }

    /// Deletes the host's configurations of this kind that no registration
    /// wants: those it applied, and on the first sync those of earlier runs.
    async fn prune<K>(&mut self, wanted: &BTreeMap<String, K>) -> Result<(), AdmissionError>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::ClusterResourceScope>
            + serde::de::DeserializeOwned
            + Clone
            + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(self.client.clone());
        let kind = K::kind(&()).to_string();
        let mut names: BTreeSet<String> = self
            .applied
            .keys()
            .filter_map(|key| key.strip_prefix(&format!("{kind}/")).map(str::to_owned))
            .collect();
        if !self.listed {
            let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
            let listed = api
                .list_metadata(&ListParams::default().labels(&selector))
                .await
                .map_err(|source| AdmissionError::Api {
                    what: format!("listing {kind}s"),
                    source,
                })?;
            names.extend(listed.items.into_iter().filter_map(|m| m.metadata.name));
        }
        for name in names.into_iter().filter(|n| !wanted.contains_key(n)) {
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {
                    tracing::info!(config = %format!("{kind}/{name}"), "webhook configuration of a removed registration deleted")
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(source) => {
                    return Err(AdmissionError::Api {
                        what: format!("deleting {kind}/{name}"),
                        source,
                    });
                }
            }
            self.applied.remove(&format!("{kind}/{name}"));
        }
        Ok(())
    }

    /// Issues a serving certificate when there is none, when the one
    /// presented is due, or when the CA changed and its bundle has been in
    /// every configuration for [`BUNDLE_PROPAGATION`].
    fn keep_serving_cert(&self, authority: &Authority) -> Result<(), AdmissionError> {
        let current = self.serving.cert.current();
        let propagated = self
            .propagated
            .as_ref()
            .is_some_and(|(ca, since)| *ca == authority.cert_pem && since.elapsed() >= BUNDLE_PROPAGATION);
        // A certificate of the CA before stays valid a third of the CA's
        // life after the rotation, far longer than the bundle takes.
        let reissue = match &current {
            None => true,
            Some(cert) if cert.ca_pem != authority.cert_pem => propagated || certs::now() >= cert.expires,
            Some(cert) => cert.due(certs::now()),
        };
        if reissue {
            let (names, ips) = self.options.subject_names();
            self.serving.cert.set(authority.issue(&names, &ips)?);
            tracing::info!(names = ?names, ips = ?ips, "webhook serving certificate issued");
        }
        Ok(())
    }

    /// In cluster, points the webhook Service at this replica (the leader):
    /// its EndpointSlice lists this pod's IP only.
    async fn keep_endpoint_slice(&mut self) -> Result<(), AdmissionError> {
        let Some(slice) = leader_endpoint_slice(&self.options) else {
            return Ok(());
        };
        let key = format!("EndpointSlice/{}", slice.name);
        if self
            .applied
            .get(&key)
            .is_some_and(|(last, at)| *last == slice.body && at.elapsed() < REAPPLY_EVERY)
        {
            return Ok(());
        }
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), &slice.namespace);
        api.patch(
            &slice.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&slice.body),
        )
        .await
        .map_err(|source| AdmissionError::Api {
            what: format!("applying {key}"),
            source,
        })?;
        self.applied.insert(key, (slice.body, Instant::now()));
        Ok(())
    }
}

/// An EndpointSlice to apply.
#[derive(Debug, PartialEq)]
struct Slice {
    namespace: String,
    name: String,
    body: Value,
}

/// The EndpointSlice that sends the webhook Service's traffic to this
/// replica: only in cluster (a Service endpoint and this pod's IP known).
fn leader_endpoint_slice(options: &AdmissionOptions) -> Option<Slice> {
    let (Endpoint::Service { namespace, name, .. }, Some(ip)) = (&options.endpoint, options.pod_ip) else {
        return None;
    };
    let slice_name = format!("{name}-leader");
    let body = serde_json::json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": name, MANAGED_BY.0: MANAGED_BY.1},
        },
        "addressType": if ip.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "webhook", "port": options.addr.port(), "protocol": "TCP"}],
    });
    Some(Slice {
        namespace: namespace.clone(),
        name: slice_name,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_host_names_the_certificate() {
        assert_eq!(host_of("https://127.0.0.1:9443").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_of("https://[::1]:9443/x").as_deref(), Some("::1"));
        assert_eq!(
            host_of("https://webhooks.example.com/").as_deref(),
            Some("webhooks.example.com")
        );
        assert_eq!(host_of("http://127.0.0.1:9443"), None);
        assert!(matches!(
            AdmissionOptions::new("127.0.0.1:0".parse().unwrap(), Some("ftp://x".into()), "ns"),
            Err(AdmissionError::BadUrl { .. })
        ));
        let options = AdmissionOptions::new("127.0.0.1:0".parse().unwrap(), None, "trellis-system").unwrap();
        let (names, ips) = options.subject_names();
        assert!(names.contains(&"trellis-webhook.trellis-system.svc".to_owned()) && ips.is_empty());
    }

    #[test]
    fn in_cluster_the_leader_points_the_webhook_service_at_its_own_pod() {
        let addr = "0.0.0.0:9443".parse().unwrap();
        let mut options = AdmissionOptions::new(addr, None, "trellis-system").unwrap();
        assert_eq!(leader_endpoint_slice(&options), None, "no pod IP: no slice");
        options.pod_ip = Some("10.0.0.7".parse().unwrap());
        let slice = leader_endpoint_slice(&options).unwrap();
        assert_eq!(
            (slice.namespace.as_str(), slice.name.as_str()),
            ("trellis-system", "trellis-webhook-leader")
        );
        assert_eq!(
            slice.body["metadata"]["labels"]["kubernetes.io/service-name"],
            "trellis-webhook"
        );
        assert_eq!(slice.body["endpoints"][0]["addresses"][0], "10.0.0.7");
        assert_eq!(slice.body["ports"][0]["port"], 9443);
        assert_eq!(slice.body["addressType"], "IPv4");
        let outside = AdmissionOptions {
            pod_ip: Some("10.0.0.7".parse().unwrap()),
            ..AdmissionOptions::new(addr, Some("https://127.0.0.1:9443".into()), "trellis-system").unwrap()
        };
        assert_eq!(leader_endpoint_slice(&outside), None, "out of cluster the URL is used");
    }
}
