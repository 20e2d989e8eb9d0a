//! `trellis plugin compile`: compiles modules into a module cache ahead of
//! time, checking that each loads, so that a host started with that cache
//! (or seeded from it, `--module-cache-seed`) serves them without
//! compiling. `make image` pre-warms the image's cache with it.
//!
//! The cache is wasmtime's, keyed by the module's hash and the engine's
//! settings, version and CPU features: the runtime here has `trellis run`'s
//! engine settings (only its pool is smaller, which the key leaves out, as
//! a test below shows), so its entries are the ones `run` looks up.

use crate::runtime::{Limits, PluginInfo, Runtime, RuntimeConfig, RuntimeError, check_module_size};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Why a module was not compiled into the cache.
#[derive(Debug, thiserror::Error)]
pub enum PrecompileError {
    /// The module file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The engine could not start, or the module does not load.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One module compiled into the cache.
#[derive(Debug)]
pub struct Compiled {
    /// The file it came from.
    pub path: PathBuf,
    /// What the plugin says of itself.
    pub info: PluginInfo,
    /// The module's sha256.
    pub digest: String,
    /// How long the compile (or the cache's answer) took.
    pub took: Duration,
}

/// Compiles each module into `cache`, in order, stopping at the first that
/// does not load.
pub fn precompile(modules: &[PathBuf], cache: &Path) -> Result<Vec<Compiled>, PrecompileError> {
    let runtime = Runtime::new(RuntimeConfig {
        max_instances: 4,
        module_cache_dir: Some(cache.to_owned()),
        ..RuntimeConfig::default()
    })?;
    modules.iter().map(|path| compile_one(&runtime, path)).collect()
}

fn compile_one(runtime: &Runtime, path: &Path) -> Result<Compiled, PrecompileError> {
    let read_error = |source| PrecompileError::Read {
        path: path.to_owned(),
        source,
    };
    let name = path.display().to_string();
    check_module_size(&name, std::fs::metadata(path).map_err(read_error)?.len())?;
    let bytes = std::fs::read(path).map_err(read_error)?;
    let started = Instant::now();
    let plugin = runtime.load(&name, &bytes, Limits::default())?;
    Ok(Compiled {
        path: path.to_owned(),
        info: plugin.info().clone(),
        digest: plugin.digest().to_owned(),
        took: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::guest_module;

    /// The cache entries are the ones `trellis run` looks up: its runtime has
    /// a larger pool (instance slots plus spares) and the same engine
    /// otherwise, and the pool's size is not part of wasmtime's cache key.
    #[test]
    fn a_host_runtime_finds_what_was_compiled_ahead() {
        let cache = tempfile::tempdir().unwrap();
        let module = guest_module("trellis-test-greeter-v1");
        let compiled = precompile(std::slice::from_ref(&module), cache.path()).unwrap();
        assert_eq!(compiled[0].info.name, "greeter");

        let host_like = Runtime::new(RuntimeConfig {
            max_instances: 72,
            module_cache_dir: Some(cache.path().to_owned()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        host_like
            .load("greeter.wasm", &std::fs::read(&module).unwrap(), Limits::default())
            .unwrap();
        assert_eq!(host_like.module_cache_stats(), (1, 0), "(hits, misses)");
    }

    #[test]
    fn a_module_that_does_not_load_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("broken.wasm");
        std::fs::write(&module, b"\0asm not really").unwrap();
        let err = precompile(std::slice::from_ref(&module), &dir.path().join("cache")).unwrap_err();
        assert!(err.to_string().contains("broken.wasm"), "{err}");
        let missing = precompile(&[dir.path().join("absent.wasm")], &dir.path().join("cache")).unwrap_err();
        assert!(matches!(missing, PrecompileError::Read { .. }), "{missing}");
    }
}
