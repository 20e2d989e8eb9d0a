//! The registry: which plugin serves which parent kind, and one running
//! controller per registration kept in step with it.
//!
//! Registrations come from three places, brought in line on every
//! [`Registry::sync`] (the registration objects kept by watches, the folder
//! read again):
//! - `ClusterReconcilerPlugin` objects (platform admins), each naming a
//!   module and overriding kinds, config and limits (see [`declared`]);
//! - every other `*.wasm` of the folder, registered from its own `info`;
//! - `ReconcilerPlugin` objects (tenants): a module from a ConfigMap or
//!   pulled with a Secret of the tenant's namespace, serving parents of that
//!   namespace only, acting as the tenant's ServiceAccount.
//!
//! A module comes from a file of the plugins folder ([`PluginFolder`]), a
//! ConfigMap key ([`configmap`]) or an OCI artifact ([`oci`]); each source
//! keeps its modules compiled, and a sync only looks them up. What a
//! deleted registration leaves is released in [`release`]; what each
//! registration's status says is written in [`report`].
//!
//! A registration object that served carries [`REGISTRATION_FINALIZER`]:
//! when it is deleted, its controller stops, the host's finalizer comes off
//! every parent it served (without calling the plugin), and then the object
//! goes. (Chosen over a finalize-only plugin, which could keep a namespace
//! Terminating for as long as a plugin fails.)
//!
//! A parent kind has one registration cluster-wide (ClusterReconcilerPlugins
//! first, by name, then files) or else one per tenant namespace; a later
//! claim is refused and reported. When a declaration that served turns bad
//! (a corrupt new module, a pin that does not match), its last good module
//! keeps serving and the reason is shown on it.

pub mod configmap;
pub mod declared;
mod folder;
pub mod oci;
mod refs;
mod release;
mod report;
mod watched;

pub use folder::PluginFolder;

use crate::admission::Webhooks;
use crate::controller::{KindController, Registration, Shared};
use crate::crd::{ClusterReconcilerPlugin, ConfigMapModule, ReconcilerPlugin};
use crate::runtime::{KindRef, Runtime};
use configmap::ConfigMapModules;
use declared::{Declaration, ModuleRef, Refusal};
pub use declared::{Settings, TenantCeilings};
use kube::Api;
use kube::runtime::events::Recorder;
use oci::{OciModules, OciSource, Stamp};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use tokio::sync::Notify;
use watched::Watched;

/// The registry's finalizer on a registration object that served: it comes
/// off once the parents the registration served are released, so deleting a
/// registration never leaves parents (and namespaces) that cannot be deleted.
pub const REGISTRATION_FINALIZER: &str = "trellis.dev/release-parents";

/// Where a registration serves: a parent kind, cluster-wide (`None`) or in
/// one tenant namespace.
type Scope = (KindRef, Option<String>);

