//! Three `trellis run` processes share 600 parents in 12 shards, on a real
//! control plane: every parent converges with each host holding 4 shards;
//! a host killed with SIGKILL has its shards taken within the Lease's
//! duration plus 10 s while parents created meanwhile converge; the host
//! added back gets its share; a rolling restart of all three, with every
//! parent patched during each restart, loses no update. From the hosts'
//! debug logs of every reconcile's start and end, no parent is ever
//! reconciled by two hosts at once.

mod common;

use common::*;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::until;

const SHARDS: u32 = 12;
const PARENTS: usize = 600;
const LEASE_SECONDS: u64 = 6;
const CONVERGE: Duration = Duration::from_secs(240);

/// One `trellis run` process, with its log file.
struct Host {
    identity: String,
    child: Child,
    metrics: SocketAddr,
}

/// Starts the hosts and keeps their logs in one folder.
struct Hosts {
    binary: PathBuf,
    plugins: tempfile::TempDir,
    logs: tempfile::TempDir,
    kubeconfig: PathBuf,
    namespace: String,
    started: usize,
}

impl Hosts {
    fn new(ns: &TestNamespace) -> Self {
        let plugins = tempfile::tempdir().unwrap();
        add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
        Self {
            binary: PathBuf::from(env!("CARGO_BIN_EXE_trellis")),
            plugins,
            logs: tempfile::tempdir().unwrap(),
            kubeconfig: ns.env().kubeconfig_path().to_owned(),
            namespace: ns.name().to_owned(),
            started: 0,
        }
    }

