//! The sandboxed WebAssembly runtime that runs reconciler plugins.
//!
//! One [`Runtime`] owns the wasmtime engine (component model, pooling
//! allocator, epoch interruption) and the linker with the host functions and
//! an empty WASI. [`Runtime::load`] compiles a module once into a
//! [`Plugin`]; every call then runs in a fresh instance with its own
//! deadline, memory cap and output limit, so no state leaks between
//! reconciles and no plugin can take the host down.

mod admission;
mod bindings;
mod cache_seed;
mod contract;
mod decoration;
mod error;
mod fit;
mod plugin;
mod related;
mod sandbox;
mod validate;

#[cfg(test)]
mod tests;

pub use admission::MAX_OBJECTIONS;
pub use contract::{
    AdmissionHooks, AdmissionRequest, Condition, Desired, DesiredChild, Event, KindRef, MAX_CHILDREN, MAX_EVENTS,
    MIN_REQUEUE, Operation, PluginInfo, ReconcileRequest, RelatedPicker, UserInfo,
};
pub use decoration::{Decoration, DecorationTarget, MAX_DECORATIONS, is_qualified_name};
pub use error::{PluginFailure, RuntimeError};
pub use fit::Misfit;
pub use plugin::{Plugin, digest};
pub use related::{Candidate, RelatedAnswer, RelatedScope, RelatedSelector, SelectionError, namespace_kind};
pub use validate::{is_dns_label, is_dns_subdomain};

use bindings::{v0_1, v0_2};
use plugin::Pre;
use sandbox::Sandbox;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Cache, CacheConfig, Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

/// The largest module the runtime compiles, in bytes.
pub const MAX_MODULE_BYTES: usize = 32 << 20;

/// Refuses a module of `size` bytes above [`MAX_MODULE_BYTES`] (so a
/// caller can refuse a file before reading it).
pub fn check_module_size(module: &str, size: u64) -> Result<(), RuntimeError> {
    if size > MAX_MODULE_BYTES as u64 {
        return Err(RuntimeError::ModuleTooLarge {
            module: module.to_owned(),
            size: usize::try_from(size).unwrap_or(usize::MAX),
            limit: MAX_MODULE_BYTES,
        });
    }
    Ok(())
}

/// How long [`Runtime::load_off_thread`] waits for a module to compile
/// (compiles run one at a time, so waiting for a turn counts too).
pub const COMPILE_DEADLINE: Duration = Duration::from_secs(180);

/// How often the engine's epoch advances: the resolution of deadlines, and
/// the quantum after which a call sharing the CPU ([`CpuShare`]) lets
/// another run.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How much of each pooled linear memory stays resident between calls. The
/// pages a call dirtied below this are reset in place (found with
/// `PAGEMAP_SCAN` where the kernel has it) instead of being unmapped and
/// faulted in again by the next call, which cost a third of a call's time.
/// The controller runs no more calls of a plugin at once than there are
/// CPUs, so few pool slots ever hold such pages.
const KEEP_RESIDENT_BYTES: usize = 4 << 20;

/// Limits of one plugin call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    pub timeout: Duration,
    /// Most linear memory one instance may have, in bytes.
    pub memory_bytes: usize,
    /// Most bytes of text one response may hold.
    pub response_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            response_bytes: 4 << 20,
        }
    }
}

/// A call's share of the CPU, when calls take turns: the call runs only
/// while it holds a turn, and at the end of each quantum ([`EPOCH_TICK`])
/// it lets a waiting call run. So a plugin that loops until its deadline
/// slows the others by a share of the CPU, not by its whole deadline.
///
/// Both methods run on the thread executing the call and may block it.
/// Whatever the value holds is given back when it is dropped, which
/// happens when the call ends.
pub trait CpuShare: Send + Sync + 'static {
    /// Returns once the call may run; called before the instance starts.
    /// `end_quanta` ends the quantum of every call running now: each
    /// reaches [`CpuShare::pass_turn`] within microseconds instead of at
    /// the next tick. A call that must wait may ring it, so a newcomer
    /// need not wait out the running calls' quanta.
    fn take_turn(&mut self, end_quanta: &dyn Fn());
    /// Called at the end of each quantum: if other calls wait, gives the
    /// turn away and returns once the call may run again.
    fn pass_turn(&mut self);
}

/// Engine-wide settings, fixed when the runtime starts.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Instances that may exist at once (the pool size); calls beyond it
    /// fail to instantiate, so keep reconcile concurrency below it.
    pub max_instances: u32,
    /// The largest memory limit any plugin may be given.
    pub max_memory_bytes: usize,
    /// Where compiled modules are kept across restarts (wasmtime's cache,
    /// keyed by the module's hash and the engine's settings and version).
    /// `None`: every start compiles again.
    pub module_cache_dir: Option<PathBuf>,
    /// Compiled modules copied into `module_cache_dir` before the engine
    /// starts, where it lacks them: a read-only, pre-warmed cache (the
    /// image's). Without a cache folder there is nothing to seed (a warning).
    pub module_cache_seed: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 128,
            max_memory_bytes: 1 << 30,
            module_cache_dir: None,
            module_cache_seed: None,
        }
    }
}

/// The wasmtime engine and linker shared by all plugins.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<Sandbox>,
    config: RuntimeConfig,
    cache: Option<Cache>,
    /// Held while a module compiles: one compile at a time, so modules
    /// arriving together (or a huge one) take the cores of one compile
    /// (wasmtime's parallel compilation), not of all at once.
    compiling: std::sync::Mutex<()>,
}

