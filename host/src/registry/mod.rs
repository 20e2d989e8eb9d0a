//! The registry: which plugin serves which parent kind, and one running
//! controller per registration kept in step with it.
//!
//! Registrations come from two places, read again on every [`Registry::sync`]:
//! - `ReconcilerPlugin` objects, each naming a module (a file of the plugins
//!   folder or a ConfigMap key) and overriding kinds, config and limits (see
//!   [`declared`]);
//! - every other `*.wasm` of the folder, registered from its own `info`.
//!
//! A parent kind has one registration: `ReconcilerPlugin`s first (by name),
//! then files (by name); a later claim is refused and reported. When a
//! `ReconcilerPlugin` that served turns bad (a corrupt new module, a pin that
//! does not match), its last good module keeps serving and the reason is
//! shown on it.

pub mod configmap;
pub mod declared;
mod folder;
mod report;

pub use folder::PluginFolder;

use crate::controller::{KindController, Registration, Shared};
use crate::crd::{ConfigMapModule, ReconcilerPlugin};
use crate::runtime::{KindRef, Limits, Runtime};
use configmap::ConfigMapModules;
use declared::{ModuleRef, Refusal};
use kube::Api;
use kube::runtime::events::Recorder;
use report::Readiness;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The registrations in force and their controllers.
pub struct Registry {
    runtime: Runtime,
    shared: Shared,
    limits: Limits,
    folder: PluginFolder,
    config_maps: ConfigMapModules,
    declarations: Api<ReconcilerPlugin>,
    recorder: Recorder,
    /// The last registration that served, per `ReconcilerPlugin`.
    last_good: BTreeMap<String, Registration>,
    /// The last list of `ReconcilerPlugin`s read (kept when a read fails).
    declared: Vec<ReconcilerPlugin>,
    /// Whether the `ReconcilerPlugin` CRD is missing (reported once).
    crd_missing: bool,
    running: BTreeMap<KindRef, KindController>,
    /// Why a registration's controller did not start, by registration name.
    start_errors: BTreeMap<String, String>,
}

impl Registry {
    /// An empty registry over the plugins folder `dir`.
    pub fn new(runtime: Runtime, shared: Shared, dir: &Path, limits: Limits) -> Self {
        Self {
            declarations: Api::all(shared.client.clone()),
            config_maps: ConfigMapModules::new(shared.client.clone()),
            recorder: Recorder::new(shared.client.clone(), shared.reporter.clone()),
            last_good: BTreeMap::new(),
            runtime,
            shared,
            limits,
            folder: PluginFolder::new(dir),
            declared: Vec::new(),
            crd_missing: false,
            running: BTreeMap::new(),
            start_errors: BTreeMap::new(),
        }
    }

    /// Parent kinds with a running controller.
    pub fn running_kinds(&self) -> Vec<KindRef> {
        self.running.keys().cloned().collect()
    }

    /// Re-reads the folder and the `ReconcilerPlugin`s and brings the
    /// controllers in line: new kinds start, changed modules are swapped in,
    /// removed ones stop. Kinds the API does not serve yet are retried on
    /// the next call. Then reports each `ReconcilerPlugin`'s state.
    pub async fn sync(&mut self) {
        self.folder.refresh(&self.runtime, self.limits).await;
        self.read_declarations().await;
        let modules: BTreeSet<ConfigMapModule> = self
            .declared
            .iter()
            .filter_map(|o| match declared::module_ref(o) {
                Ok(ModuleRef::ConfigMap(m)) => Some(m.clone()),
                _ => None,
            })
            .collect();
        self.config_maps.refresh(&modules, &self.runtime, self.limits).await;
        let (wanted, refused) = self.desired();
        self.reconcile_controllers(wanted).await;
        self.report(refused).await;
        let (hits, misses) = self.runtime.module_cache_stats();
        self.shared.metrics.module_cache(hits, misses);
    }

    async fn read_declarations(&mut self) {
        match self.declarations.list(&Default::default()).await {
            Ok(list) => {
                self.crd_missing = false;
                self.declared = list.items;
                self.declared.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if !self.crd_missing {
                    tracing::info!("the ReconcilerPlugin CRD is not installed: serving the plugins folder only");
                }
                self.crd_missing = true;
                self.declared.clear();
            }
            Err(e) => tracing::warn!(error = %e, "cannot list ReconcilerPlugins; keeping the last known"),
        }
    }

