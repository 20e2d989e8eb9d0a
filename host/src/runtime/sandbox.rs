//! The per-call sandbox: the state of one `Store` (an empty WASI context,
//! a memory cap, a captured stderr) and the `host` functions plugins import.

use super::bindings::trellis::reconciler::{host, types};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much of a plugin's stderr (where Rust panics print) is kept.
const STDERR_CAPACITY: usize = 16 * 1024;
/// Log lines a plugin may write per call; more are dropped and counted.
const LOG_LINES_PER_CALL: u32 = 200;
/// Longest log message kept, in bytes.
const LOG_MESSAGE_BYTES: usize = 4096;
/// Largest table a plugin may grow (function references).
const TABLE_ELEMENTS: usize = 100_000;

/// State of one sandboxed call.
pub(crate) struct Sandbox {
    wasi: WasiCtx,
    table: ResourceTable,
    stderr: MemoryOutputPipe,
    pub(crate) limiter: MemoryCap,
    plugin: String,
    subject: String,
    log_lines: u32,
}

impl Sandbox {
    /// A sandbox with no files, environment, arguments or network; clocks
    /// and randomness are allowed. `subject` names what is reconciled (for
    /// log lines).
    pub(crate) fn new(plugin: &str, subject: &str, memory_limit: usize) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        let wasi = WasiCtx::builder()
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            stderr,
            limiter: MemoryCap {
                limit: memory_limit,
                exceeded: false,
            },
            plugin: plugin.to_owned(),
            subject: subject.to_owned(),
            log_lines: 0,
        }
    }

    /// The last non-empty line the plugin wrote to stderr (a Rust panic
    /// message ends up there), if any.
    pub(crate) fn last_stderr_line(&self) -> Option<String> {
        let bytes = self.stderr.contents();
        let text = String::from_utf8_lossy(&bytes);
        text.lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_owned())
    }

    /// All of the plugin's stderr, for `panicked at` messages spanning lines.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

impl WasiView for Sandbox {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for Sandbox {}

impl host::Host for Sandbox {
    fn log(&mut self, level: host::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_CALL {
            if self.log_lines == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, object = %self.subject, "plugin log limit reached; further lines of this call are dropped");
            }
            return;
        }
        let message = truncate(&message, LOG_MESSAGE_BYTES);
        let (plugin, object) = (&self.plugin, &self.subject);
        match level {
            host::Level::Trace => tracing::trace!(plugin = %plugin, object = %object, "{message}"),
            host::Level::Debug => tracing::debug!(plugin = %plugin, object = %object, "{message}"),
            host::Level::Info => tracing::info!(plugin = %plugin, object = %object, "{message}"),
            host::Level::Warn => tracing::warn!(plugin = %plugin, object = %object, "{message}"),
            host::Level::Error => tracing::error!(plugin = %plugin, object = %object, "{message}"),
        }
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Caps a plugin's linear memory and remembers whether the cap was hit, so
/// the trap that follows a failed allocation is reported as what it is.
pub(crate) struct MemoryCap {
    limit: usize,
    pub(crate) exceeded: bool,
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }
}
