//! The per-call sandbox: the state of one `Store` (an empty WASI context,
//! a memory cap, a captured stderr) and the `host` functions plugins import.

use super::bindings::v0_1::trellis::reconciler as v0_1;
use super::bindings::v0_2::trellis::reconciler::{host, types};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How much of a plugin's stderr (where Rust panics print) is kept.
const STDERR_CAPACITY: usize = 16 * 1024;
/// Log lines a plugin may write per call; more are dropped and counted.
const LOG_LINES_PER_CALL: u32 = 200;
/// Log lines one plugin may write per second, all its calls together.
const LOG_LINES_PER_SECOND: u32 = 100;
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
    log_rate: Arc<LogRate>,
}

/// A plugin's log lines in the current second, shared by all its calls, so
/// that many calls at once cannot flood the host's log either.
#[derive(Debug)]
pub(crate) struct LogRate {
    /// The second's start and the lines written in it.
    window: Mutex<(Instant, u32)>,
}

impl Default for LogRate {
    fn default() -> Self {
        Self {
            window: Mutex::new((Instant::now(), 0)),
        }
    }
}

/// Whether a log line may be written.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    Yes,
    /// No, and it is the first line dropped this second (say so once).
    FirstDropped,
    No,
}

impl LogRate {
    fn admit(&self) -> Admit {
        let mut window = self.window.lock().expect("log rate lock");
        if window.0.elapsed() >= Duration::from_secs(1) {
            *window = (Instant::now(), 0);
        }
        window.1 += 1;
        match window.1 {
            n if n <= LOG_LINES_PER_SECOND => Admit::Yes,
            n if n == LOG_LINES_PER_SECOND + 1 => Admit::FirstDropped,
            _ => Admit::No,
        }
    }
}

impl Sandbox {
    /// A sandbox with no files, environment, arguments or network; clocks
    /// and randomness are allowed. `subject` names what is reconciled (for
    /// log lines).
    pub(crate) fn new(plugin: &str, subject: &str, memory_limit: usize, log_rate: Arc<LogRate>) -> Self {
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
            log_rate,
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
impl v0_1::types::Host for Sandbox {}

/// A 0.1.0 plugin's `log`: the same function, older names.
impl v0_1::host::Host for Sandbox {
    fn log(&mut self, level: v0_1::host::Level, message: String) {
        use v0_1::host::Level as Old;
        let level = match level {
            Old::Trace => host::Level::Trace,
            Old::Debug => host::Level::Debug,
            Old::Info => host::Level::Info,
            Old::Warn => host::Level::Warn,
            Old::Error => host::Level::Error,
        };
        host::Host::log(self, level, message);
    }
}

impl host::Host for Sandbox {
    fn log(&mut self, level: host::Level, message: String) {
        self.log_lines += 1;
        if self.log_lines > LOG_LINES_PER_CALL {
            if self.log_lines == LOG_LINES_PER_CALL + 1 {
                tracing::warn!(plugin = %self.plugin, object = %self.subject, "plugin log limit reached; further lines of this call are dropped");
            }
            return;
        }
        match self.log_rate.admit() {
            Admit::Yes => {}
            Admit::FirstDropped => {
                tracing::warn!(plugin = %self.plugin, per_second = LOG_LINES_PER_SECOND, "plugin log rate reached; further lines this second are dropped");
                return;
            }
            Admit::No => return,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugin_logs_at_most_its_rate_per_second() {
        let rate = LogRate::default();
        let admitted: Vec<Admit> = (0..LOG_LINES_PER_SECOND + 3).map(|_| rate.admit()).collect();
        assert!(
            admitted[..LOG_LINES_PER_SECOND as usize]
                .iter()
                .all(|a| *a == Admit::Yes)
        );
        assert_eq!(admitted[LOG_LINES_PER_SECOND as usize], Admit::FirstDropped);
        assert_eq!(admitted[LOG_LINES_PER_SECOND as usize + 1], Admit::No);
        rate.window.lock().unwrap().0 -= Duration::from_secs(1);
        assert_eq!(rate.admit(), Admit::Yes, "a new second, a new allowance");
    }
}
