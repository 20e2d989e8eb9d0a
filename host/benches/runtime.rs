//! Benchmarks of the plugin runtime: one msdeploy reconcile through the
//! sandbox (fresh instance + call + response decode and checks), and, per
//! bundled plugin, a cold compile against a compile served from the on-disk
//! module cache (what a restart with unchanged modules costs). Run with
//! `make bench` (after `make plugins`).

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use std::time::Duration;
use trellis::runtime::{Limits, ReconcileRequest, Runtime, RuntimeConfig};
use trellis::testing::guest_bytes;

fn parent() -> serde_json::Value {
    json!({
        "apiVersion": "custom.ops/v1", "kind": "MicroServiceDeploy",
        "metadata": {"name": "ms-sample-v1s0", "namespace": "default", "generation": 1, "uid": "3f2a8c7e-0000-4000-8000-000000000001"},
        "spec": {
            "msName": "ms-sample", "fullName": "ms-sample-v1s0", "version": "1.0", "path": "v1",
            "image": "just a image url", "replicas": 3, "autoscaling": true, "needAuth": true,
            "config": "password=88888888", "creationTimestamp": "1535546718115",
            "resourceRequirements": {"limits": {"cpu": "2", "memory": "4Gi"}, "requests": {"cpu": "2", "memory": "4Gi"}},
            "idle": false
        }
    })
}

fn runtime_benches(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let bytes = guest_bytes("trellis-plugin-msdeploy");
    let plugin = runtime
        .load("msdeploy.wasm", &bytes, Limits::default())
        .expect("msdeploy loads");
    let request = ReconcileRequest {
        parent: parent(),
        ..ReconcileRequest::default()
    };

    c.bench_function("msdeploy reconcile (instance + call + decode)", |b| {
        b.iter(|| black_box(plugin.reconcile(black_box(&request)).expect("reconcile")))
    });

    let mut compile = c.benchmark_group("compile");
    compile.sample_size(10).measurement_time(Duration::from_secs(10));
    let cache = tempfile::tempdir().expect("a cache dir");
    let cached = Runtime::new(RuntimeConfig {
        module_cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime with a module cache");
    for plugin in BUNDLED {
        let bytes = guest_bytes(plugin);
        compile.bench_function(format!("{plugin} cold"), |b| {
            b.iter(|| black_box(runtime.compile(plugin, &bytes).expect("compile")))
        });
        cached.compile(plugin, &bytes).expect("compile into the cache");
        compile.bench_function(format!("{plugin} from the cache"), |b| {
            b.iter(|| black_box(cached.compile(plugin, &bytes).expect("compile")))
        });
    }
    compile.finish();
}

/// The plugins shipped with the host.
const BUNDLED: [&str; 1] = ["trellis-plugin-msdeploy"];

criterion_group!(benches, runtime_benches);
criterion_main!(benches);
