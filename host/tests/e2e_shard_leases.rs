//! The shard Lease protocol on a real API server: three replicas share
//! twelve shards four each; when one dies the others take its shards once
//! its Leases expire; one rejoining gets its share back; one leaving hands
//! over at once; and a shard given up keeps its Lease until its reconciles
//! in flight end. Throughout, no shard is ever held by two replicas at once.

use k8s_openapi::api::coordination::v1::Lease;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use trellis::shard::{Ownership, ShardBy, ShardLeases, ShardOptions};
use trellis_testenv::TestNamespace;
use trellis_testenv::wait::until;

const SHARDS: u32 = 12;
const LEASE_DURATION: Duration = Duration::from_secs(3);

fn options(ns: &TestNamespace, identity: &str) -> ShardOptions {
    ShardOptions {
        namespace: ns.name().to_owned(),
        identity: identity.into(),
        lease_duration: LEASE_DURATION,
    }
}

struct Replica {
    ownership: Arc<Ownership>,
    leases: ShardLeases,
}

fn replica(ns: &TestNamespace, identity: &str) -> Replica {
    let ownership = Ownership::new(SHARDS, ShardBy::Name);
    let leases = ShardLeases::spawn(ns.client(), options(ns, identity), ownership.clone());
    Replica { ownership, leases }
}

/// Watches the replicas' held shards every 5 ms and fails the test if two
/// ever hold one shard at once.
struct OverlapWatch {
    stop: Arc<AtomicBool>,
    task: std::thread::JoinHandle<Result<usize, String>>,
}

impl OverlapWatch {
    fn start(owners: Vec<(String, Arc<Ownership>)>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = std::thread::spawn(move || {
            let mut looks = 0;
            while !stopped.load(Ordering::Acquire) {
                let mut seen: BTreeSet<u32> = BTreeSet::new();
                for (name, owner) in &owners {
                    for shard in owner.held() {
                        if !seen.insert(shard) {
                            return Err(format!("shard {shard} held twice (by {name} and another)"));
                        }
                    }
                }
                looks += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(looks)
        });
        Self { stop, task }
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Release);
        let looks = self.task.join().unwrap().unwrap_or_else(|e| panic!("{e}"));
        assert!(looks > 100, "the watch looked only {looks} times");
    }
}

async fn until_held(what: &str, within: Duration, replicas: &[(&str, &Arc<Ownership>, usize)]) {
    until(what, within, || async {
        let counts: Vec<(String, usize)> = replicas
            .iter()
            .map(|(name, owner, _)| (name.to_string(), owner.held().len()))
            .collect();
        if replicas.iter().zip(&counts).all(|((_, _, want), (_, got))| want == got) {
            Ok(())
        } else {
            Err(format!("held: {counts:?}"))
        }
    })
    .await
}