    fn start(&mut self, identity: &str) -> Host {
        self.started += 1;
        let log = std::fs::File::create(self.logs.path().join(format!("{:02}-{identity}.log", self.started))).unwrap();
        let metrics = free_addr();
        let child = Command::new(&self.binary)
            .args(["run", "--plugins-dir"])
            .arg(self.plugins.path())
            .args(["--metrics-addr", &metrics.to_string()])
            .args(["--watch-namespace", &self.namespace])
            .args(["--lease-namespace", &self.namespace])
            .args(["--plugin-namespace", "trellis-system"])
            .args(["--identity", identity])
            .args(["--shards", &SHARDS.to_string()])
            .args(["--lease-seconds", &LEASE_SECONDS.to_string()])
            .args(["--module-cache", "none", "--poll-ms", "500"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("TRELLIS_LOG", "info,trellis::shard_turns=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Host {
            identity: identity.to_owned(),
            child,
            metrics,
        }
    }

    /// Every reconcile turn in every log: (parent, replica, start, end);
    /// a turn cut short by SIGKILL ends when its log does.
    fn turns(&self) -> Vec<(String, String, String, String)> {
        let mut turns = Vec::new();
        for entry in std::fs::read_dir(self.logs.path()).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let mut open: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut replica = String::new();
            let mut last = String::new();
            for line in text.lines() {
                let Ok(record) = serde_json::from_str::<Value>(line) else {
                    continue;
                };
                last = record["timestamp"].as_str().unwrap_or_default().to_owned();
                if record["target"] != "trellis::shard_turns" {
                    continue;
                }
                let fields = &record["fields"];
                let parent = fields["parent"].as_str().unwrap().to_owned();
                replica = fields["replica"].as_str().unwrap().to_owned();
                match fields["message"].as_str().unwrap() {
                    "turn began" => open.entry(parent).or_default().push(last.clone()),
                    "turn ended" => {
                        let began = open.get_mut(&parent).and_then(Vec::pop).expect("an end after a start");
                        turns.push((parent, replica.clone(), began, last.clone()));
                    }
                    other => panic!("unexpected turn message {other}"),
                }
            }
            for (parent, starts) in open {
                for began in starts {
                    turns.push((parent.clone(), replica.clone(), began, last.clone()));
                }
            }
        }
        turns
    }
}

impl Host {
    /// Its /metrics text, if it answers.
    fn scrape(&self) -> Option<String> {
        let mut stream = TcpStream::connect_timeout(&self.metrics, Duration::from_secs(2)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        stream.read_to_string(&mut body).ok()?;
        Some(body)
    }

    fn metric(&self, series: &str) -> Option<f64> {
        self.scrape()?
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// The sum of every series of a metric family (`name{`).
    fn metric_sum(&self, family: &str) -> f64 {
        let Some(body) = self.scrape() else { return 0.0 };
        body.lines()
            .filter(|l| l.starts_with(family))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn shards_held(&self) -> Option<f64> {
        self.metric("trellis_shards_held ")
    }

    /// SIGTERM, and waits for a graceful exit.
    fn stop(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not stop on SIGTERM", self.identity);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn parent(i: usize, replicas: i64) -> Value {
    let name = format!("ms-{i:04}");
    json!({
        "apiVersion": "custom.ops/v1",
        "kind": "MicroServiceDeploy",
        "metadata": { "name": name },
        "spec": {
            "msName": name,
            "image": "registry.example/ms:1",
            "replicas": replicas,
            "autoscaling": false,
            "needAuth": false,
            "idle": false,
        },
    })
}

async fn create_parents(api: &Api<DynamicObject>, range: std::ops::Range<usize>) {
    let params = PatchParams::apply("test-user");
    futures::future::join_all(range.map(|i| {
        let (api, params) = (api.clone(), params.clone());
        async move {
            let object = parent(i, 1);
            let name = object["metadata"]["name"].as_str().unwrap().to_owned();
            api.patch(&name, &params, &Patch::Apply(&object)).await.unwrap();
        }
    }))
    .await;
}

/// Sets every parent's replicas to `replicas`, 20 at a time.
async fn patch_all(api: &Api<DynamicObject>, count: usize, replicas: i64) {
    let patches = futures::stream::iter(0..count).map(|i| {
        let api = api.clone();
        async move {
            let patch = json!({ "spec": { "replicas": replicas } });
            api.patch(&format!("ms-{i:04}"), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    });
    futures::StreamExt::buffer_unordered(patches, 20)
        .collect::<Vec<()>>()
        .await;
}

use futures::StreamExt as _;

/// Waits until `count` parents have their current generation observed and
/// their Deployment at `replicas` (when given).
async fn converged(ns: &TestNamespace, count: usize, replicas: Option<i64>, within: Duration) {
    let parents = msdeploy_api(ns);
    let deployments = ns.api::<k8s_openapi::api::apps::v1::Deployment>();
    until(&format!("{count} parents to converge"), within, || async {
        let list = parents.list(&ListParams::default()).await.map_err(|e| e.to_string())?;
        let behind = list
            .items
            .iter()
            .filter(|p| {
                let observed = p.data["status"]["observedGeneration"].as_i64();
                observed != p.metadata.generation
            })
            .count();
        if list.items.len() < count || behind > 0 {
            return Err(format!("{} parents, {behind} not observed", list.items.len()));
        }
        if let Some(replicas) = replicas {
            let wrong = deployments
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?
                .items
                .iter()
                .filter(|d| d.spec.as_ref().and_then(|s| s.replicas).map(i64::from) != Some(replicas))
                .count();
            if wrong > 0 {
                return Err(format!("{wrong} Deployments not at {replicas} replicas"));
            }
        }
        Ok(())
    })
    .await
}

async fn until_shards(hosts: &[&Host], each: f64, within: Duration) {
    until(&format!("each host to hold {each} shards"), within, || async {
        let held: Vec<Option<f64>> = hosts.iter().map(|h| h.shards_held()).collect();
        if held.iter().all(|h| *h == Some(each)) {
            Ok(())
        } else {
            Err(format!("shards held: {held:?}"))
        }
    })
    .await
}

/// The msdeploy ServiceAccount the hosts act as, with its rights.
async fn plugin_account(client: &kube::Client) {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/manager/namespace.yaml"))
        .unwrap();
    apply_yaml_stream(client, &text).await;
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac/plugin_msdeploy_role.yaml"))
            .unwrap();
    apply_yaml_stream(client, &text).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hosts_share_the_parents_through_death_rejoin_and_a_rolling_restart() {
    init_logs();
    let ns = TestNamespace::create("sharding").await;
    let client = ns.client();
    install_msdeploy_crd(&client).await;
    plugin_account(&client).await;
    let parents = msdeploy_api(&ns);
    let mut hosts = Hosts::new(&ns);
    let (h1, h2, h3) = (hosts.start("h1"), hosts.start("h2"), hosts.start("h3"));

    create_parents(&parents, 0..PARENTS).await;
    converged(&ns, PARENTS, Some(1), CONVERGE).await;
    until_shards(&[&h1, &h2, &h3], 4.0, Duration::from_secs(30)).await;
    // Each host counts the parents of its shards: together, all of them.
    until("the parents per shard to add up", Duration::from_secs(30), || async {
        let total: f64 = [&h1, &h2, &h3]
            .iter()
            .map(|h| h.metric_sum("trellis_shard_parents{"))
            .sum();
        if total == PARENTS as f64 {
            Ok(())
        } else {
            Err(format!("{total} parents counted"))
        }
    })
    .await;
    // `trellis status` shows each host with its four shards.
    let status = Command::new(&hosts.binary)
        .args(["status", "--namespace", ns.name()])
        .env("KUBECONFIG", &hosts.kubeconfig)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "trellis status: {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(text.starts_with("leader: h"), "{text}");
    for host in ["h1", "h2", "h3"] {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{host} ")))
            .unwrap_or_else(|| panic!("{host} in {text}"));
        let shards = row.split_whitespace().last().unwrap().split(',').count();
        assert_eq!(shards, 4, "{row}");
    }
    let shard_rows = text
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .count();
    assert_eq!(shard_rows, SHARDS as usize, "{text}");

    // SIGKILL one; the others take its shards once its Leases expire.
    let killed = Instant::now();
    h3.kill();
    create_parents(&parents, PARENTS..PARENTS + 30).await;
    until_shards(&[&h1, &h2], 6.0, Duration::from_secs(LEASE_SECONDS + 10)).await;
    let took = killed.elapsed();
    converged(&ns, PARENTS + 30, Some(1), CONVERGE).await;

    // Added back, it gets its share.
    let h3 = hosts.start("h3");
    until_shards(&[&h1, &h2, &h3], 4.0, Duration::from_secs(60)).await;

    // A rolling restart, every parent patched while each host restarts.
    let mut running = vec![h1, h2, h3];
    for (step, replicas) in [2i64, 3, 4].into_iter().enumerate() {
        let host = running.remove(0);
        let identity = host.identity.clone();
        let (_, ()) = tokio::join!(
            tokio::task::spawn_blocking(move || host.stop()),
            patch_all(&parents, PARENTS + 30, replicas)
        );
        running.push(hosts.start(&identity));
        let all: Vec<&Host> = running.iter().collect();
        until_shards(&all, 4.0, Duration::from_secs(60)).await;
        tracing::info!(step, "host {identity} restarted");
    }
    converged(&ns, PARENTS + 30, Some(4), CONVERGE).await;

    for host in running {
        tokio::task::spawn_blocking(move || host.stop()).await.unwrap();
    }

    // No parent was ever reconciled by two hosts at once.
    let turns = hosts.turns();
    let mut by_parent: BTreeMap<String, Vec<(jiff::Timestamp, jiff::Timestamp, String)>> = BTreeMap::new();
    for (parent, replica, began, ended) in &turns {
        let at = |t: &str| {
            t.parse::<jiff::Timestamp>()
                .unwrap_or_else(|e| panic!("timestamp {t}: {e}"))
        };
        by_parent
            .entry(parent.clone())
            .or_default()
            .push((at(began), at(ended), replica.clone()));
    }
    assert!(
        by_parent.len() >= PARENTS + 30,
        "turns of {} parents logged",
        by_parent.len()
    );
    for (parent, mut intervals) in by_parent {
        intervals.sort();
        // The latest end of each replica's turns so far.
        let mut ends: BTreeMap<String, jiff::Timestamp> = BTreeMap::new();
        for (began, ended, replica) in intervals {
            for (other, end) in &ends {
                assert!(
                    other == &replica || began >= *end,
                    "{parent} was reconciled by {other} until {end} and by {replica} from {began}"
                );
            }
            let end = ends.entry(replica).or_insert(ended);
            *end = (*end).max(ended);
        }
    }
    assert!(took <= Duration::from_secs(LEASE_SECONDS + 10), "took {took:?}");
    println!(
        "{} turns checked; the killed host's shards were taken after {took:?}",
        turns.len()
    );
}
