//! `trellis plugin push P.wasm REF`: a module checked as the host would
//! check it, then published in the Wasm OCI artifact layout. Credentials
//! come from the environment (`TRELLIS_REGISTRY_USERNAME`,
//! `TRELLIS_REGISTRY_PASSWORD`), never from the command line where `ps` and
//! shell history would show them; a CA file may be trusted besides the
//! system's roots.

use std::path::{Path, PathBuf};

use super::{OciError, Pushed, RegistryAccess};
use crate::pack::PackError;
use crate::runtime::PluginInfo;

/// The user name for the registry.
pub const USERNAME_ENV: &str = "TRELLIS_REGISTRY_USERNAME";
/// Its password.
pub const PASSWORD_ENV: &str = "TRELLIS_REGISTRY_PASSWORD";

/// What to publish, and where.
#[derive(Debug, Clone)]
pub struct PublishInput {
    /// The module (`.wasm`).
    pub module: PathBuf,
    /// `registry/repository:tag`.
    pub reference: String,
    /// A PEM CA certificate to trust for the registry.
    pub ca_file: Option<PathBuf>,
}

/// Why a module was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The module does not load (or cannot be read).
    #[error(transparent)]
    Module(#[from] PackError),
    /// Only one of the two credential variables is set.
    #[error("set both {USERNAME_ENV} and {PASSWORD_ENV}, or neither for anonymous access")]
    HalfCredentials,
    /// The CA file cannot be read.
    #[error("cannot read the CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The registry did not take it.
    #[error(transparent)]
    Oci(#[from] OciError),
    /// No async runtime could be made.
    #[error("cannot start an async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Published: what the module said of itself, and where it now is.
#[derive(Debug, Clone)]
pub struct Published {
    /// The module's own description.
    pub info: PluginInfo,
    /// Its manifest's digest and pinned reference.
    pub pushed: Pushed,
}

/// Checks and publishes the module, with credentials from the environment.
pub fn publish(input: &PublishInput) -> Result<Published, PublishError> {
    let (bytes, info) = crate::pack::checked_module(&input.module)?;
    let access = access_from(
        std::env::var(USERNAME_ENV).ok(),
        std::env::var(PASSWORD_ENV).ok(),
        input.ca_file.as_deref(),
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(PublishError::Runtime)?;
    let pushed = runtime.block_on(super::push(&bytes, &input.reference, &access))?;
    Ok(Published { info, pushed })
}

/// The access the credentials and CA file give.
fn access_from(
    username: Option<String>,
    password: Option<String>,
    ca_file: Option<&Path>,
) -> Result<RegistryAccess, PublishError> {
    let basic = match (username.filter(|u| !u.is_empty()), password.filter(|p| !p.is_empty())) {
        (Some(user), Some(password)) => Some((user, password)),
        (None, None) => None,
        _ => return Err(PublishError::HalfCredentials),
    };
    let extra_roots_pem = match ca_file {
        Some(path) => vec![std::fs::read(path).map_err(|source| PublishError::CaFile {
            path: path.to_owned(),
            source,
        })?],
        None => Vec::new(),
    };
    Ok(RegistryAccess { basic, extra_roots_pem })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_in_pairs() {
        assert!(matches!(
            access_from(Some("u".into()), None, None),
            Err(PublishError::HalfCredentials)
        ));
        assert!(matches!(
            access_from(Some("".into()), Some("p".into()), None),
            Err(PublishError::HalfCredentials)
        ));
        assert!(access_from(None, None, None).unwrap().basic.is_none());
        assert_eq!(
            access_from(Some("u".into()), Some("p".into()), None).unwrap().basic,
            Some(("u".into(), "p".into()))
        );
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = access_from(None, None, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