    /// One registration per parent kind, and the refused declarations.
    fn desired(&mut self) -> (BTreeMap<KindRef, Registration>, BTreeMap<String, Refusal>) {
        let mut wanted: BTreeMap<KindRef, Registration> = BTreeMap::new();
        let mut refused = BTreeMap::new();
        let claimed: BTreeSet<String> = self
            .declared
            .iter()
            .filter_map(declared::module_file)
            .map(str::to_owned)
            .collect();
        let names: BTreeSet<String> = self.declared.iter().filter_map(|o| o.metadata.name.clone()).collect();
        self.last_good.retain(|name, _| names.contains(name));
        for object in &self.declared {
            let name = object.metadata.name.clone().unwrap_or_default();
            let resolved = declared::module_ref(object).and_then(|origin| {
                let plugin = match origin {
                    ModuleRef::File(file) => declared::file_module(&self.folder, file),
                    ModuleRef::ConfigMap(module) => self.config_maps.get(module),
                };
                declared::resolve(object, plugin, origin, self.limits)
            });
            let registration = match resolved {
                Ok(registration) => {
                    self.last_good.insert(name.clone(), registration.clone());
                    registration
                }
                Err(mut refusal) => {
                    // Keep serving what served before the bad change.
                    let Some(previous) = self.last_good.get(&name) else {
                        refused.insert(name, refusal);
                        continue;
                    };
                    refusal.message = format!(
                        "{}; still serving the previous module (sha256 {})",
                        refusal.message,
                        previous.plugin.digest()
                    );
                    refused.insert(name.clone(), refusal);
                    previous.clone()
                }
            };
            if let Some(taken) = wanted.get(&registration.parent) {
                let message = format!("{} is already served by {}", registration.parent, taken.source);
                refused.insert(
                    name,
                    Refusal {
                        reason: "ParentKindTaken",
                        message,
                    },
                );
            } else {
                wanted.insert(registration.parent.clone(), registration);
            }
        }
        for (file, plugin) in self.folder.plugins() {
            if claimed.contains(file) {
                continue;
            }
            let info = plugin.info();
            if let Some(taken) = wanted.get(&info.parent) {
                tracing::debug!(file = %file, kind = %info.parent, by = %taken.source, "parent kind already registered; module ignored");
                continue;
            }
            wanted.insert(
                info.parent.clone(),
                Registration {
                    name: info.name.clone(),
                    source: format!("file {file}"),
                    plugin: plugin.clone(),
                    parent: info.parent.clone(),
                    children: info.children.clone(),
                    related: info.related.clone(),
                    config: None,
                    finalizer: info.finalizer,
                },
            );
        }
        (wanted, refused)
    }

    async fn reconcile_controllers(&mut self, wanted: BTreeMap<KindRef, Registration>) {
        let gone: Vec<KindRef> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for kind in gone {
            if let Some(controller) = self.running.remove(&kind) {
                tracing::info!(kind = %kind, plugin = %controller.registration().name, "registration removed; controller stopped");
                controller.stop();
            }
        }
        self.start_errors.clear();
        for (kind, registration) in wanted {
            match self.running.get(&kind) {
                Some(running) if running.registration().same_kinds(&registration) => {
                    let current = running.registration();
                    if current.plugin.digest() != registration.plugin.digest()
                        || current.config != registration.config
                        || current.plugin.limits() != registration.plugin.limits()
                    {
                        tracing::info!(kind = %kind, plugin = %registration.name, digest = %registration.plugin.digest(), "new module or settings swapped in");
                        running.update(registration);
                    }
                }
                _ => {
                    if let Some(old) = self.running.remove(&kind) {
                        old.stop();
                    }
                    let name = registration.name.clone();
                    match KindController::start(self.shared.clone(), registration).await {
                        Ok(controller) => {
                            self.running.insert(kind, controller);
                        }
                        Err(e) => {
                            tracing::warn!(plugin = %name, error = %e, "controller not started; retrying");
                            self.start_errors.insert(name, e.to_string());
                        }
                    }
                }
            }
        }
    }

    /// Writes each `ReconcilerPlugin`'s `Ready` condition where it changed.
    async fn report(&self, refused: BTreeMap<String, Refusal>) {
        for object in &self.declared {
            let name = object.metadata.name.clone().unwrap_or_default();
            let serving = self
                .running
                .values()
                .map(KindController::registration)
                .find(|r| r.name == name);
            let (digest, plugin) = match &serving {
                Some(r) => (
                    Some(r.plugin.digest().to_owned()),
                    Some(format!("{} {}", r.plugin.info().name, r.plugin.info().version)),
                ),
                None => (None, None),
            };
            let (ready, reason, message) = if let Some(refusal) = refused.get(&name) {
                (false, refusal.reason.to_owned(), refusal.message.clone())
            } else if let Some(error) = self.start_errors.get(&name) {
                (false, "ControllerNotStarted".to_owned(), error.clone())
            } else if let Some(registration) = &serving {
                let message = format!("reconciling {} with {}", registration.parent, registration.source);
                (true, "Serving".to_owned(), message)
            } else {
                continue;
            };
            let readiness = Readiness {
                ready,
                reason,
                message,
                digest,
                plugin,
            };
            if report::write_status(&self.declarations, object, &readiness).await {
                report::publish_event(&self.recorder, object, &readiness).await;
            }
        }
    }
}
