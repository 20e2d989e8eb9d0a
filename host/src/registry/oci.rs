//! Modules published as OCI artifacts (`spec.module.oci`): each source a
//! registration names is pulled in a task of its own, with the registry's
//! credentials from the pull Secret it names (read as the registration
//! acts), and compiled into the compiled-module cache (keyed by the
//! module's sha256).
//!
//! When a source is checked again: a tag every [`OciSettings::refresh`]
//! (sooner, after at most 30 s, when the last check failed), and any source
//! at once when a registration naming it changes (its generation). A check
//! resolves the reference to its manifest's digest first and pulls only
//! when that moved; a digest reference that loaded is never checked again.
//! A check that fails keeps the module that loaded before: the registry
//! keeps serving it and shows why on the registration.
//!
//! Signatures: with host keys (`--cosign-key`) or a registration's
//! `cosignPublicKey`, a module whose manifest digest moved is pulled only
//! once a cosign signature of that digest verifies under one of the host's
//! keys and under the registration's key (see [`crate::oci::signature`]).

use super::configmap::compile_refusal;
use super::declared::Refusal;
use crate::controller::{Identity, Shared};
use crate::crd::{OciModule, SecretRef};
use crate::oci::signature::{self, CosignKey};
use crate::oci::{self, RegistryAccess, pull_secret};
use crate::runtime::{Limits, Plugin, Runtime};
use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The longest wait before a failed check is retried.
const RETRY_FAILED: Duration = Duration::from_secs(30);

/// How the host reaches registries.
#[derive(Debug, Clone)]
pub struct OciSettings {
    /// PEM certificates trusted besides the system's roots
    /// (`--registry-ca`).
    pub extra_roots_pem: Vec<Vec<u8>>,
    /// How often a tag is resolved again (`--oci-refresh-seconds`).
    pub refresh: Duration,
    /// Keys of which one must have signed every module (`--cosign-key`);
    /// none required when empty.
    pub cosign_keys: Vec<CosignKey>,
}

impl Default for OciSettings {
    fn default() -> Self {
        Self {
            extra_roots_pem: Vec::new(),
            refresh: Duration::from_secs(300),
            cosign_keys: Vec::new(),
        }
    }
}

/// One module to pull: the artifact, who reads its pull Secret, the pin.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OciSource {
    /// The artifact, its pull Secret's namespace filled in.
    pub module: OciModule,
    /// Whom the pull Secret is read as; the host's own client when `None`.
    pub reader: Option<Identity>,
    /// The module's sha256 a registration pins (`spec.module.sha256`).
    pub sha256: Option<String>,
}

/// What asks for a source: declaration keys with their generations. A
/// change of it is a registration change, which checks the source again.
pub type Stamp = BTreeSet<(String, Option<i64>)>;

/// A module that loaded from an artifact.
#[derive(Clone)]
struct Loaded {
    /// The digest of the manifest it came from.
    manifest_digest: String,
    /// `registry/repository@sha256:…`.
    pinned: String,
    plugin: Plugin,
}

/// What a check found: a new module, the one loaded still current, or why
/// none.
type Checked = Result<Option<Loaded>, Refusal>;

/// The state of one source.
struct Entry {
    stamp: Stamp,
    /// When the last check started; `None` before the first.
    checked: Option<Instant>,
    loaded: Option<Loaded>,
    /// Why the last check failed, if it did.
    failed: Option<Refusal>,
    check: Option<JoinHandle<Checked>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(check) = &self.check {
            check.abort();
        }
    }
}

/// The OCI modules the registrations refer to.
pub struct OciModules {
    settings: OciSettings,
    /// Notified when a check ends.
    changed: Arc<Notify>,
    entries: BTreeMap<OciSource, Entry>,
}

impl OciModules {
    /// None pulled yet; every check that ends later notifies `changed`.
    pub fn new(settings: OciSettings, changed: Arc<Notify>) -> Self {
        Self {
            settings,
            changed,
            entries: BTreeMap::new(),
        }
    }

    /// Keeps exactly the sources of `wanted`, takes in the checks that
    /// ended, and starts the checks that are due (see the module doc).
    /// Never waits for a registry.
    pub fn refresh(&mut self, wanted: BTreeMap<OciSource, Stamp>, shared: &Shared, runtime: &Runtime, limits: Limits) {
        self.entries.retain(|source, _| wanted.contains_key(source));
        let now = Instant::now();
        for (source, stamp) in wanted {
            let entry = self.entries.entry(source.clone()).or_insert_with(|| Entry {
                stamp: stamp.clone(),
                checked: None,
                loaded: None,
                failed: None,
                check: None,
            });
            take_finished(&source, entry);
            if entry.check.is_some() {
                continue;
            }
            let stamp_changed = entry.stamp != stamp;
            entry.stamp = stamp;
            let is_tag = source.module_digest().is_none();
            let due = match (entry.checked, &entry.failed) {
                (None, _) => true,
                (Some(at), Some(_)) => now - at >= self.settings.refresh.min(RETRY_FAILED),
                (Some(at), None) => is_tag && now - at >= self.settings.refresh,
            };
            if !(due || stamp_changed) {
                continue;
            }
            entry.checked = Some(now);
            let known = entry.loaded.as_ref().map(|l| l.manifest_digest.clone());
            let reader = match &source.reader {
                None => Ok(shared.client.clone()),
                Some(identity) => shared.client_as(identity).map_err(|e| {
                    Refusal::new(
                        "PullSecretUnreadable",
                        format!("cannot act as {} to read the pull Secret: {e}", identity.user()),
                    )
                }),
            };
            let (settings, runtime, changed) = (self.settings.clone(), runtime.clone(), self.changed.clone());
            let task_source = source.clone();
            entry.check = Some(tokio::spawn(async move {
                let checked = match reader {
                    Ok(client) => check(&task_source, client, &settings, known, &runtime, limits).await,
                    Err(refusal) => Err(refusal),
                };
                changed.notify_one();
                checked
            }));
        }
    }

