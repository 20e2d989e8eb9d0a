//! A real OCI registry for tests: the CNCF distribution registry, built by
//! `tests/go-tool build registry` from the Go module proxy into
//! `${TRELLIS_ASSETS:-~/.cache/trellis/assets}/registry-v3.1.2/`, run on a
//! free loopback port with TLS (a certificate from a CA of its own, see
//! [`crate::certs`]) and htpasswd basic auth, its storage in a temporary
//! folder. Stopped and removed on drop.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::certs::{CertError, Certs};
use crate::process::{Process, ProcessError, free_port};

/// The distribution release the registry is built from.
pub const DISTRIBUTION_VERSION: &str = "v3.1.2";
/// The user the registry accepts.
pub const REGISTRY_USER: &str = "pusher";
/// Its password.
pub const REGISTRY_PASSWORD: &str = "s3cret-for-tests";

/// Errors starting the registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The binary is not built.
    #[error("the OCI registry is not at {0}: build it with `tests/go-tool build registry`")]
    Missing(PathBuf),
    /// The asset cache cannot be located.
    #[error(transparent)]
    Assets(#[from] crate::assets::AssetsError),
    /// A file of its folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Its certificates could not be made.
    #[error(transparent)]
    Certs(#[from] CertError),
    /// It could not be started.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// The password could not be hashed.
    #[error("cannot hash the registry password: {0}")]
    Hash(#[from] bcrypt::BcryptError),
    /// It did not listen in time.
    #[error("the OCI registry did not listen on {addr} within {timeout:?}; its log ends:\n{log}")]
    NotListening {
        /// Its address.
        addr: String,
        /// How long it was given.
        timeout: Duration,
        /// The end of its log.
        log: String,
    },
}

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    process: Process,
    host: String,
    ca_cert: PathBuf,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Path of the binary in the asset cache (built or not).
    pub fn binary() -> Result<PathBuf, RegistryError> {
        Ok(crate::assets::root_from_env()?
            .join(format!("registry-{DISTRIBUTION_VERSION}"))
            .join("registry"))
    }

    /// Starts one, waiting until it listens.
    pub async fn start() -> Result<Self, RegistryError> {
        let binary = Self::binary()?;
        if !binary.is_file() {
            return Err(RegistryError::Missing(binary));
        }
        let dir = tempfile::Builder::new()
            .prefix("trellis-registry-")
            .tempdir()
            .map_err(|source| RegistryError::Write {
                path: std::env::temp_dir(),
                source,
            })?;
        let certs = Certs::generate(dir.path())?;
        let htpasswd = dir.path().join("htpasswd");
        let hash = bcrypt::hash(REGISTRY_PASSWORD, bcrypt::DEFAULT_COST)?;
        write(&htpasswd, &format!("{REGISTRY_USER}:{hash}\n"))?;
        let port = free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let config = dir.path().join("config.yml");
        write(
            &config,
            &format!(
                "version: 0.1\n\
                 log: {{level: info}}\n\
                 storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n\
                 http:\n  addr: {addr}\n  tls: {{certificate: {cert}, key: {key}}}\n\
                 auth:\n  htpasswd: {{realm: trellis-tests, path: {htpasswd}}}\n",
                storage = dir.path().join("storage").display(),
                cert = certs.serving_cert.display(),
                key = certs.serving_key.display(),
                htpasswd = htpasswd.display(),
            ),
        )?;
        let process = Process::spawn(
            "registry",
            &binary,
            &["serve".to_owned(), config.display().to_string()],
            dir.path(),
        )?;
        let timeout = Duration::from_secs(30);
        let started = Instant::now();
        while tokio::net::TcpStream::connect(&addr).await.is_err() {
            if started.elapsed() > timeout {
                return Err(RegistryError::NotListening {
                    addr,
                    timeout,
                    log: process.log_tail(20),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tracing::info!(%addr, "OCI registry listening");
        Ok(Self {
            process,
            host: addr,
            ca_cert: certs.ca_cert,
            _dir: dir,
        })
    }

    /// `127.0.0.1:PORT`, the registry part of a reference.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The PEM file of the CA its serving certificate chains to.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// Where it keeps blobs and manifests (distribution's filesystem layout).
    pub fn storage_dir(&self) -> PathBuf {
        self._dir.path().join("storage")
    }

    /// The end of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

fn write(path: &Path, text: &str) -> Result<(), RegistryError> {
    std::fs::write(path, text).map_err(|source| RegistryError::Write {
        path: path.to_owned(),
        source,
    })
}
