//! sigstore's cosign for tests, built by `tests/go-tool build cosign` from the Go
//! module proxy into `${TRELLIS_ASSETS:-~/.cache/trellis/assets}/cosign-v2.6.5/`.
//! Generates key pairs and signs artifacts of a test [`Registry`] the way a
//! publisher does offline: `cosign sign --key` with no transparency log,
//! which stores the signature as the `sha256-<hex>.sig` manifest beside the
//! artifact.

use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::registry::{REGISTRY_PASSWORD, REGISTRY_USER, Registry};

/// The cosign release built.
pub const COSIGN_VERSION: &str = "v2.6.5";

/// Errors running cosign.
#[derive(Debug, thiserror::Error)]
pub enum CosignError {
    /// The binary is not built.
    #[error("cosign is not at {0}: build it with `tests/go-tool build cosign`")]
    Missing(PathBuf),
    /// The asset cache cannot be located.
    #[error(transparent)]
    Assets(#[from] crate::assets::AssetsError),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// cosign could not be run, or failed.
    #[error("cosign {args}: {outcome}")]
    Failed {
        /// Its arguments.
        args: String,
        /// How it ended, with its output.
        outcome: String,
    },
}

/// A cosign key pair in a folder of its own (removed on drop), its private
/// key encrypted with the empty password.
#[derive(Debug)]
pub struct KeyPair {
    dir: tempfile::TempDir,
}

impl KeyPair {
    /// Generates one with `cosign generate-key-pair`.
    pub fn generate() -> Result<Self, CosignError> {
        let dir = tempfile::Builder::new()
            .prefix("trellis-cosign-")
            .tempdir()
            .map_err(|source| CosignError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        run(dir.path(), &[], &["generate-key-pair"])?;
        Ok(Self { dir })
    }

    /// The public key's PEM file (`cosign.pub`).
    pub fn public_key(&self) -> PathBuf {
        self.dir.path().join("cosign.pub")
    }

    /// The public key's PEM.
    pub fn public_key_pem(&self) -> String {
        std::fs::read_to_string(self.public_key()).expect("cosign wrote cosign.pub")
    }

    /// Signs `pinned` (`registry/repository@sha256:…` of `registry`) with
    /// this key, pushing the signature to the registry, with no
    /// transparency log upload.
    pub fn sign(&self, registry: &Registry, pinned: &str) -> Result<(), CosignError> {
        // cosign reads registry credentials from a Docker config, and roots
        // of trust from SSL_CERT_FILE.
        let docker_config = self.dir.path().join("docker");
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{REGISTRY_USER}:{REGISTRY_PASSWORD}"));
        let config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.host());
        std::fs::create_dir_all(&docker_config)
            .and_then(|()| std::fs::write(docker_config.join("config.json"), config))
            .map_err(|source| CosignError::Write {
                path: docker_config.clone(),
                source,
            })?;
        let env = [
            ("DOCKER_CONFIG", docker_config.display().to_string()),
            ("SSL_CERT_FILE", registry.ca_cert().display().to_string()),
        ];
        let key = self.dir.path().join("cosign.key").display().to_string();
        run(
            self.dir.path(),
            &env,
            &["sign", "--key", &key, "--tlog-upload=false", "--yes", pinned],
        )
    }
}

/// Path of the binary in the asset cache (built or not).
pub fn binary() -> Result<PathBuf, CosignError> {
    Ok(crate::assets::root_from_env()?
        .join(format!("cosign-{COSIGN_VERSION}"))
        .join("cosign"))
}

fn run(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Result<(), CosignError> {
    let binary = binary()?;
    if !binary.is_file() {
        return Err(CosignError::Missing(binary));
    }
    let failed = |outcome: String| CosignError::Failed {
        args: args.join(" "),
        outcome,
    };
    let output = Command::new(&binary)
        .args(args)
        .current_dir(dir)
        // The private key's password: empty.
        .env("COSIGN_PASSWORD", "")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(failed(format!(
            "{}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )))
    }
}