    /// The module loaded from `source` and its pinned reference, or why
    /// there is none (the last check's failure, even when a module loaded
    /// before it: the registry keeps serving that one and says why).
    pub fn get(&self, source: &OciSource) -> Result<(&Plugin, &str), Refusal> {
        let entry = self.entries.get(source);
        match entry {
            Some(Entry {
                failed: Some(refusal), ..
            }) => Err(refusal.clone()),
            Some(Entry {
                loaded: Some(loaded), ..
            }) => Ok((&loaded.plugin, &loaded.pinned)),
            _ => Err(Refusal::new(
                "ModulePulling",
                format!("{}: being pulled", source.module),
            )),
        }
    }
}

impl OciSource {
    /// The manifest digest the reference names, for a digest reference.
    fn module_digest(&self) -> Option<String> {
        oci::parse_reference(&self.module.reference)
            .ok()
            .and_then(|r| r.digest().map(str::to_owned))
    }
}

/// Takes in the result of `entry`'s check if it ended.
fn take_finished(source: &OciSource, entry: &mut Entry) {
    if !entry.check.as_ref().is_some_and(JoinHandle::is_finished) {
        return;
    }
    let Some(Some(joined)) = entry.check.take().map(FutureExt::now_or_never) else {
        return;
    };
    let checked = joined.unwrap_or_else(|e| Err(Refusal::new("RegistryUnavailable", format!("the pull failed: {e}"))));
    match checked {
        Ok(Some(loaded)) => {
            tracing::info!(module = %source.module, artifact = %loaded.pinned, digest = %loaded.plugin.digest(), "module loaded from an OCI artifact");
            entry.loaded = Some(loaded);
            entry.failed = None;
        }
        Ok(None) => entry.failed = None,
        Err(refusal) => {
            if entry.failed.as_ref() != Some(&refusal) {
                tracing::warn!(module = %source.module, reason = refusal.reason, error = %refusal.message, "module from an OCI artifact refused");
            }
            entry.failed = Some(refusal);
        }
    }
}

/// One check of `source`: credentials, the reference's digest, and, when it
/// is not `known`, its signatures verified and the module pulled and
/// compiled.
async fn check(
    source: &OciSource,
    reader: kube::Client,
    settings: &OciSettings,
    known: Option<String>,
    runtime: &Runtime,
    limits: Limits,
) -> Checked {
    let module = &source.module;
    let parsed = oci::parse_reference(&module.reference).map_err(|e| Refusal::new(e.reason(), e.to_string()))?;
    let basic = match &module.pull_secret {
        None => None,
        Some(secret) => Some(credentials(reader, secret, parsed.registry(), parsed.repository()).await?),
    };
    let access = RegistryAccess {
        basic,
        extra_roots_pem: settings.extra_roots_pem.clone(),
    };
    let refused = |e: oci::OciError| Refusal::new(e.reason(), e.to_string());
    let manifest_digest = oci::resolve(&module.reference, &access).await.map_err(refused)?;
    if known.as_deref() == Some(manifest_digest.as_str()) {
        return Ok(None);
    }
    let pinned = format!("{}/{}@{manifest_digest}", parsed.registry(), parsed.repository());
    let own_key = module.cosign_public_key.as_deref().map(registration_key).transpose()?;
    if !settings.cosign_keys.is_empty() || own_key.is_some() {
        let signatures = oci::signatures(&pinned, &manifest_digest, &access)
            .await
            .map_err(refused)?;
        let invalid = |cause| {
            refused(oci::OciError::SignatureInvalid {
                reference: pinned.clone(),
                cause: Box::new(cause),
            })
        };
        signature::verify_any(&settings.cosign_keys, &manifest_digest, &signatures).map_err(invalid)?;
        if let Some(key) = &own_key {
            signature::verify(key, &manifest_digest, &signatures).map_err(invalid)?;
        }
    }
    let pulled = oci::pull(&pinned, &access, source.sha256.as_deref())
        .await
        .map_err(refused)?;
    let plugin = runtime
        .load_off_thread(&pinned, pulled.bytes, limits)
        .await
        .map_err(compile_refusal)?;
    Ok(Some(Loaded {
        manifest_digest: pulled.manifest_digest,
        pinned,
        plugin,
    }))
}

