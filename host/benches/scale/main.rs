//! Scale benchmark: the Trellis host against a hand-written kube-rs
//! controller doing the same job (`bench/reference`, the msdeploy logic
//! linked natively), on one local control plane (no
//! kube-controller-manager unless `TRELLIS_SCALE_KCM=1`).
//!
//! For each N of `TRELLIS_SCALE_N` (comma-separated, default `1000`), the
//! reference and then `trellis run` (only `msdeploy.wasm` in its plugins
//! folder, shipped defaults) each run as their own process on a fresh
//! namespace:
//! - create: N `MicroServiceDeploy` parents with `spec.replicas: 3`;
//! - update: `spec.replicas` 3 -> 5 on all of them;
//! - steady: 10 s more with nothing to do (writes should be 0).
//!
//! A phase's clock stops when every parent converged (see [`driver`]).
//! Per phase and controller: wall time, the controller's CPU (total and
//! per parent) and peak RSS, the apiserver's CPU (from /proc), the
//! controller's reconciles and its own write counts (its /metrics), and the
//! API requests by verb (the apiserver's `apiserver_request_total` on the
//! kinds involved, the driver's own requests taken out, see [`requests`]);
//! with the ratio Trellis / reference. The bench's polling (a LIST per kind
//! and second) is in the apiserver's CPU for both alike.
//!
//! With `TRELLIS_SCALE_REPLICAS` (e.g. `1,2,3`, `make bench-sharding`)
//! it runs the sharded comparison instead (see [`sharded`]): for each N,
//! that many `trellis run` replicas with `--shards 12`, written to
//! `target/sharding-bench.json`.
//!
//! Run: `make bench-scale`, or build `trellis` and `trellis-reference` in
//! release, the plugins (`make plugins`), then
//! `cargo bench -p trellis --bench scale`. The table goes to stdout, the
//! figures to `target/scale-bench.json`.

mod driver;
mod procs;
mod report;
mod requests;
mod sharded;

use driver::Driver;
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::{Patch, PatchParams};
use procs::{Controller, Running, usage};
use report::{Phase, Run, Snapshot};
use requests::{DriverCount, Requests};
use serde_json::json;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trellis::runtime::{Limits, Runtime, RuntimeConfig};
use trellis_testenv::TestEnv;
use trellis_testenv::wait::{crd_from_yaml, install_crd};

/// Replicas the parents are created with, then updated to.
const REPLICAS: (i32, i32) = (3, 5);
/// How long the steady-state check watches.
const STEADY: Duration = Duration::from_secs(10);
/// After a controller is ready, before the clock starts: its watches open.
const SETTLE: Duration = Duration::from_secs(3);

/// Whether the plugin reads the parent's Namespace: then it gives a
/// ResourceQuota only to a namespace dedicated to one instance, never to the
/// bench's namespace shared by N of them.
fn plugin_reads_namespace(module: &Path) -> bool {
    let runtime = Runtime::new(RuntimeConfig::default()).expect("a plugin runtime");
    let bytes = std::fs::read(module).unwrap_or_else(|e| panic!("{}: {e}", module.display()));
    let plugin = runtime
        .load("msdeploy", &bytes, Limits::default())
        .expect("msdeploy.wasm loads");
    plugin
        .info()
        .related
        .iter()
        .any(|k| k.api_version == "v1" && k.kind == "Namespace")
}

struct Bench {
    env: TestEnv,
    client: kube::Client,
    apiserver: u32,
    plugins: tempfile::TempDir,
    count: Arc<DriverCount>,
    quota: bool,
}

impl Bench {
    async fn snapshot(&self, running: &Running) -> Snapshot {
        // The apiserver counts no /metrics scrape as a resource request.
        let request = http::Request::get("/metrics").body(Vec::new()).expect("a request");
        let text = self.client.request_text(request).await.unwrap_or_default();
        Snapshot {
            at: Instant::now(),
            controller: usage(running.pid()),
            apiserver: usage(self.apiserver),
            requests: Requests::parse(&text),
            driver: self.count.snapshot(),
            metrics: running.scrape().await,
        }
    }