/// The registrations in force and their controllers.
pub struct Registry {
    runtime: Runtime,
    shared: Shared,
    /// What declarations are resolved with.
    settings: Settings,
    folder: PluginFolder,
    config_maps: ConfigMapModules,
    oci: OciModules,
    cluster_declarations: Api<ClusterReconcilerPlugin>,
    /// The registration objects, kept by watches.
    cluster_watch: Watched<ClusterReconcilerPlugin>,
    tenant_watch: Watched<ReconcilerPlugin>,
    recorder: Recorder,
    /// Notified when a registration or a module ConfigMap changes.
    changed: Arc<Notify>,
    /// The last registration that served, per declaration key.
    last_good: BTreeMap<String, Registration>,
    /// The declarations of the last sync: cluster ones, then tenants'.
    cluster_declared: Vec<Declaration>,
    tenant_declared: Vec<Declaration>,
    running: BTreeMap<Scope, KindController>,
    /// Why a registration's controller did not start (reason, message), by
    /// declaration key, or by source (`file x.wasm`) for a folder plugin.
    start_errors: BTreeMap<String, (&'static str, String)>,
    /// Why folder plugins are not served, by source, as last logged: they
    /// have no object to show it on, so each change is logged once.
    folder_reported: BTreeMap<String, Refusal>,
    /// The admission webhooks of the registrations served, if the host
    /// serves admission.
    webhooks: Option<Webhooks>,
    /// Sharded: whether this replica does the cluster-scoped work now
    /// (registrations' status and finalizers, webhook configurations); it
    /// always does when `None`.
    cluster_work: Option<tokio::sync::watch::Receiver<bool>>,
}

impl Drop for Registry {
    /// The controllers stop with the registry: the webhook server stops
    /// answering for them at once.
    fn drop(&mut self) {
        if let Some(webhooks) = &self.webhooks {
            webhooks.forget_targets();
        }
    }
}

impl Registry {
    /// An empty registry over the plugins `folder` (not read yet), resolving
    /// registrations with `settings`.
    pub fn new(runtime: Runtime, shared: Shared, folder: PluginFolder, settings: Settings) -> Self {
        let client = shared.client.clone();
        let tenant_declarations = match &shared.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        };
        let changed = Arc::new(Notify::new());
        Self {
            cluster_declarations: Api::all(client.clone()),
            cluster_watch: Watched::start(Api::all(client.clone()), changed.clone()),
            tenant_watch: Watched::start(tenant_declarations, changed.clone()),
            config_maps: ConfigMapModules::new(client.clone(), changed.clone()),
            oci: OciModules::new(settings.oci.clone(), changed.clone()),
            changed,
            recorder: Recorder::new(client, shared.reporter.clone()),
            last_good: BTreeMap::new(),
            settings,
            runtime,
            shared,
            folder,
            cluster_declared: Vec::new(),
            tenant_declared: Vec::new(),
            running: BTreeMap::new(),
            start_errors: BTreeMap::new(),
            folder_reported: BTreeMap::new(),
            webhooks: None,
            cluster_work: None,
        }
    }

    /// Does the cluster-scoped work (registrations' status and finalizers,
    /// webhook configurations) only while `holder` says so: with sharding,
    /// every replica runs controllers, one does the rest.
    pub fn cluster_work_while(&mut self, holder: tokio::sync::watch::Receiver<bool>) {
        self.cluster_work = Some(holder);
    }

    /// Keeps admission webhooks for the registrations whose plugins ask.
    pub fn serve_admission(&mut self, webhooks: Webhooks) {
        self.webhooks = Some(webhooks);
    }

    /// Stops every controller gracefully (see [`KindController::shut_down`]),
    /// all at once, for at most `within`.
    pub async fn shut_down(&mut self, within: std::time::Duration) {
        let running = std::mem::take(&mut self.running);
        futures::future::join_all(running.into_values().map(|c| c.shut_down(within))).await;
    }

    /// Notified whenever a registration object or a module ConfigMap
    /// changes: time to [`Registry::sync`] again.
    pub fn changes(&self) -> Arc<Notify> {
        self.changed.clone()
    }

    /// Parent kinds with a running controller.
    pub fn running_kinds(&self) -> Vec<KindRef> {
        self.running.keys().map(|(kind, _)| kind.clone()).collect()
    }

    /// Re-reads the folder and the watched registration objects and brings the
    /// controllers in line: new registrations start, changed modules are
    /// swapped in, removed ones stop. Kinds the API does not serve yet are
    /// retried on the next call. Then reports each declaration's state.
    pub async fn sync(&mut self) {
        self.folder.refresh(&self.runtime, self.settings.limits).await;
        self.cluster_declared = self.cluster_watch.declarations().await;
        self.tenant_declared = self.tenant_watch.declarations().await;
        let modules: BTreeSet<ConfigMapModule> = self
            .declarations()
            .filter_map(|d| match declared::module_ref(d) {
                Ok(ModuleRef::ConfigMap(m)) => Some(m),
                _ => None,
            })
            .collect();
        self.config_maps
            .refresh(&modules, &self.runtime, self.settings.limits)
            .await;
        let mut artifacts: BTreeMap<OciSource, Stamp> = BTreeMap::new();
        for declaration in self.declarations() {
            if let Ok(ModuleRef::Oci(module)) = declared::module_ref(declaration) {
                let source = self.oci_source(declaration, module);
                artifacts
                    .entry(source)
                    .or_default()
                    .insert((declaration.key.clone(), declaration.generation));
            }
        }
        self.oci
            .refresh(artifacts, &self.shared, &self.runtime, self.settings.limits);
        let (wanted, mut refused, folder_refused) = self.desired();
        self.reconcile_controllers(wanted).await;
        if self.cluster_work.as_ref().is_none_or(|holder| *holder.borrow()) {
            if let Some(webhooks) = &mut self.webhooks {
                webhooks.sync(self.running.values()).await;
            }
            self.release_deleted(&mut refused).await;
            self.report(refused).await;
        }
        self.report_folder(folder_refused);
        let (hits, misses) = self.runtime.module_cache_stats();
        self.shared.metrics.module_cache(hits, misses);
    }