async fn lease_holders(ns: &TestNamespace) -> Vec<Option<String>> {
    let leases = ns.api::<Lease>();
    let mut holders = Vec::new();
    for shard in 0..SHARDS {
        let lease = leases.get_opt(&format!("trellis-shard-{shard}")).await.unwrap();
        holders.push(lease.and_then(|l| l.spec).and_then(|s| s.holder_identity));
    }
    holders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_the_shards_and_take_over_from_a_dead_one() {
    let ns = TestNamespace::create("shard-leases").await;
    let (a, b, c) = (replica(&ns, "a"), replica(&ns, "b"), replica(&ns, "c"));
    let watch = OverlapWatch::start(vec![
        ("a".into(), a.ownership.clone()),
        ("b".into(), b.ownership.clone()),
        ("c".into(), c.ownership.clone()),
    ]);
    until_held(
        "four shards each",
        Duration::from_secs(30),
        &[("a", &a.ownership, 4), ("b", &b.ownership, 4), ("c", &c.ownership, 4)],
    )
    .await;
    let holders = lease_holders(&ns).await;
    for (name, owner) in [("a", &a.ownership), ("b", &b.ownership), ("c", &c.ownership)] {
        let by_lease: BTreeSet<u32> = (0..SHARDS)
            .filter(|&s| holders[s as usize].as_deref() == Some(name))
            .collect();
        assert_eq!(by_lease, owner.held(), "{name}'s Leases are the shards it reconciles");
    }

    // c dies: its shards go to a and b once its Leases expire.
    let died = Instant::now();
    c.leases.abandon();
    let c_held = c.ownership.held();
    // (Its Ownership is gone with it; forget it in the overlap watch by
    // no longer asking: a dead process reconciles nothing.)
    watch.finish();
    let watch = OverlapWatch::start(vec![
        ("a".into(), a.ownership.clone()),
        ("b".into(), b.ownership.clone()),
    ]);
    until_held(
        "a and b hold six each",
        LEASE_DURATION + Duration::from_secs(10),
        &[("a", &a.ownership, 6), ("b", &b.ownership, 6)],
    )
    .await;
    let took = died.elapsed();
    assert!(
        took >= LEASE_DURATION,
        "c's shards were taken before its Leases expired ({took:?})"
    );
    let now_held: BTreeSet<u32> = a.ownership.held().union(&b.ownership.held()).copied().collect();
    assert!(c_held.is_subset(&now_held), "every shard of c is taken over");

    // c rejoins: four shards move to it.
    let c = replica(&ns, "c");
    watch.finish();
    let watch = OverlapWatch::start(vec![
        ("a".into(), a.ownership.clone()),
        ("b".into(), b.ownership.clone()),
        ("c".into(), c.ownership.clone()),
    ]);
    until_held(
        "four shards each again",
        Duration::from_secs(30),
        &[("a", &a.ownership, 4), ("b", &b.ownership, 4), ("c", &c.ownership, 4)],
    )
    .await;

    // a leaves: b and c take its shards at once, long before they expire.
    let left = Instant::now();
    a.leases.release().await;
    until_held(
        "b and c hold six each",
        Duration::from_secs(30),
        &[("b", &b.ownership, 6), ("c", &c.ownership, 6)],
    )
    .await;
    assert!(
        left.elapsed() < LEASE_DURATION,
        "a hand-over on leaving waits for no expiry ({:?})",
        left.elapsed()
    );
    assert!(
        ns.api::<Lease>().get_opt("trellis-member-a").await.unwrap().is_none(),
        "a's heartbeat is deleted"
    );
    watch.finish();
    b.leases.release().await;
    c.leases.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_given_up_keeps_its_lease_until_its_reconciles_end() {
    let ns = TestNamespace::create("shard-drain").await;
    let a = replica(&ns, "a");
    until_held("a holds all", Duration::from_secs(30), &[("a", &a.ownership, 12)]).await;
    // A reconcile in flight in every shard.
    let running: Vec<_> = (0..SHARDS).map(|s| a.ownership.begin(s).expect("held")).collect();
    let b = replica(&ns, "b");
    until_held(
        "a withdraws the six it gives up",
        Duration::from_secs(30),
        &[("a", &a.ownership, 6)],
    )
    .await;
    let given_up: BTreeSet<u32> = (0..SHARDS).filter(|s| !a.ownership.held().contains(s)).collect();
    // Several renewal rounds later, the given-up shards are still a's
    // Leases, and b reconciles none of them.
    tokio::time::sleep(LEASE_DURATION).await;
    let holders = lease_holders(&ns).await;
    for &shard in &given_up {
        assert_eq!(
            holders[shard as usize].as_deref(),
            Some("a"),
            "shard {shard} is kept while in flight"
        );
    }
    assert!(b.ownership.held().is_empty(), "b waits: {:?}", b.ownership.held());
    drop(running);
    until_held(
        "b takes the six once they are drained",
        Duration::from_secs(30),
        &[("a", &a.ownership, 6), ("b", &b.ownership, 6)],
    )
    .await;
    assert_eq!(b.ownership.held(), given_up);
    a.leases.release().await;
    b.leases.release().await;
}
