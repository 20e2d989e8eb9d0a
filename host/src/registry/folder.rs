//! The plugins folder: every `*.wasm` in it is a plugin. The folder is
//! polled, so adding, replacing or removing a file takes effect while the
//! host runs (polling also sees ConfigMap volumes' symlink swaps). Files
//! the host was told to leave alone (`--disable-plugin`) are treated as if
//! they were not there.

use crate::runtime::{Limits, Plugin, Runtime, RuntimeError, check_module_size};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// What identifies a file's content without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// The loaded state of the plugins folder.
pub struct PluginFolder {
    dir: PathBuf,
    /// File names (`NAME.wasm`) never loaded.
    disabled: BTreeSet<String>,
    files: BTreeMap<String, (Stamp, Result<Plugin, String>)>,
}

impl PluginFolder {
    /// A folder not read yet, whose plugins named in `disabled` (file
    /// names without `.wasm`) are never loaded.
    pub fn new(dir: &Path, disabled: &BTreeSet<String>) -> Self {
        Self {
            dir: dir.to_owned(),
            disabled: disabled.iter().map(|name| format!("{name}.wasm")).collect(),
            files: BTreeMap::new(),
        }
    }

    /// Reads the folder again, loading new and changed modules. Returns
    /// whether anything changed.
    pub async fn refresh(&mut self, runtime: &Runtime, limits: Limits) -> bool {
        let mut seen = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                    continue;
                };
                if !name.ends_with(".wasm") || name.starts_with('.') || self.disabled.contains(&name) {
                    continue;
                }
                // Follow symlinks (ConfigMap volumes are made of them).
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                seen.insert(
                    name,
                    (
                        path,
                        Stamp {
                            len: meta.len(),
                            modified: meta.modified().ok(),
                        },
                    ),
                );
            }
        }
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|name, _| seen.contains_key(name));
        if self.files.len() != before {
            changed = true;
        }
        for (name, (path, stamp)) in seen {
            if self.files.get(&name).is_some_and(|(known, _)| *known == stamp) {
                continue;
            }
            let loaded = load(runtime, &path, &name, stamp.len, limits).await;
            match &loaded {
                Ok(plugin) => {
                    tracing::info!(file = %name, plugin = %plugin.info().name, digest = %plugin.digest(), "plugin loaded")
                }
                Err(e) => tracing::warn!(file = %name, error = %e, "plugin refused"),
            }
            self.files.insert(name, (stamp, loaded));
            changed = true;
        }
        changed
    }

    /// The modules that loaded, by file name.
    pub fn plugins(&self) -> impl Iterator<Item = (&str, &Plugin)> {
        self.files
            .iter()
            .filter_map(|(name, (_, loaded))| loaded.as_ref().ok().map(|p| (name.as_str(), p)))
    }

    /// Whether `file` is in the folder (loaded or refused).
    pub fn contains(&self, file: &str) -> bool {
        self.files.contains_key(file)
    }

    /// The module in `file`, or why it is not there.
    pub fn get(&self, file: &str) -> Result<&Plugin, String> {
        match self.files.get(file) {
            Some((_, Ok(plugin))) => Ok(plugin),
            Some((_, Err(reason))) => Err(reason.clone()),
            None => Err(format!("no file {file} in the plugins folder {}", self.dir.display())),
        }
    }
}

async fn load(runtime: &Runtime, path: &Path, name: &str, size: u64, limits: Limits) -> Result<Plugin, String> {
    // Not read at all when too large.
    check_module_size(name, size).map_err(|e| e.to_string())?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    runtime
        .load_off_thread(name, bytes, limits)
        .await
        .map_err(|e: RuntimeError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{MAX_MODULE_BYTES, RuntimeConfig};

    #[tokio::test]
    async fn a_file_over_the_size_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        // Sparse: large, yet nothing to read.
        let file = std::fs::File::create(dir.path().join("huge.wasm")).unwrap();
        file.set_len(MAX_MODULE_BYTES as u64 + 1).unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 2,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let mut folder = PluginFolder::new(dir.path(), &BTreeSet::new());
        assert!(folder.refresh(&runtime, Limits::default()).await);
        let refused = folder.get("huge.wasm").unwrap_err();
        assert!(refused.contains("more than the limit of 33554432"), "{refused}");
    }

    #[tokio::test]
    async fn a_disabled_plugin_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        // Neither file is a module: the enabled one is refused, the disabled
        // one is not even looked at.
        std::fs::write(dir.path().join("kept.wasm"), b"not wasm").unwrap();
        std::fs::write(dir.path().join("skipped.wasm"), b"not wasm").unwrap();
        let runtime = Runtime::new(RuntimeConfig {
            max_instances: 2,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let disabled = BTreeSet::from(["skipped".to_owned()]);
        let mut folder = PluginFolder::new(dir.path(), &disabled);
        assert!(folder.refresh(&runtime, Limits::default()).await);
        assert!(folder.contains("kept.wasm"));
        assert!(!folder.contains("skipped.wasm"));
        assert!(folder.get("skipped.wasm").unwrap_err().contains("no file skipped.wasm"));
    }
}
