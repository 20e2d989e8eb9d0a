//! Benchmarks of the plugin runtime, per bundled plugin: one reconcile of
//! its sample through the sandbox (fresh instance + call + response decode
//! and checks), and a cold compile against a compile served from the on-disk
//! module cache (what a restart with unchanged modules costs). The floor is
//! the same for a trivial plugin (the test greeter: one ConfigMap, no
//! parsing of the parent): what instantiating and calling costs at the
//! least. Run with `make bench` (after `make plugins`).

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use std::hint::black_box;
use std::time::Duration;
use trellis::runtime::{Limits, ReconcileRequest, Runtime, RuntimeConfig};
use trellis::testing::guest_bytes;

/// The bundled plugins and the sample each reconciles.
const BUNDLED: [(&str, &str); 5] = [
    ("trellis-plugin-msdeploy", "microservicedeploy.yaml"),
    ("trellis-plugin-etcd-cluster", "etcdcluster.yaml"),
    ("trellis-plugin-redis", "redisenterprisecluster.yaml"),
    ("trellis-plugin-appservice", "appservice.yaml"),
    ("trellis-plugin-mydaemonset", "mydaemonset.yaml"),
];

/// The sample as the host would hand it over: namespaced, with a uid.
fn request(sample: &str) -> ReconcileRequest {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/samples/").to_owned() + sample;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut parent: serde_json::Value = serde_yaml::from_str(&text).expect("the sample parses");
    parent["metadata"]["namespace"] = json!("default");
    parent["metadata"]["uid"] = json!("3f2a8c7e-0000-4000-8000-000000000001");
    parent["metadata"]["generation"] = json!(1);
    // Three Nodes for the plugins that read them.
    let related = (0..3)
        .map(|i| {
            std::sync::Arc::from(
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{i}")}}).to_string(),
            )
        })
        .collect();
    ReconcileRequest {
        parent: parent.to_string().into(),
        related,
        ..ReconcileRequest::default()
    }
}

fn runtime_benches(c: &mut Criterion) {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("runtime");
    let mut reconcile = c.benchmark_group("reconcile (instance + call + decode)");
    let floor = runtime
        .load("greeter", &guest_bytes("trellis-test-greeter-v1"), Limits::default())
        .expect("the greeter loads");
    let greeter = ReconcileRequest {
        parent: json!({
            "apiVersion": "test.trellis.dev/v1", "kind": "Greeter",
            "metadata": {"name": "g", "namespace": "default", "uid": "3f2a8c7e-0000-4000-8000-000000000002", "generation": 1}
        })
        .to_string()
        .into(),
        ..ReconcileRequest::default()
    };
    reconcile.bench_function("floor: trellis-test-greeter-v1", |b| {
        b.iter(|| black_box(floor.reconcile(black_box(&greeter)).expect("reconcile")))
    });
    for (plugin, sample) in BUNDLED {
        let bytes = guest_bytes(plugin);
        let loaded = runtime
            .load(plugin, &bytes, Limits::default())
            .expect("the plugin loads");
        let request = request(sample);
        reconcile.bench_function(plugin, |b| {
            b.iter(|| black_box(loaded.reconcile(black_box(&request)).expect("reconcile")))
        });
    }
    reconcile.finish();

    let mut compile = c.benchmark_group("compile");
    compile.sample_size(10).measurement_time(Duration::from_secs(10));
    let cache = tempfile::tempdir().expect("a cache dir");
    let cached = Runtime::new(RuntimeConfig {
        module_cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    })
    .expect("runtime with a module cache");
    for (plugin, _) in BUNDLED {
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

criterion_group!(benches, runtime_benches);
criterion_main!(benches);