    /// Every declaration: cluster ones first, each list sorted by key.
    fn declarations(&self) -> impl Iterator<Item = &Declaration> {
        self.cluster_declared.iter().chain(&self.tenant_declared)
    }

    /// The artifact a declaration's `module` (an OCI one) is pulled as.
    fn oci_source(&self, declaration: &Declaration, module: crate::crd::OciModule) -> OciSource {
        OciSource {
            module,
            reader: declared::identity_of(declaration, &self.settings.accounts),
            sha256: declaration.spec.module.sha256.clone(),
        }
    }

    /// The registration a declaration asks for, or why not; a declaration
    /// that served before keeps its last good registration.
    fn registration_of(
        &mut self,
        declaration: &Declaration,
        refused: &mut BTreeMap<String, Refusal>,
    ) -> Option<Registration> {
        if declaration.deleting {
            // Its parents are released (see `release_deleted`), not served.
            return None;
        }
        let resolved = declared::module_ref(declaration).and_then(|origin| {
            let (plugin, artifact) = match &origin {
                ModuleRef::File(file) => (declared::file_module(&self.folder, file), None),
                ModuleRef::ConfigMap(module) => (self.config_maps.get(module), None),
                ModuleRef::Oci(module) => match self.oci.get(&self.oci_source(declaration, module.clone())) {
                    Ok((plugin, pinned)) => (Ok(plugin), Some(pinned.to_owned())),
                    Err(refusal) => (Err(refusal), None),
                },
            };
            let mut registration = declared::resolve(declaration, plugin, &origin, &self.settings)?;
            registration.artifact = artifact;
            Ok(registration)
        });
        match resolved {
            Ok(registration) => {
                self.last_good.insert(declaration.key.clone(), registration.clone());
                Some(registration)
            }
            Err(mut refusal) => {
                let previous = self.last_good.get(&declaration.key).cloned();
                if let Some(previous) = &previous {
                    // Keep serving what served before the bad change.
                    refusal.message = format!(
                        "{}; still serving the previous module (sha256 {})",
                        refusal.message,
                        previous.plugin.digest()
                    );
                }
                refused.insert(declaration.key.clone(), refusal);
                previous
            }
        }
    }