/// The user and password of the pull Secret `secret` for a repository of
/// `registry`, read with `reader`.
async fn credentials(
    reader: kube::Client,
    secret: &SecretRef,
    registry: &str,
    repository: &str,
) -> Result<(String, String), Refusal> {
    let what = format!("pull Secret {}/{}", secret.namespace, secret.name);
    let object = Api::<Secret>::namespaced(reader, &secret.namespace)
        .get(&secret.name)
        .await
        .map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => {
                Refusal::new("PullSecretNotFound", format!("{what} does not exist"))
            }
            kube::Error::Api(status) if status.code == 403 => Refusal::new(
                "PullSecretForbidden",
                format!(
                    "{what} may not be read as the registration acts (grant its ServiceAccount get on it): {}",
                    status.message
                ),
            ),
            other => Refusal::new("PullSecretUnreadable", format!("reading {what}: {other}")),
        })?;
    let data: BTreeMap<String, Vec<u8>> = object
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    let secret_type = object.type_.unwrap_or_default();
    pull_secret::credentials_for(&secret_type, &data, registry, repository)
        .map_err(|e| Refusal::new("PullSecretInvalid", format!("{what}: {e}")))
}

/// A registration's `cosignPublicKey`, read.
fn registration_key(pem: &str) -> Result<CosignKey, Refusal> {
    CosignKey::from_pem(pem.as_bytes())
        .map_err(|e| Refusal::new("InvalidCosignKey", format!("spec.module.oci.cosignPublicKey: {e}")))
}

/// `module` checked and completed for the declaration that names it: a
/// reference that parses, a cosign key that reads, a pull Secret reference that can be read, in the
/// tenant's namespace (`tenant`, filled in when empty) or, for a cluster
/// registration, in the namespace it names.
pub fn checked_module(mut module: OciModule, tenant: Option<&Identity>) -> Result<OciModule, Refusal> {
    oci::parse_reference(&module.reference).map_err(|e| Refusal::new("InvalidReference", e.to_string()))?;
    if let Some(pem) = &module.cosign_public_key {
        registration_key(pem)?;
    }
    let Some(secret) = &mut module.pull_secret else {
        return Ok(module);
    };
    super::refs::check_namespaced(
        "spec.module.oci.pullSecret",
        &secret.name,
        &mut secret.namespace,
        tenant,
        &super::refs::RefReasons {
            invalid: "InvalidPullSecretRef",
            outside: "PullSecretOutsideNamespace",
            missing: "NoPullSecretNamespace",
        },
    )?;
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(reference: &str, secret: Option<(&str, &str)>) -> OciModule {
        OciModule {
            reference: reference.into(),
            pull_secret: secret.map(|(namespace, name)| SecretRef {
                namespace: namespace.into(),
                name: name.into(),
            }),
            cosign_public_key: None,
        }
    }

    fn tenant(namespace: &str) -> Identity {
        Identity {
            namespace: namespace.into(),
            service_account: "plugins".into(),
        }
    }

    #[test]
    fn a_tenant_pulls_only_with_a_secret_of_its_namespace() {
        let reference = "registry.example:5000/team-a/greeter:v1";
        let own = checked_module(module(reference, Some(("", "pull"))), Some(&tenant("team-a"))).unwrap();
        assert_eq!(own.pull_secret.unwrap().namespace, "team-a");
        let other = checked_module(module(reference, Some(("team-b", "pull"))), Some(&tenant("team-a")));
        assert_eq!(other.unwrap_err().reason, "PullSecretOutsideNamespace");
        assert!(checked_module(module(reference, None), Some(&tenant("team-a"))).is_ok());
    }

    #[test]
    fn a_cluster_registration_names_its_secret_namespace() {
        let reference =
            "registry.example/plugins/greeter@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let refused = checked_module(module(reference, Some(("", "pull"))), None);
        assert_eq!(refused.unwrap_err().reason, "NoPullSecretNamespace");
        assert!(checked_module(module(reference, Some(("platform", "pull"))), None).is_ok());
    }

    #[test]
    fn bad_references_are_refused_before_any_pull() {
        for (reference, secret, reason) in [
            ("registry.example/UPPER:tag", None, "InvalidReference"),
            ("registry.example/x:bad tag", None, "InvalidReference"),
            (
                "registry.example/x:v1",
                Some(("team-a", "Bad,Name")),
                "InvalidPullSecretRef",
            ),
            (
                "registry.example/x:v1",
                Some(("team_a", "pull")),
                "InvalidPullSecretRef",
            ),
        ] {
            let refusal = checked_module(module(reference, secret), None).unwrap_err();
            assert_eq!(refusal.reason, reason, "{reference} {secret:?}: {refusal:?}");
        }
    }

    #[test]
    fn a_cosign_key_that_does_not_read_is_refused_before_any_pull() {
        let mut bad = module("registry.example/x:v1", None);
        bad.cosign_public_key = Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into());
        assert_eq!(checked_module(bad, None).unwrap_err().reason, "InvalidCosignKey");
    }
}
