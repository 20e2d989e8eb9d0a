//! The sharded runs of the scale benchmark (`TRELLIS_SCALE_REPLICAS`, e.g.
//! `1,2,3`): for each N and each replica count R, R `trellis run`
//! processes with `--shards 12` (and otherwise shipped defaults: 15 s
//! Leases) share N parents on a fresh namespace (their Leases there too). Per phase (create, update): the wall time, the
//! throughput in parents per second, the host CPU per replica and in all,
//! and the apiserver's CPU. On one machine the apiserver shares the cores
//! with the replicas and soon is the limit; what the figures show is that
//! the hosts' share of the work splits among the replicas.

use super::{Bench, REPLICAS, SETTLE};
use crate::procs::{self, Controller, Running, usage};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Shards of every sharded run.
const SHARDS: u32 = 12;

/// One phase of a sharded run.
struct ShardedPhase {
    wall: Duration,
    host_cpu: Vec<Duration>,
    apiserver_cpu: Duration,
}

impl ShardedPhase {
    fn json(&self, n: usize) -> Value {
        let secs = |d: Duration| (d.as_secs_f64() * 1000.0).round() / 1000.0;
        json!({
            "wall_s": secs(self.wall),
            "parents_per_s": (n as f64 / self.wall.as_secs_f64() * 10.0).round() / 10.0,
            "host_cpu_s_per_replica": self.host_cpu.iter().map(|c| secs(*c)).collect::<Vec<_>>(),
            "host_cpu_s": secs(self.host_cpu.iter().sum()),
            "apiserver_cpu_s": secs(self.apiserver_cpu),
        })
    }
}

/// The replica counts asked for, if any.
pub fn replica_counts() -> Option<Vec<usize>> {
    let text = std::env::var("TRELLIS_SCALE_REPLICAS").ok()?;
    let counts: Vec<usize> = text
        .split(',')
        .map(|r| {
            r.trim()
                .parse()
                .ok()
                .filter(|&r| r >= 1)
                .unwrap_or_else(|| panic!("TRELLIS_SCALE_REPLICAS: {r:?} is not a count"))
        })
        .collect();
    Some(counts)
}

/// Waits until the replicas hold all the shards, none above its share.
async fn shares_settled(replicas: &[Running]) {
    let share = SHARDS.div_ceil(replicas.len() as u32) as f64;
    let started = Instant::now();
    loop {
        let mut held = Vec::new();
        for r in replicas {
            let text = r.scrape().await;
            held.push(
                text.lines()
                    .find_map(|l| l.strip_prefix("trellis_shards_held ")?.trim().parse::<f64>().ok())
                    .unwrap_or(0.0),
            );
        }
        if held.iter().sum::<f64>() == SHARDS as f64 && held.iter().all(|&h| h <= share) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "shards not settled: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// R replicas on N parents: create, then update.
async fn run(bench: &Bench, n: usize, replicas: usize) -> (ShardedPhase, ShardedPhase) {
    let namespace = format!("sharded-{n}-{replicas}");
    let driver = bench.fresh_namespace(&namespace).await;
    eprintln!("trellis x{replicas} on {n} parents (namespace {namespace})");
    let mut running: Vec<Running> = (0..replicas)
        .map(|i| {
            let extra = [
                "--shards".to_owned(),
                SHARDS.to_string(),
                "--identity".to_owned(),
                format!("replica-{i}"),
                "--lease-namespace".to_owned(),
                namespace.clone(),
            ];
            Controller::Trellis.start_with(
                bench.env.kubeconfig_path(),
                &namespace,
                procs::free_addr(),
                bench.plugins.path(),
                &extra,
            )
        })
        .collect();
    for r in &mut running {
        r.wait_ready().await;
    }
    shares_settled(&running).await;
    tokio::time::sleep(SETTLE).await;

    let cpu = |running: &[Running]| -> (Vec<Duration>, Duration) {
        (
            running.iter().map(|r| usage(r.pid()).cpu).collect(),
            usage(bench.apiserver).cpu,
        )
    };
    let phase = |before: &(Vec<Duration>, Duration), after: &(Vec<Duration>, Duration), wall| ShardedPhase {
        wall,
        host_cpu: after
            .0
            .iter()
            .zip(&before.0)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect(),
        apiserver_cpu: after.1.saturating_sub(before.1),
    };
    let idle = cpu(&running);
    let started = Instant::now();
    driver.apply_all(n, REPLICAS.0).await;
    let wall = driver.until_converged("create", n, REPLICAS.0, started).await;
    let created = cpu(&running);
    let create = phase(&idle, &created, wall);
    let started = Instant::now();
    driver.apply_all(n, REPLICAS.1).await;
    let wall = driver.until_converged("update", n, REPLICAS.1, started).await;
    let update = phase(&created, &cpu(&running), wall);
    for r in running {
        r.stop();
    }
    driver.clean_up().await;
    (create, update)
}

/// Runs every N with every replica count; prints a table and returns the
/// figures as JSON.
pub async fn run_all(bench: &Bench, sizes: &[usize], counts: &[usize]) -> Value {
    let mut rows = Vec::new();
    for &n in sizes {
        let mut table = Vec::new();
        for &replicas in counts {
            let (create, update) = run(bench, n, replicas).await;
            table.push((replicas, create, update));
        }
        println!("\nN = {n}, {SHARDS} shards");
        println!(
            "{:<9} {:<7} {:>8} {:>10} {:>22} {:>12} {:>14}",
            "replicas", "phase", "wall s", "parents/s", "host CPU s per replica", "host CPU s", "apiserver CPU s"
        );
        for (replicas, create, update) in &table {
            for (name, phase) in [("create", create), ("update", update)] {
                let per: Vec<String> = phase
                    .host_cpu
                    .iter()
                    .map(|c| format!("{:.1}", c.as_secs_f64()))
                    .collect();
                println!(
                    "{replicas:<9} {name:<7} {:>8.1} {:>10.1} {:>22} {:>12.1} {:>14.1}",
                    phase.wall.as_secs_f64(),
                    n as f64 / phase.wall.as_secs_f64(),
                    per.join(" / "),
                    phase.host_cpu.iter().sum::<Duration>().as_secs_f64(),
                    phase.apiserver_cpu.as_secs_f64()
                );
            }
            rows.push(json!({
                "n": n,
                "replicas": replicas,
                "shards": SHARDS,
                "create": create.json(n),
                "update": update.json(n),
            }));
        }
    }
    json!({ "sharded": rows })
}
