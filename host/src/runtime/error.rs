//! Errors of the plugin runtime: each names the plugin and the cause.

use std::time::Duration;

/// What a plugin itself reported as the reason a reconcile failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PluginFailure {
    /// The parent's spec is wrong; retrying will not help.
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// A temporary failure; retry with backoff.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The plugin cannot work.
    #[error("fatal: {0}")]
    Fatal(String),
}

/// Why loading or calling a plugin failed. None of these take the host down.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The wasmtime engine could not be configured.
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
    /// The pre-warmed module cache could not be copied into the cache.
    #[error("cannot seed the module cache {cache} from {seed}: {source}")]
    CacheSeed {
        seed: std::path::PathBuf,
        cache: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a WebAssembly component wasmtime can compile.
    #[error("module {module} is not a valid WebAssembly component: {reason}")]
    Compile { module: String, reason: String },
    /// The module is larger than the runtime compiles.
    #[error("module {module} has {size} bytes, more than the limit of {limit}")]
    ModuleTooLarge { module: String, size: usize, limit: usize },
    /// The module did not compile within the deadline (waiting for other
    /// compiles included).
    #[error("module {module} did not compile within {deadline:?}")]
    CompileTimeout { module: String, deadline: Duration },
    /// The component imports what the host does not link, or lacks
    /// exports of the world: found before compiling, every cause named.
    #[error("module {module} does not fit the host: {misfit}")]
    DoesNotFit { module: String, misfit: super::fit::Misfit },
    /// The component does not implement the world this host links.
    #[error("module {module} implements neither trellis:reconciler@0.2.0 nor @0.1.0: {reason}")]
    Incompatible { module: String, reason: String },
    /// The `info` export describes an unusable plugin.
    #[error("module {module} describes itself wrongly: {reason}")]
    InvalidInfo { module: String, reason: String },
    /// No instance could be created (e.g. the instance pool is exhausted).
    #[error("plugin {plugin}: cannot start an instance: {reason}")]
    Instantiate { plugin: String, reason: String },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin {plugin}: {call} ran past its deadline of {timeout:?}")]
    Timeout {
        plugin: String,
        call: &'static str,
        timeout: Duration,
    },
    /// The guest asked for more linear memory than its limit.
    #[error("plugin {plugin}: {call} exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        plugin: String,
        call: &'static str,
        limit_bytes: usize,
    },
    /// The guest trapped (panic, unreachable, stack overflow, ...).
    #[error("plugin {plugin}: {call} trapped: {message}")]
    Trap {
        plugin: String,
        call: &'static str,
        message: String,
    },
    /// The response is larger than the output limit.
    #[error("plugin {plugin}: response of {size} bytes exceeds the limit of {limit} bytes")]
    ResponseTooLarge { plugin: String, size: usize, limit: usize },
    /// The response was so much larger than the output limit that copying
    /// it out of the sandbox was stopped part way: it was never held whole.
    #[error(
        "plugin {plugin}: {call} returned more than {copy_limit} bytes (the response limit of {limit} bytes and room for its lists); the copy out of the sandbox was stopped"
    )]
    ResponseCopyStopped {
        plugin: String,
        call: &'static str,
        limit: usize,
        copy_limit: usize,
    },
    /// The request (parent, children, related objects, config) is larger
    /// than half the plugin's memory limit: it could not be handed over.
    #[error("plugin {plugin}: request of {size} bytes exceeds the limit of {limit} bytes (half its memory limit)")]
    RequestTooLarge { plugin: String, size: usize, limit: usize },
    /// The response lists more children than one response may.
    #[error("plugin {plugin}: response lists {count} children, more than the limit of {limit}")]
    TooManyChildren { plugin: String, count: usize, limit: usize },
    /// The response breaks the contract (bad JSON, a kind not registered, a
    /// foreign namespace, ...). Nothing of it is applied.
    #[error("plugin {plugin}: invalid response: {reason}")]
    InvalidResponse { plugin: String, reason: String },
    /// The plugin's `related` answer cannot be served.
    #[error("plugin {plugin}: {source}")]
    RelatedRefused {
        plugin: String,
        #[source]
        source: super::related::SelectionError,
    },
    /// The plugin returned an error of its own.
    #[error("plugin {plugin} failed: {failure}")]
    Reported { plugin: String, failure: PluginFailure },
    /// `default` returned something that is not the object as a JSON
    /// object of the same kind and name.
    #[error("plugin {plugin}: default returned an invalid object: {reason}")]
    InvalidDefault { plugin: String, reason: String },
    /// `default` changed a field outside `metadata.labels`,
    /// `metadata.annotations` and `spec`.
    #[error("plugin {plugin}: default changed {field}; only metadata.labels, metadata.annotations and spec may change")]
    ForbiddenDefault { plugin: String, field: String },
}

impl RuntimeError {
    /// A short, stable label for metrics and condition reasons.
    pub fn cause(&self) -> &'static str {
        match self {
            Self::Engine(_) | Self::CacheSeed { .. } => "Engine",
            Self::Compile { .. } => "CompileFailed",
            Self::ModuleTooLarge { .. } => "ModuleTooLarge",
            Self::CompileTimeout { .. } => "CompileTimeout",
            Self::Incompatible { .. } | Self::DoesNotFit { .. } => "IncompatibleModule",
            Self::InvalidInfo { .. } => "InvalidInfo",
            Self::Instantiate { .. } => "InstantiateFailed",
            Self::Timeout { .. } => "PluginTimeout",
            Self::MemoryLimit { .. } => "PluginMemoryLimit",
            Self::Trap { .. } => "PluginTrapped",
            Self::ResponseTooLarge { .. } | Self::ResponseCopyStopped { .. } => "ResponseTooLarge",
            Self::TooManyChildren { .. } => "TooManyChildren",
            Self::RequestTooLarge { .. } => "RequestTooLarge",
            Self::InvalidResponse { .. } => "InvalidResponse",
            Self::RelatedRefused { .. } => "RelatedRefused",
            Self::InvalidDefault { .. } => "InvalidDefault",
            Self::ForbiddenDefault { .. } => "ForbiddenDefault",
            Self::Reported {
                failure: PluginFailure::InvalidSpec(_),
                ..
            } => "InvalidSpec",
            Self::Reported {
                failure: PluginFailure::Transient(_),
                ..
            } => "TransientError",
            Self::Reported {
                failure: PluginFailure::Fatal(_),
                ..
            } => "PluginError",
        }
    }
}

/// An error's full chain on one line (wasmtime's messages span several),
/// so log lines, conditions and CLI errors stay one line each.
pub(crate) fn one_line(error: &wasmtime::Error) -> String {
    format!("{error:#}").split_whitespace().collect::<Vec<_>>().join(" ")
}
