//! Logging into the host's structured log.
//!
//! Plugins have no stdout worth reading; these functions send a line to the
//! host, which logs it with the plugin's name and the parent's key.

use crate::bindings::trellis::reconciler::host::{self, Level};

/// Logs at debug level.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}
