//! Two replicas, one Lease: only the leader reconciles; when it dies the
//! other takes over, a replica that shuts down hands over at once, and a
//! leader cut off from the API server stops before another can lead.

mod common;

use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::json;
use trellis::leader::LeaderOptions;
use trellis_testenv::TestNamespace;
use trellis_testenv::proxy::CuttableProxy;
use trellis_testenv::wait::until;

const NAME: &str = "ms-sample-v1s0";
const RECONCILES: &str = r#"trellis_reconciles_total{plugin="msdeploy"}"#;
const LEASE_DURATION: Duration = Duration::from_secs(4);
/// Held by the tests that time compiles or renewals, so they do not share
/// the two cores with each other.
static TIMED: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn leader_options(ns: &TestNamespace, identity: &str) -> LeaderOptions {
    LeaderOptions {
        namespace: ns.name().to_owned(),
        name: "trellis-leader".into(),
        identity: identity.into(),
        lease_duration: LEASE_DURATION,
    }
}

async fn replica(ns: &TestNamespace, identity: &str) -> TestHost {
    replica_with(ns, identity, |o| o).await
}

async fn replica_with(
    ns: &TestNamespace,
    identity: &str,
    tune: impl FnOnce(trellis::host::HostOptions) -> trellis::host::HostOptions,
) -> TestHost {
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
    let leader = leader_options(ns, identity);
    TestHost::start_in(ns, plugins, |mut o| {
        o.leader = Some(leader);
        tune(o)
    })
    .await
}

async fn eventually_held_by(ns: &TestNamespace, identity: &str) -> Lease {
    let leases = ns.api::<Lease>();
    until(&format!("the Lease to be held by {identity}"), SETTLE, || async {
        let lease = leases.get_opt("trellis-leader").await.map_err(|e| e.to_string())?;
        let holder = lease
            .as_ref()
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.holder_identity.clone());
        match lease {
            Some(lease) if holder.as_deref() == Some(identity) => Ok(lease),
            _ => Err(format!("holder {holder:?}")),
        }
    })
    .await
}

async fn eventually_image(ns: &TestNamespace, image: &str) {
    let deployments = ns.api::<Deployment>();
    until(&format!("the Deployment to run {image}"), SETTLE, || async {
        let d = deployments
            .get_opt(NAME)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("no Deployment yet")?;
        let current = d.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
        if current.as_deref() == Some(image) {
            Ok(())
        } else {
            Err(format!("image {current:?}"))
        }
    })
    .await;
}

async fn set_image(ns: &TestNamespace, image: &str) {
    let mut sample = msdeploy_sample();
    sample["spec"]["image"] = json!(image);
    apply_as_user(&msdeploy_api(ns), &sample).await;
}

#[tokio::test]
async fn only_the_leader_reconciles_and_a_follower_takes_over() {
    let ns = TestNamespace::create("leader").await;
    install_msdeploy_crd(&ns.client()).await;
    let a = replica(&ns, "replica-a").await;
    eventually_held_by(&ns, "replica-a").await;
    let b = replica(&ns, "replica-b").await;

    set_image(&ns, "example/ms:1").await;
    eventually_image(&ns, "example/ms:1").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(counter(&b.metrics, RECONCILES), 0.0, "the follower reconciled");
    assert!(counter(&a.metrics, RECONCILES) > 0.0);

    // The leader dies without releasing: the follower waits out the Lease.
    let died = Instant::now();
    let _ = a.kill();
    set_image(&ns, "example/ms:2").await;
    eventually_image(&ns, "example/ms:2").await;
    let lease = eventually_held_by(&ns, "replica-b").await;
    let took = died.elapsed();
    assert!(
        took >= LEASE_DURATION - Duration::from_millis(500),
        "took over after {took:?}, before the Lease expired"
    );
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or(0) >= 1);

    // A replica that shuts down hands the Lease over without waiting.
    let c = replica(&ns, "replica-c").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = Instant::now();
    let _ = b.stop().await;
    eventually_held_by(&ns, "replica-c").await;
    assert!(
        stopped.elapsed() < LEASE_DURATION,
        "handover took {:?}",
        stopped.elapsed()
    );
    set_image(&ns, "example/ms:3").await;
    eventually_image(&ns, "example/ms:3").await;
    assert!(counter(&c.metrics, RECONCILES) > 0.0);
}