    /// Creates `namespace` and a driver of parents in it.
    async fn fresh_namespace(&self, namespace: &str) -> Driver {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}});
        namespaces
            .patch(namespace, &PatchParams::apply("scale-bench"), &Patch::Apply(&object))
            .await
            .expect("creating the namespace");
        Driver::new(self.client.clone(), namespace, self.count.clone(), self.quota)
    }

    /// One controller on a fresh namespace: create, update, steady.
    async fn run(&self, controller: Controller, n: usize) -> Run {
        let namespace = format!("scale-{n}-{}", controller.name());
        let driver = self.fresh_namespace(&namespace).await;
        eprintln!("{} on {n} parents (namespace {namespace})", controller.name());
        let mut running = controller.start(
            self.env.kubeconfig_path(),
            &namespace,
            procs::free_addr(),
            self.plugins.path(),
        );
        running.wait_ready().await;
        tokio::time::sleep(SETTLE).await;

        let idle = self.snapshot(&running).await;
        let started = Instant::now();
        driver.apply_all(n, REPLICAS.0).await;
        let wall = driver.until_converged("create", n, REPLICAS.0, started).await;
        let created = self.snapshot(&running).await;
        let create = Phase::between(controller, n, wall, &idle, &created);

        let started = Instant::now();
        driver.apply_all(n, REPLICAS.1).await;
        let wall = driver.until_converged("update", n, REPLICAS.1, started).await;
        let updated = self.snapshot(&running).await;
        let update = Phase::between(controller, n, wall, &created, &updated);

        tokio::time::sleep(STEADY).await;
        let after = self.snapshot(&running).await;
        let steady = Phase::between(controller, n, after.at - updated.at, &updated, &after);
        eprintln!(
            "  {}: create {:.1} s, update {:.1} s, {} API writes in the steady {} s",
            controller.name(),
            create.wall.as_secs_f64(),
            update.wall.as_secs_f64(),
            steady.requests.writes(),
            STEADY.as_secs()
        );
        running.stop();
        driver.clean_up().await;
        Run { create, update, steady }
    }
}

fn sizes() -> Vec<usize> {
    let text = std::env::var("TRELLIS_SCALE_N").unwrap_or_else(|_| "1000".into());
    let sizes: Vec<usize> = text
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .unwrap_or_else(|_| panic!("TRELLIS_SCALE_N: {n:?} is not a number"))
        })
        .collect();
    assert!(!sizes.is_empty(), "TRELLIS_SCALE_N names no size");
    sizes
}

#[tokio::main]
async fn main() {
    let sizes = sizes();
    let with_kcm = std::env::var("TRELLIS_SCALE_KCM").is_ok_and(|v| v == "1");
    let module = trellis::testing::guest_module("trellis-plugin-msdeploy");
    let quota = !plugin_reads_namespace(&module);
    let order = match sharded::replica_counts() {
        Some(counts) => format!("trellis with {counts:?} replicas sharing 12 shards"),
        None => "reference then trellis".to_owned(),
    };
    eprintln!(
        "scale benchmark: {sizes:?} MicroServiceDeploy parents, {order} (kube-controller-manager: {with_kcm}; ResourceQuota expected: {quota})"
    );
    let env = TestEnv::builder()
        .controller_manager(with_kcm)
        .start()
        .await
        .expect("control plane");
    let client = env.client();
    for crd in [
        include_str!("../../../deploy/crds/custom.ops_microservicedeploys.yaml"),
        include_str!("../../../deploy/crds/trellis.dev_clusterreconcilerplugins.yaml"),
        include_str!("../../../deploy/crds/trellis.dev_reconcilerplugins.yaml"),
    ] {
        install_crd(&client, &crd_from_yaml(crd)).await;
    }
    // Trellis acts as the plugin's own ServiceAccount, as deployed.
    for manifest in [
        include_str!("../../../deploy/manager/namespace.yaml"),
        include_str!("../../../deploy/rbac/plugin_msdeploy_role.yaml"),
    ] {
        trellis_testenv::wait::apply_yaml_stream(&client, manifest, "scale-bench").await;
    }
    let plugins = tempfile::tempdir().expect("a plugins folder");
    std::fs::copy(&module, plugins.path().join("msdeploy.wasm")).expect("copying msdeploy.wasm");
    let apiserver = std::fs::read_to_string(env.dir().join("kube-apiserver.pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .expect("the apiserver's pid");
    let bench = Bench {
        env,
        client,
        apiserver,
        plugins,
        count: Arc::default(),
        quota,
    };

    if let Some(counts) = sharded::replica_counts() {
        let report = sharded::run_all(&bench, &sizes, &counts).await;
        let out = procs::target_dir().join("sharding-bench.json");
        std::fs::write(&out, serde_json::to_string_pretty(&report).expect("JSON")).expect("writing the report");
        eprintln!("written to {}", out.display());
        return;
    }
    let mut runs = Vec::new();
    for &n in &sizes {
        let reference = bench.run(Controller::Reference, n).await;
        let trellis = bench.run(Controller::Trellis, n).await;
        report::print(n, &reference, &trellis, STEADY);
        runs.push((n, reference, trellis));
    }
    let out = procs::target_dir().join("scale-bench.json");
    let report = report::json(&runs, with_kcm, quota);
    std::fs::write(&out, serde_json::to_string_pretty(&report).expect("JSON")).expect("writing the report");
    eprintln!("written to {}", out.display());
}
