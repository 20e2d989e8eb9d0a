//! Scale benchmark: N `MicroServiceDeploy` parents (default 1,000) on a
//! local control plane, reconciled by a `trellis run` process built in
//! release mode. Measures, as DESIGN.md's performance targets do:
//! - wall time until every parent's status observes its generation
//!   (create), then until every Deployment runs a new image (update);
//! - the host's CPU time per parent and its peak RSS (from /proc);
//! - the apiserver's CPU over the same phases, for the ratio.
//!
//! Run: `make bench-scale` (or `cargo bench -p trellis --bench scale`);
//! `TRELLIS_SCALE_N` sets N, `TRELLIS_SCALE_KCM=1` also runs
//! kube-controller-manager. Results go to stdout and
//! `target/scale-bench.json`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams};
use serde_json::json;
use trellis_testenv::TestEnv;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

const NAMESPACE: &str = "scale";
/// Writes the benchmark's own client keeps in flight while creating parents.
const DRIVER_CONCURRENCY: usize = 64;

/// CPU time and peak memory of a process, from /proc.
#[derive(Debug, Clone, Copy)]
struct Usage {
    cpu: Duration,
    peak_rss_kib: u64,
}

fn usage(pid: u32) -> Usage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start at ")".
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split(' ').collect())
        .unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after ")".
    let ticks_per_second = clock_ticks();
    let cpu = Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / ticks_per_second as f64);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let peak_rss_kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0);
    Usage { cpu, peak_rss_kib }
}

fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn pid_of(env: &TestEnv, component: &str) -> Option<u32> {
    let text = std::fs::read_to_string(env.dir().join(format!("{component}.pid"))).ok()?;
    text.trim().parse().ok()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn parent(i: usize, image: &str) -> serde_json::Value {
    json!({
        "apiVersion": "custom.ops/v1",
        "kind": "MicroServiceDeploy",
        "metadata": { "name": format!("ms-{i:05}") },
        "spec": {
            "msName": format!("ms-{i:05}"),
            "image": image,
            "replicas": 2,
            "autoscaling": i.is_multiple_of(2),
            "needAuth": true,
            "config": "password=88888888",
            "resourceRequirements": {
                "limits": { "cpu": "1", "memory": "1Gi" },
                "requests": { "cpu": "500m", "memory": "512Mi" }
            }
        }
    })
}

async fn apply_all(api: &Api<DynamicObject>, n: usize, image: &str) {
    stream::iter(0..n)
        .for_each_concurrent(DRIVER_CONCURRENCY, |i| {
            let api = api.clone();
            let object = parent(i, image);
            async move {
                let name = object["metadata"]["name"].as_str().unwrap().to_owned();
                api.patch(
                    &name,
                    &PatchParams::apply("scale-bench").force(),
                    &Patch::Apply(&object),
                )
                .await
                .unwrap_or_else(|e| panic!("applying {name}: {e}"));
            }
        })
        .await;
}

/// Polls until `done` says so, printing progress; returns the time taken.
async fn until_all<F, Fut>(what: &str, n: usize, started: Instant, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let mut last_print = Instant::now();
    loop {
        let count = done().await;
        if count >= n {
            return started.elapsed();
        }
        if last_print.elapsed() > Duration::from_secs(5) {
            eprintln!("  {what}: {count}/{n} after {:.1}s", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
        assert!(
            started.elapsed() < Duration::from_secs(900),
            "{what}: stuck at {count}/{n}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn start_host(env: &TestEnv, plugins: &Path) -> Child {
    let binary = workspace().join("target/release/trellis");
    assert!(
        binary.exists(),
        "{} is missing: cargo build --release -p trellis",
        binary.display()
    );
    Command::new(binary)
        .args([
            "run",
            "--watch-namespace",
            NAMESPACE,
            "--metrics-addr",
            "127.0.0.1:0",
            "--plugins-dir",
        ])
        .arg(plugins)
        .env("KUBECONFIG", env.kubeconfig_path())
        .env("TRELLIS_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start trellis run")
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("TRELLIS_SCALE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let with_kcm = std::env::var("TRELLIS_SCALE_KCM").is_ok_and(|v| v == "1");
    eprintln!("scale benchmark: {n} MicroServiceDeploy parents (kube-controller-manager: {with_kcm})");
    let env = TestEnv::builder()
        .controller_manager(with_kcm)
        .start()
        .await
        .expect("control plane");
    let client = env.client();
    install_crd(
        &client,
        &crd_from_yaml(include_str!("../../deploy/crds/custom.ops_microservicedeploys.yaml")),
    )
    .await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces
        .patch(
            NAMESPACE,
            &PatchParams::apply("scale-bench"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})),
        )
        .await
        .unwrap();

    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        trellis::testing::guest_module("trellis-plugin-msdeploy"),
        plugins.path().join("msdeploy.wasm"),
    )
    .unwrap();
    let mut host = start_host(&env, plugins.path());
    let apiserver = pid_of(&env, "kube-apiserver").expect("apiserver pid");
    tokio::time::sleep(Duration::from_secs(3)).await; // host started, plugin compiled, watches open
    let host_idle = usage(host.id());
    let api_idle = usage(apiserver);

    let gvk = GroupVersionKind::gvk("custom.ops", "v1", "MicroServiceDeploy");
    let parents: Api<DynamicObject> = Api::namespaced_with(client.clone(), NAMESPACE, &ApiResource::from_gvk(&gvk));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);

    // Create.
    let started = Instant::now();
    apply_all(&parents, n, "registry.example/ms:1").await;
    let created_in = started.elapsed();
    let create = until_all("create", n, started, || async {
        let list = parents
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.iter()
            .filter(|p| {
                p.data["status"]["observedGeneration"].as_i64() == p.metadata.generation
                    && p.metadata.generation.is_some()
            })
            .count()
    })
    .await;
    let host_created = usage(host.id());
    let api_created = usage(apiserver);
    let deployments_made = deployments.list(&ListParams::default()).await.unwrap().items.len();

    // Update every parent's image.
    let started = Instant::now();
    apply_all(&parents, n, "registry.example/ms:2").await;
    let update = until_all("update", n, started, || async {
        let list = deployments
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        list.iter()
            .filter(|d| {
                d.spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref())
                    .map(|s| s.containers[0].image.as_deref())
                    == Some(Some("registry.example/ms:2"))
            })
            .count()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let host_updated = usage(host.id());
    let api_updated = usage(apiserver);
    let _ = host.kill();
    let _ = host.wait();

    let per_parent = |d: Duration| d.as_secs_f64() * 1000.0 / n as f64;
    let host_create_cpu = host_created.cpu - host_idle.cpu;
    let host_update_cpu = host_updated.cpu - host_created.cpu;
    let api_create_cpu = api_created.cpu - api_idle.cpu;
    let api_update_cpu = api_updated.cpu - api_created.cpu;
    println!("scale benchmark, {n} parents, {deployments_made} Deployments (kube-controller-manager: {with_kcm})");
    println!(
        "  create: {:.1} s wall ({:.1} s to send the parents); host CPU {:.2} ms/parent; apiserver CPU {:.2} ms/parent",
        create.as_secs_f64(),
        created_in.as_secs_f64(),
        per_parent(host_create_cpu),
        per_parent(api_create_cpu)
    );
    println!(
        "  update: {:.1} s wall; host CPU {:.2} ms/parent; apiserver CPU {:.2} ms/parent",
        update.as_secs_f64(),
        per_parent(host_update_cpu),
        per_parent(api_update_cpu)
    );
    println!("  host peak RSS: {:.1} MiB", host_updated.peak_rss_kib as f64 / 1024.0);
    let report = json!({
        "parents": n,
        "kube_controller_manager": with_kcm,
        "create_seconds": create.as_secs_f64(),
        "update_seconds": update.as_secs_f64(),
        "host_cpu_ms_per_parent_create": per_parent(host_create_cpu),
        "host_cpu_ms_per_parent_update": per_parent(host_update_cpu),
        "apiserver_cpu_ms_per_parent_create": per_parent(api_create_cpu),
        "apiserver_cpu_ms_per_parent_update": per_parent(api_update_cpu),
        "host_peak_rss_mib": host_updated.peak_rss_kib as f64 / 1024.0,
    });
    let out = workspace().join("target/scale-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("written to {}", out.display());
}