/// The leader's connections to the API server go silent (a partition: its
/// requests hang, nothing fails fast). It stops its controllers within the
/// renew deadline, before the other replica can see the Lease expire and
/// lead: at no instant do both run controllers. The other then serves.
#[tokio::test]
async fn a_leader_cut_off_from_the_api_stops_before_another_can_lead() {
    let _alone = TIMED.lock().await;
    let ns = TestNamespace::create("cut-off").await;
    install_msdeploy_crd(&ns.client()).await;
    let config = ns.env().config();
    let upstream = config
        .cluster_url
        .authority()
        .and_then(|a| a.as_str().parse().ok())
        .expect("the API server's address");
    let proxy = CuttableProxy::start(upstream).await;
    let through_proxy = kube::Client::try_from(proxy.config_through(config)).unwrap();
    let plugins = tempfile::tempdir().unwrap();
    add_plugin(plugins.path(), "trellis-plugin-msdeploy", "msdeploy.wasm");
    let namespace = ns.name().to_owned();
    let leader = leader_options(&ns, "cut-a");
    let a = TestHost::start_with_client(through_proxy, plugins, |mut o| {
        o.namespace = Some(namespace);
        o.plugin_accounts = trellis::controller::PluginAccounts::HostClient;
        o.leader = Some(leader);
        o
    })
    .await;
    eventually_held_by(&ns, "cut-a").await;
    let b = replica(&ns, "cut-b").await;
    set_image(&ns, "example/ms:1").await;
    eventually_image(&ns, "example/ms:1").await;
    let leading = "trellis_leading";
    assert_eq!(counter(&a.metrics, leading), 1.0, "the leader runs controllers");
    assert_eq!(counter(&b.metrics, leading), 0.0, "the follower runs none");

    let cut = Instant::now();
    proxy.cut();
    // When a stopped its controllers, and when b started its own.
    let (mut a_stopped, mut b_started) = (None, None);
    while (a_stopped.is_none() || b_started.is_none()) && cut.elapsed() < Duration::from_secs(30) {
        if a_stopped.is_none() && counter(&a.metrics, leading) == 0.0 {
            a_stopped = Some(cut.elapsed());
        }
        if b_started.is_none() && counter(&b.metrics, leading) == 1.0 {
            b_started = Some(cut.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "after the cut: the cut-off leader stopped its controllers at {a_stopped:?}, the other started its own at {b_started:?} (Lease {LEASE_DURATION:?}, renew deadline {:?})",
        LEASE_DURATION * 2 / 3
    );
    let (a_stopped, b_started) = (
        a_stopped.expect("the cut-off leader never stopped its controllers"),
        b_started.expect("the other replica never took over"),
    );
    assert!(
        a_stopped < b_started,
        "the other replica led at {b_started:?}, before the cut-off one stopped at {a_stopped:?}"
    );
    // Its last renewal was at most a retry period before the cut.
    assert!(
        a_stopped <= LEASE_DURATION * 2 / 3 + Duration::from_millis(500),
        "the cut-off leader stopped only at {a_stopped:?}"
    );
    set_image(&ns, "example/ms:2").await;
    eventually_image(&ns, "example/ms:2").await;
    assert!(counter(&b.metrics, RECONCILES) > 0.0);
    let _ = b.stop().await;
    let _ = a.kill();
}

/// `module` with a custom section appended: the same component, other
/// bytes, so the host compiles it again (no cache hit).
fn variant(module: &[u8], n: u64) -> Vec<u8> {
    let name = b"trellis-test-variant";
    let payload = n.to_le_bytes();
    let mut section = vec![u8::try_from(name.len()).unwrap()];
    section.extend_from_slice(name);
    section.extend_from_slice(&payload);
    let mut out = module.to_vec();
    out.push(0); // custom section id
    out.push(u8::try_from(section.len()).unwrap()); // its size (< 128: one LEB128 byte)
    out.extend_from_slice(&section);
    out
}

/// Writes `count` new variants of `module` into `dir` (replacing the last
/// round's), so the next sync of the host over `dir` compiles each again.
fn stall_next_sync(dir: &std::path::Path, module: &[u8], round: u64, count: u64) {
    for i in 0..count {
        let path = dir.join(format!("heavy-{i}.wasm"));
        let partial = dir.join(format!(".heavy-{i}.partial"));
        std::fs::write(&partial, variant(module, round * 1000 + i)).unwrap();
        std::fs::rename(&partial, &path).unwrap();
    }
}

/// Two replicas; every registry sync of the leader is stalled by slow
/// compiles (modules replaced before each sync, each sync longer than the
/// Lease), while the parent keeps changing: the Lease is renewed on its own
/// task, so the other replica never takes over meanwhile, at no instant do
/// both write, and when the leader stops the other takes over after it.
#[tokio::test]
async fn a_stalled_registry_sync_never_makes_two_writers() {
    let _alone = TIMED.lock().await;
    let ns = TestNamespace::create("stalled").await;
    install_msdeploy_crd(&ns.client()).await;
    let heavy = trellis::testing::guest_bytes("trellis-plugin-redis");
    // A module cache of its own each, so every compile counts as a miss.
    let (cache_a, cache_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let with_cache = |dir: &tempfile::TempDir| {
        let dir = dir.path().to_owned();
        move |mut o: trellis::host::HostOptions| {
            o.module_cache_dir = Some(dir);
            o
        }
    };
    let a = replica_with(&ns, "stalled-a", with_cache(&cache_a)).await;
    eventually_held_by(&ns, "stalled-a").await;
    let b = replica_with(&ns, "stalled-b", with_cache(&cache_b)).await;
    set_image(&ns, "example/ms:0").await;
    eventually_image(&ns, "example/ms:0").await;

    // Who wrote, sampled every 50 ms: (time, replica, applies since the last sample).
    let applied = r#"trellis_writes_total{plugin="msdeploy",write="applied"}"#;
    let compiles = r#"trellis_module_cache_compiles{result="miss"}"#;
    let started = Instant::now();
    let (mut last_a, mut last_b) = (counter(&a.metrics, applied), counter(&b.metrics, applied));
    let mut writes: Vec<(Duration, &str, f64)> = Vec::new();
    let mut both_wrote = Vec::new();
    let mut round = 0;
    let mut a = Some(a);
    let mut a_stopped_at = None;
    let mut compiled_by_a = 0.0;
    while started.elapsed() < Duration::from_secs(24) {
        if round % 10 == 0 {
            // Every half second: the parent changes, and the leader's folder
            // gets modules that take its next sync seconds to compile (the
            // other replica's syncs stay fast).
            set_image(&ns, &format!("example/ms:{}", round / 10 + 1)).await;
            if let Some(a) = &a {
                stall_next_sync(a.plugins_dir.path(), &heavy, round, 3);
            }
        }
        if round == 240 {
            // Halfway: the leader stops; the other must take over.
            let leader = a.take().unwrap();
            compiled_by_a = counter(&leader.metrics, compiles);
            let _ = leader.stop().await;
            a_stopped_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        round += 1;
        let now_a = a.as_ref().map_or(last_a, |a| counter(&a.metrics, applied));
        let now_b = counter(&b.metrics, applied);
        let at = started.elapsed();
        if now_a > last_a {
            writes.push((at, "stalled-a", now_a - last_a));
        }
        if now_b > last_b {
            writes.push((at, "stalled-b", now_b - last_b));
        }
        if now_a > last_a && now_b > last_b {
            both_wrote.push(at);
        }
        (last_a, last_b) = (now_a, now_b);
    }
    for (at, replica, n) in &writes {
        eprintln!(
            "{:>6.2} s  {replica}  {n} applies (field manager trellis/msdeploy)",
            at.as_secs_f64()
        );
    }
    assert!(both_wrote.is_empty(), "both replicas wrote at {both_wrote:?}");
    let a_stopped_at = a_stopped_at.unwrap();
    let last_a_write = writes.iter().filter(|w| w.1 == "stalled-a").map(|w| w.0).max();
    let first_b_write = writes.iter().filter(|w| w.1 == "stalled-b").map(|w| w.0).min();
    assert!(last_a_write.is_some(), "the leader never wrote during the stalls");
    assert!(
        last_a_write.unwrap() <= a_stopped_at && first_b_write.is_some_and(|b| b > a_stopped_at),
        "the follower wrote while the leader led: a last {last_a_write:?}, b first {first_b_write:?}, a stopped at {a_stopped_at:?}"
    );
    // The stall was real: syncs compiled three modules each, ~1.5 s apiece,
    // so a whole sync and more outlasted the Lease (more on a calm machine;
    // compiles run one at a time, on threads that may run at plugin nice).
    eprintln!("compiles while leading: stalled-a {compiled_by_a}");
    assert!(
        compiled_by_a >= 4.0,
        "the leader's syncs were not stalled by compiles ({compiled_by_a})"
    );
    eventually_held_by(&ns, "stalled-b").await;
    let deployment = ns.api::<Deployment>().get(NAME).await.unwrap();
    let managers: Vec<_> = deployment
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter_map(|f| f.manager)
        .filter(|m| m.starts_with("trellis"))
        .collect();
    assert_eq!(managers, ["trellis/msdeploy"], "field managers of the Deployment");
    let _ = b.stop().await;
}
