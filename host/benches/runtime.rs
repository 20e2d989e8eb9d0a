//! Benchmarks of the plugin runtime: one msdeploy reconcile through the
//! sandbox (fresh instance + call + response decode and checks), and the
//! compile time of the module. Run with `cargo bench -p trellis` after
//! `make plugins`.

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
    compile.bench_function("msdeploy module", |b| {
        b.iter(|| black_box(runtime.compile("msdeploy.wasm", &bytes).expect("compile")))
    });
    compile.finish();
}

criterion_group!(benches, runtime_benches);
criterion_main!(benches);