    /// One registration per scope, the refused declarations, and the
    /// refused folder plugins (by source).
    #[allow(clippy::type_complexity)]
    fn desired(
        &mut self,
    ) -> (
        BTreeMap<Scope, Registration>,
        BTreeMap<String, Refusal>,
        BTreeMap<String, Refusal>,
    ) {
        let mut wanted: BTreeMap<Scope, Registration> = BTreeMap::new();
        let mut refused = BTreeMap::new();
        let mut folder_refused = BTreeMap::new();
        let claimed: BTreeSet<String> = self.cluster_declared.iter().filter_map(declared::module_file).collect();
        let keys: BTreeSet<String> = self.declarations().map(|d| d.key.clone()).collect();
        self.last_good.retain(|key, _| keys.contains(key));

        // Taken out for the loop (registration_of borrows self mutably), put back after.
        let cluster = std::mem::take(&mut self.cluster_declared);
        for declaration in &cluster {
            let Some(registration) = self.registration_of(declaration, &mut refused) else {
                continue;
            };
            let scope = (registration.parent.clone(), None);
            if let Some(taken) = wanted.get(&scope) {
                let message = format!("{} is already served by {}", registration.parent, taken.source);
                refused.insert(declaration.key.clone(), Refusal::new("ParentKindTaken", message));
            } else {
                wanted.insert(scope, registration);
            }
        }
        for (file, plugin) in self.folder.plugins() {
            if claimed.contains(file) {
                continue;
            }
            let info = plugin.info();
            if let Err(refusal) = declared::folder_parent_allowed(&info.parent) {
                folder_refused.insert(format!("file {file}"), refusal);
                continue;
            }
            let scope = (info.parent.clone(), None);
            if let Some(taken) = wanted.get(&scope) {
                tracing::debug!(file = %file, kind = %info.parent, by = %taken.source, "parent kind already registered; module ignored");
                continue;
            }
            wanted.insert(
                scope,
                Registration {
                    name: info.name.clone(),
                    source: format!("file {file}"),
                    plugin: plugin.clone(),
                    artifact: None,
                    parent: info.parent.clone(),
                    children: info.children.clone(),
                    related: info.related.clone(),
                    config: None,
                    finalizer: info.finalizer,
                    declaration: None,
                    identity: self.settings.accounts.for_plugin(&info.name),
                    tenant_namespace: None,
                    max_concurrent_reconciles: None,
                    failure_policy: crate::crd::FailurePolicy::Fail,
                },
            );
        }
        self.cluster_declared = cluster;
        let tenants = std::mem::take(&mut self.tenant_declared);
        for declaration in &tenants {
            let Some(registration) = self.registration_of(declaration, &mut refused) else {
                continue;
            };
            let namespace = registration.tenant_namespace.clone();
            let taken = wanted
                .get(&(registration.parent.clone(), None))
                .or_else(|| wanted.get(&(registration.parent.clone(), namespace.clone())));
            if let Some(taken) = taken {
                let message = format!("{} is already served here by {}", registration.parent, taken.source);
                refused.insert(declaration.key.clone(), Refusal::new("ParentKindTaken", message));
            } else {
                wanted.insert((registration.parent.clone(), namespace), registration);
            }
        }
        self.tenant_declared = tenants;
        (wanted, refused, folder_refused)
    }

    async fn reconcile_controllers(&mut self, wanted: BTreeMap<Scope, Registration>) {
        let gone: Vec<Scope> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for scope in gone {
            if let Some(controller) = self.running.remove(&scope) {
                tracing::info!(kind = %scope.0, namespace = ?scope.1, plugin = %controller.registration().name, "registration removed; controller stopped");
                controller.stop();
            }
        }
        self.start_errors.clear();
        for (scope, registration) in wanted {
            match self.running.get(&scope) {
                Some(running) if running.registration().same_kinds(&registration) => {
                    let current = running.registration();
                    if current.plugin.digest() != registration.plugin.digest()
                        || current.config != registration.config
                        || current.plugin.limits() != registration.plugin.limits()
                        || current.failure_policy != registration.failure_policy
                        || current.artifact != registration.artifact
                    {
                        tracing::info!(kind = %scope.0, plugin = %registration.name, digest = %registration.plugin.digest(), "new module or settings swapped in");
                        running.update(registration);
                    }
                }
                _ => {
                    if let Some(old) = self.running.remove(&scope) {
                        old.stop();
                    }
                    let name = registration.name.clone();
                    let key = registration
                        .declaration
                        .clone()
                        .unwrap_or_else(|| registration.source.clone());
                    match KindController::start(self.shared.clone(), registration).await {
                        Ok(controller) => {
                            self.running.insert(scope, controller);
                        }
                        Err(e) => {
                            tracing::debug!(plugin = %name, error = %e, "controller not started; retrying");
                            self.start_errors.insert(key, (e.reason(), e.to_string()));
                        }
                    }
                }
            }
        }
    }
}
