//! Modules that live in ConfigMaps (`spec.module.configMap` of a
//! `ReconcilerPlugin`): each referenced ConfigMap is watched on its own
//! (field selector on its name), and its module is decoded (gzip allowed),
//! compiled and kept until the ConfigMap's `resourceVersion` changes.

use super::declared::Refusal;
use crate::crd::ConfigMapModule;
use crate::runtime::{Limits, Plugin, Runtime, RuntimeError};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The largest module accepted, after decompression.
pub use crate::runtime::MAX_MODULE_BYTES;
/// How long a new watch may take to list its ConfigMap.
const FIRST_LIST: Duration = Duration::from_secs(5);

/// The module bytes inside a ConfigMap value: plain WebAssembly, or gzip of it.
pub fn decode_module(bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
    let module = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .take(MAX_MODULE_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| refusal("ModuleInvalid", format!("the gzip stream is broken: {e}")))?;
        out
    } else {
        bytes.to_vec()
    };
    if module.len() > MAX_MODULE_BYTES {
        return Err(refusal(
            "ModuleTooLarge",
            format!("the module exceeds {} MiB", MAX_MODULE_BYTES >> 20),
        ));
    }
    if !module.starts_with(b"\0asm") {
        return Err(refusal(
            "ModuleInvalid",
            "not a WebAssembly module (nor gzip of one)".to_string(),
        ));
    }
    Ok(module)
}

fn refusal(reason: &'static str, message: String) -> Refusal {
    Refusal { reason, message }
}

/// One watched ConfigMap.
struct Watched {
    store: Store<ConfigMap>,
    task: JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A module loaded from one ConfigMap key, at one resourceVersion.
struct Loaded {
    resource_version: Option<String>,
    plugin: Result<Plugin, Refusal>,
}

/// The ConfigMap modules the registrations refer to.
pub struct ConfigMapModules {
    client: kube::Client,
    /// Notified on every change of a watched ConfigMap.
    changed: Arc<Notify>,
    watched: BTreeMap<(String, String), Watched>,
    loaded: BTreeMap<ConfigMapModule, Loaded>,
}

impl ConfigMapModules {
    /// None watched yet; every change of one watched later notifies `changed`.
    pub fn new(client: kube::Client, changed: Arc<Notify>) -> Self {
        Self {
            client,
            changed,
            watched: BTreeMap::new(),
            loaded: BTreeMap::new(),
        }
    }

    /// Watches exactly the ConfigMaps of `wanted` and (re)loads the modules
    /// whose ConfigMap changed.
    pub async fn refresh(&mut self, wanted: &BTreeSet<ConfigMapModule>, runtime: &Runtime, limits: Limits) {
        let maps: BTreeSet<(String, String)> = wanted.iter().map(|m| (m.namespace.clone(), m.name.clone())).collect();
        self.watched.retain(|key, _| maps.contains(key));
        self.loaded.retain(|module, _| wanted.contains(module));
        for (namespace, name) in maps {
            if !self.watched.contains_key(&(namespace.clone(), name.clone())) {
                let watched = self.watch(&namespace, &name);
                let _ = tokio::time::timeout(FIRST_LIST, watched.store.wait_until_ready()).await;
                self.watched.insert((namespace, name), watched);
            }
        }
        for module in wanted {
            let config_map = self
                .watched
                .get(&(module.namespace.clone(), module.name.clone()))
                .and_then(|w| w.store.get(&ObjectRef::new(&module.name).within(&module.namespace)));
            let resource_version = config_map.as_ref().and_then(|c| c.metadata.resource_version.clone());
            if let Some(loaded) = self.loaded.get(module)
                && loaded.resource_version == resource_version
                && resource_version.is_some()
            {
                continue;
            }
            let plugin = match config_map {
                None => Err(refusal("ModuleNotFound", format!("{module}: no such ConfigMap"))),
                Some(config_map) => load(runtime, module, &config_map, limits).await,
            };
            match &plugin {
                Ok(p) => {
                    tracing::info!(module = %module, plugin = %p.info().name, digest = %p.digest(), "module loaded from a ConfigMap")
                }
                Err(r) => {
                    tracing::warn!(module = %module, reason = r.reason, error = %r.message, "module from a ConfigMap refused")
                }
            }
            self.loaded.insert(
                module.clone(),
                Loaded {
                    resource_version,
                    plugin,
                },
            );
        }
    }

    /// The module loaded from `module`, or why there is none.
    pub fn get(&self, module: &ConfigMapModule) -> Result<&Plugin, Refusal> {
        match self.loaded.get(module) {
            Some(loaded) => loaded.plugin.as_ref().map_err(Clone::clone),
            None => Err(refusal("ModuleNotFound", format!("{module}: not read yet"))),
        }
    }

    fn watch(&self, namespace: &str, name: &str) -> Watched {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        let writer = reflector::store::Writer::default();
        let store = writer.as_reader();
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff()).applied_objects();
        let what = format!("{namespace}/{name}");
        let changed = self.changed.clone();
        let task = tokio::spawn(async move {
            stream
                .for_each(|event| {
                    match event {
                        Ok(_) => changed.notify_one(),
                        Err(e) => tracing::debug!(config_map = %what, error = %e, "watch of a module ConfigMap"),
                    }
                    std::future::ready(())
                })
                .await;
        });
        Watched { store, task }
    }
}

async fn load(
    runtime: &Runtime,
    module: &ConfigMapModule,
    config_map: &ConfigMap,
    limits: Limits,
) -> Result<Plugin, Refusal> {
    let bytes = config_map
        .binary_data
        .as_ref()
        .and_then(|d| d.get(&module.key))
        .ok_or_else(|| refusal("ModuleNotFound", format!("{module}: no such key in binaryData")))?;
    let bytes = decode_module(&bytes.0).map_err(|r| refusal(r.reason, format!("{module}: {}", r.message)))?;
    runtime
        .load_off_thread(&module.to_string(), bytes, limits)
        .await
        .map_err(compile_refusal)
}

/// Why a module that was fetched does not load (it does not compile, or
/// not in time).
pub(super) fn compile_refusal(e: RuntimeError) -> Refusal {
    let reason = match e {
        RuntimeError::CompileTimeout { .. } => "CompileTimeout",
        _ => "ModuleInvalid",
    };
    refusal(reason, e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn modules_may_be_plain_or_gzip() {
        let module = b"\0asm\x0d\0\x01\0rest".to_vec();
        assert_eq!(decode_module(&module).unwrap(), module);
        assert_eq!(decode_module(&gzip(&module)).unwrap(), module);
    }

    #[test]
    fn other_bytes_are_refused_with_a_reason() {
        assert_eq!(decode_module(b"hello").unwrap_err().reason, "ModuleInvalid");
        assert_eq!(decode_module(&gzip(b"hello")).unwrap_err().reason, "ModuleInvalid");
        assert_eq!(
            decode_module(&[0x1f, 0x8b, 1, 2, 3]).unwrap_err().reason,
            "ModuleInvalid"
        );
        let bomb = gzip(&vec![0u8; MAX_MODULE_BYTES + 10]);
        assert!(bomb.len() < 100_000);
        assert_eq!(decode_module(&bomb).unwrap_err().reason, "ModuleTooLarge");
    }
}
