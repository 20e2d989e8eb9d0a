//! The cost of each plugin language: the Website example (`examples/website`)
//! built in Rust, Python (componentize-py) and TypeScript (componentize-js),
//! measured in one run. For each: the module's size, a cold compile, a
//! compile served from the on-disk module cache, a cold host start to
//! serving with the module in that cache (compile from the cache, link, the
//! `info` call), and the time of one reconcile call (fresh instance, call,
//! response checks; median and p90 of many), and of a call the plugin
//! refuses at its first check (the fixed cost of a call). Prints a table and writes
//! `target/languages-bench.json`. Run with `make bench-languages`.

use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use trellis::runtime::{Limits, ReconcileRequest, Runtime, RuntimeConfig};

/// Calls timed per language.
const CALLS: usize = 200;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn modules() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("rust", trellis::testing::guest_module("trellis-example-website")),
        ("python", repo().join("target/examples/website-python.wasm")),
        ("typescript", repo().join("target/examples/website-typescript.wasm")),
    ]
}

/// The sample Website with its Deployment observed ready.
fn request() -> ReconcileRequest {
    request_for("sample.yaml", Some("observed-ready.yaml"))
}

/// `parent` (a file of examples/website) with `observed` children.
fn request_for(parent: &str, observed: Option<&str>) -> ReconcileRequest {
    let read = |name: &str| -> serde_json::Value {
        let path = repo().join("examples/website").join(name);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_yaml::from_str(&text).expect("YAML")
    };
    let mut parent = read(parent);
    parent["metadata"]["namespace"] = json!("default");
    parent["metadata"]["uid"] = json!("3f2a8c7e-0000-4000-8000-000000000003");
    parent["metadata"]["generation"] = json!(1);
    ReconcileRequest {
        parent: parent.to_string().into(),
        children: observed.map(|o| read(o).to_string().into()).into_iter().collect(),
        ..ReconcileRequest::default()
    }
}

/// [`CALLS`] runs of `call`, each timed, fastest first.
fn timed(mut call: impl FnMut()) -> Vec<Duration> {
    let mut times: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            call();
            started.elapsed()
        })
        .collect();
    times.sort();
    times
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is taken.
    let limits = Limits {
        timeout: Duration::from_secs(10),
        memory_bytes: 256 << 20,
        ..Limits::default()
    };
    let request = request();
    // Refused at the first check: the fixed cost of a call (a fresh
    // instance, crossing in and out) with next to no plugin work.
    let refused = request_for("missing-host.yaml", None);
    let mut rows = Vec::new();
    println!(
        "{:<11} {:>9} {:>11} {:>11} {:>11} {:>10} {:>10} {:>12}",
        "language", "size MiB", "cold ms", "cached ms", "start ms", "call p50", "call p90", "refusal p50"
    );
    for (language, path) in modules() {
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (run `make examples`)", path.display()));
        let cache = tempfile::tempdir().expect("a cache dir");
        let runtime = |cached: bool| {
            Runtime::new(RuntimeConfig {
                module_cache_dir: cached.then(|| cache.path().to_path_buf()),
                ..RuntimeConfig::default()
            })
            .expect("runtime")
        };
        let started = Instant::now();
        runtime(true).compile(language, &bytes).expect("cold compile");
        let cold = started.elapsed();
        let started = Instant::now();
        runtime(true).compile(language, &bytes).expect("cached compile");
        let cached = started.elapsed();
        // A host starting with the module in its cache: a new engine,
        // the compile served from the cache, linking and `info`.
        let started = Instant::now();
        let plugin = runtime(true).load(language, &bytes, limits).expect("load");
        let start = started.elapsed();

        let calls = timed(|| {
            plugin.reconcile(&request).expect("reconcile");
        });
        let (p50, p90) = (calls[CALLS / 2], calls[CALLS * 9 / 10]);
        let refusal_p50 = timed(|| {
            plugin.reconcile(&refused).expect_err("a refusal");
        })[CALLS / 2];
        let size_mib = bytes.len() as f64 / (1 << 20) as f64;
        println!(
            "{language:<11} {size_mib:>9.1} {:>11.0} {:>11.1} {:>11.1} {:>10.3} {:>10.3} {:>12.3}",
            ms(cold),
            ms(cached),
            ms(start),
            ms(p50),
            ms(p90),
            ms(refusal_p50)
        );
        rows.push(json!({
            "language": language,
            "module_bytes": bytes.len(),
            "compile_cold_ms": ms(cold),
            "compile_cached_ms": ms(cached),
            "start_to_serving_cached_ms": ms(start),
            "call_p50_ms": ms(p50),
            "call_p90_ms": ms(p90),
            "refusal_p50_ms": ms(refusal_p50),
            "calls": CALLS,
        }));
    }
    let out = repo().join("target/languages-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json!({ "website": rows })).unwrap()).expect("writing JSON");
    println!("wrote {}", out.display());
}