impl Runtime {
    /// Builds the engine and starts the thread that advances its epoch.
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let engine_error = |e: wasmtime::Error| RuntimeError::Engine(error::one_line(&e));
        let mut pool = PoolingAllocationConfig::default();
        // A Rust component instantiates a handful of core instances (the
        // program and the adapter shims), each with a memory and tables.
        pool.total_component_instances(config.max_instances)
            .total_core_instances(config.max_instances * 8)
            .total_memories(config.max_instances * 2)
            .total_tables(config.max_instances * 8)
            .max_memory_size(config.max_memory_bytes)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(64 << 10)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut wasm = Config::new();
        wasm.wasm_component_model(true)
            .epoch_interruption(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if config.module_cache_dir.is_none()
            && let Some(seed) = &config.module_cache_seed
        {
            tracing::warn!(seed = %seed.display(), "no module cache to seed: the seed is not used");
        }
        let cache = match &config.module_cache_dir {
            Some(dir) => {
                if let Some(seed) = &config.module_cache_seed {
                    let copied = cache_seed::seed(seed, dir)?;
                    tracing::info!(seed = %seed.display(), cache = %dir.display(), copied, "module cache seeded");
                }
                let mut settings = CacheConfig::new();
                settings.with_directory(dir);
                let cache = Cache::new(settings).map_err(|e| {
                    RuntimeError::Engine(format!("module cache in {}: {}", dir.display(), error::one_line(&e)))
                })?;
                wasm.cache(Some(cache.clone()));
                Some(cache)
            }
            None => None,
        };
        let engine = Engine::new(&wasm).map_err(engine_error)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(engine_error)?;
        // Both WIT versions' imports, side by side: their instance names
        // differ by version (`trellis:reconciler/host@0.1.0`, `@0.2.0`).
        v0_1::Reconciler::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s).map_err(engine_error)?;
        v0_2::Reconciler::add_to_linker::<Sandbox, HasSelf<Sandbox>>(&mut linker, |s| s).map_err(engine_error)?;

        spawn_epoch_ticker(&engine);
        Ok(Self {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                config,
                cache,
                compiling: std::sync::Mutex::new(()),
            }),
        })
    }

    /// Compiles served from the on-disk module cache, and compiles that
    /// missed it, since the start (both 0 without a cache).
    pub fn module_cache_stats(&self) -> (usize, usize) {
        self.inner
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.cache_hits(), c.cache_misses()))
    }

    /// The engine, e.g. to (de)serialise compiled modules.
    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    /// Compiles a module, once no other compile runs. `module` names it in
    /// errors (a file or ConfigMap). Blocking.
    pub fn compile(&self, module: &str, bytes: &[u8]) -> Result<Component, RuntimeError> {
        check_module_size(module, bytes.len() as u64)?;
        // Binary modules are inspected first (WAT text, which wasmtime also
        // takes, is left to the linker's check).
        if bytes.starts_with(b"\0asm") {
            fit::check(module, bytes)?;
        }
        // A compile that panicked leaves nothing behind to protect.
        let _turn = self
            .inner
            .compiling
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let started = std::time::Instant::now();
        let compiled = Component::new(&self.inner.engine, bytes).map_err(|e| RuntimeError::Compile {
            module: module.to_owned(),
            reason: error::one_line(&e),
        });
        tracing::debug!(
            module,
            bytes = bytes.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "module compiled"
        );
        compiled
    }

    /// [`Runtime::load`] on a blocking thread, waiting at most
    /// [`COMPILE_DEADLINE`]. A compile cannot be interrupted: one past the
    /// deadline goes on in the background, its result dropped.
    pub async fn load_off_thread(&self, module: &str, bytes: Vec<u8>, limits: Limits) -> Result<Plugin, RuntimeError> {
        let (runtime, name) = (self.clone(), module.to_owned());
        let loading = tokio::task::spawn_blocking(move || runtime.load(&name, &bytes, limits));
        match tokio::time::timeout(COMPILE_DEADLINE, loading).await {
            Ok(Ok(loaded)) => loaded,
            Ok(Err(panicked)) => Err(RuntimeError::Compile {
                module: module.to_owned(),
                reason: format!("the compile failed: {panicked}"),
            }),
            Err(_) => Err(RuntimeError::CompileTimeout {
                module: module.to_owned(),
                deadline: COMPILE_DEADLINE,
            }),
        }
    }

    /// Compiles a module, links it and asks it for its `info`.
    pub fn load(&self, module: &str, bytes: &[u8], limits: Limits) -> Result<Plugin, RuntimeError> {
        let component = self.compile(module, bytes)?;
        self.instantiate(module, &component, digest(bytes), limits)
    }

    /// Links an already compiled component and asks it for its `info`.
    pub fn instantiate(
        &self,
        module: &str,
        component: &Component,
        digest: String,
        limits: Limits,
    ) -> Result<Plugin, RuntimeError> {
        let incompatible = |e: wasmtime::Error| RuntimeError::Incompatible {
            module: module.to_owned(),
            reason: error::one_line(&e),
        };
        let pre = self.inner.linker.instantiate_pre(component).map_err(incompatible)?;
        // A module exports one version's world: 0.2.0's exports are checked
        // first, then 0.1.0's; the error names the newer one's mismatch.
        let pre = match v0_2::ReconcilerPre::new(pre.clone()) {
            Ok(pre) => Pre::V0_2(pre),
            Err(newer) => v0_1::ReconcilerPre::new(pre)
                .map(Pre::V0_1)
                .map_err(|_| incompatible(newer))?,
        };
        Plugin::new(module, pre, digest, limits, self.inner.config.max_memory_bytes)
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until the engine is gone.
fn spawn_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("trellis-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawning the epoch thread");
}
