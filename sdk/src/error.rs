//! The error a reconcile can end with, and how it crosses to the host.

use crate::bindings::trellis::reconciler::types;

/// Why a reconcile failed. Every variant sets the parent's `Ready`
/// condition to `False` with the message and records a Warning event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The parent's spec is wrong; the host waits for the user to edit it.
    InvalidSpec(String),
    /// A temporary failure; the host retries with backoff.
    Transient(String),
    /// The plugin cannot work; the host retries with its longest backoff.
    Fatal(String),
}

impl Error {
    /// A spec error, e.g. `Error::invalid_spec("image is required")`.
    pub fn invalid_spec(message: impl Into<String>) -> Self {
        Self::InvalidSpec(message.into())
    }

    /// A temporary failure.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::Transient(message.into())
    }

    /// A failure retrying will not mend.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self::Fatal(message.into())
    }

    pub(crate) fn into_wit(self) -> types::Error {
        match self {
            Self::InvalidSpec(m) => types::Error::InvalidSpec(m),
            Self::Transient(m) => types::Error::Transient(m),
            Self::Fatal(m) => types::Error::Fatal(m),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::InvalidSpec(m) => write!(f, "invalid spec: {m}"),
            Self::Transient(m) => write!(f, "transient: {m}"),
            Self::Fatal(m) => write!(f, "fatal: {m}"),
        }
    }
}

impl std::error::Error for Error {}

/// A parent or config that does not deserialise into the plugin's types is
/// a spec error: the user has to fix the object.
impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::InvalidSpec(e.to_string())
    }
}
