//! Where the control-plane binaries live.
//!
//! `tests/control-plane build` builds etcd, kube-apiserver,
//! kube-controller-manager (and kwok when asked) into
//! `${TRELLIS_ASSETS:-$HOME/.cache/trellis/assets}/k8s-v1.34.4/`. This module
//! finds them there and fails with a message naming that command when one is
//! missing.

use std::path::{Path, PathBuf};

/// The Kubernetes version the assets are built from.
pub const KUBERNETES_VERSION: &str = "v1.34.4";

/// Environment variable overriding the asset cache root.
pub const ASSETS_ENV: &str = "TRELLIS_ASSETS";

/// Errors locating the binaries.
#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    /// Neither `TRELLIS_ASSETS` nor `HOME` is set.
    #[error("cannot locate the asset cache: neither {ASSETS_ENV} nor HOME is set")]
    NoRoot,
    /// A binary is not in the asset directory.
    #[error(
        "{name} not found at {path}: build the control plane first with \
         `tests/control-plane build{hint}` (or point {ASSETS_ENV} at a cache that has it)"
    )]
    Missing {
        /// The binary's name.
        name: &'static str,
        /// Where it was expected.
        path: PathBuf,
        /// Extra hint (e.g. ` --with-kwok`).
        hint: &'static str,
    },
}

/// The asset cache root from the environment: `TRELLIS_ASSETS`, else
/// `~/.cache/trellis/assets`. Every built tool has a versioned folder in it.
pub fn root_from_env() -> Result<PathBuf, AssetsError> {
    match std::env::var_os(ASSETS_ENV).filter(|v| !v.is_empty()) {
        Some(root) => Ok(PathBuf::from(root)),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or(AssetsError::NoRoot)?;
            Ok(Path::new(&home).join(".cache/trellis/assets"))
        }
    }
}

/// A tool `tests/go-tool` builds (`registry`, `cosign`, `promtool`, `helm`,
/// `crane`): its path in the asset cache, asked of the script itself, which
/// holds the pinned versions. Panics, naming the command to run, when it is
/// not built.
pub fn go_tool(name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../go-tool");
    let out = std::process::Command::new(&script)
        .args(["path", name])
        .output()
        .unwrap_or_else(|e| panic!("running {} path {name}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} path {name} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        path.is_file(),
        "{name} is not built at {}: build it with `tests/go-tool build {name}`",
        path.display()
    );
    path
}

/// The binaries of a control plane, as found on disk.
#[derive(Debug, Clone)]
pub struct Assets {
    dir: PathBuf,
}

impl Assets {
    /// The asset directory from the environment (`TRELLIS_ASSETS`, else
    /// `~/.cache/trellis/assets`), versioned: `.../k8s-v1.34.4`. It may not
    /// exist yet.
    pub fn from_env() -> Result<Self, AssetsError> {
        Ok(Self::in_root(root_from_env()?))
    }

    /// The versioned asset directory under a given root.
    pub fn in_root(root: impl AsRef<Path>) -> Self {
        Self {
            dir: root.as_ref().join(format!("k8s-{KUBERNETES_VERSION}")),
        }
    }

    /// The versioned directory holding the binaries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `etcd`, checked to exist.
    pub fn etcd(&self) -> Result<PathBuf, AssetsError> {
        self.binary("etcd", "")
    }

    /// Path of `kube-apiserver`, checked to exist.
    pub fn kube_apiserver(&self) -> Result<PathBuf, AssetsError> {
        self.binary("kube-apiserver", "")
    }

    /// Path of `kube-controller-manager`, checked to exist.
    pub fn kube_controller_manager(&self) -> Result<PathBuf, AssetsError> {
        self.binary("kube-controller-manager", "")
    }

    /// Path of `kube-scheduler`, checked to exist (built with `--with-kwok`).
    pub fn kube_scheduler(&self) -> Result<PathBuf, AssetsError> {
        self.binary("kube-scheduler", " --with-kwok")
    }

    /// Path of one of kwok's stage files, checked to exist.
    pub fn kwok_stage(&self, file: &str) -> Result<PathBuf, AssetsError> {
        let path = self.dir.join("kwok-stages").join(file);
        if path.is_file() {
            Ok(path)
        } else {
            Err(AssetsError::Missing {
                name: "a kwok stage file",
                path,
                hint: " --with-kwok",
            })
        }
    }

    /// Path of `kubectl`, checked to exist (built with `--with-kubectl`).
    pub fn kubectl(&self) -> Result<PathBuf, AssetsError> {
        self.binary("kubectl", " --with-kubectl")
    }

    /// Path of `kwok`, checked to exist.
    pub fn kwok(&self) -> Result<PathBuf, AssetsError> {
        self.binary("kwok", " --with-kwok")
    }

    fn binary(&self, name: &'static str, hint: &'static str) -> Result<PathBuf, AssetsError> {
        let path = self.dir.join(name);
        if path.is_file() {
            Ok(path)
        } else {
            Err(AssetsError::Missing { name, path, hint })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_names_the_build_command() {
        let dir = tempfile::tempdir().unwrap();
        let assets = Assets::in_root(dir.path());
        assert!(assets.dir().ends_with("k8s-v1.34.4"));
        let err = assets.kwok().unwrap_err().to_string();
        assert!(err.contains("tests/control-plane build --with-kwok"), "{err}");
        let err = assets.etcd().unwrap_err().to_string();
        assert!(err.contains("`tests/control-plane build`"), "{err}");
    }
}
