//! The registry: which plugin serves which parent kind, from the plugins
//! folder (each module registers itself from its `info`), and keeping one
//! running controller per registration in step with it.

mod folder;

pub use folder::PluginFolder;

use crate::controller::{KindController, Registration, Shared};
use crate::runtime::{KindRef, Limits, Runtime};
use std::collections::BTreeMap;
use std::path::Path;

/// The registrations in force and their controllers.
pub struct Registry {
    runtime: Runtime,
    shared: Shared,
    limits: Limits,
    folder: PluginFolder,
    running: BTreeMap<KindRef, KindController>,
}

impl Registry {
    /// An empty registry over the plugins folder `dir`.
    pub fn new(runtime: Runtime, shared: Shared, dir: &Path, limits: Limits) -> Self {
        Self {
            runtime,
            shared,
            limits,
            folder: PluginFolder::new(dir),
            running: BTreeMap::new(),
        }
    }

    /// Parent kinds with a running controller.
    pub fn running_kinds(&self) -> Vec<KindRef> {
        self.running.keys().cloned().collect()
    }

    /// Re-reads the folder and brings the controllers in line: new kinds
    /// start, changed modules are swapped in, removed ones stop. Kinds the
    /// API does not serve yet are retried on the next call.
    pub async fn sync(&mut self) {
        self.folder.refresh(&self.runtime, self.limits).await;
        let wanted = self.desired();
        let gone: Vec<KindRef> = self
            .running
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for kind in gone {
            if let Some(controller) = self.running.remove(&kind) {
                tracing::info!(kind = %kind, plugin = %controller.registration().name, "plugin removed; controller stopped");
                controller.stop();
            }
        }
        for (kind, registration) in wanted {
            match self.running.get(&kind) {
                Some(running) if running.registration().same_kinds(&registration) => {
                    if running.registration().plugin.digest() != registration.plugin.digest() {
                        tracing::info!(kind = %kind, plugin = %registration.name, digest = %registration.plugin.digest(), "new module swapped in");
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
                        Err(e) => tracing::warn!(plugin = %name, error = %e, "controller not started; retrying"),
                    }
                }
            }
        }
    }

    /// One registration per parent kind; when two modules claim the same
    /// kind, the first file name wins and the other is reported.
    fn desired(&self) -> BTreeMap<KindRef, Registration> {
        let mut wanted: BTreeMap<KindRef, Registration> = BTreeMap::new();
        for (file, plugin) in self.folder.plugins() {
            let info = plugin.info();
            if let Some(taken) = wanted.get(&info.parent) {
                tracing::warn!(file = %file, kind = %info.parent, by = %taken.source, "parent kind already registered; module ignored");
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
        wanted
    }
}
