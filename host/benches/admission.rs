//! Admission benchmark: what the plugins' webhooks add to a request, on one
//! local control plane, in one run.
//!
//! `TRELLIS_ADMISSION_N` (default 300) server-side dry-run creates of a
//! `MyDaemonSet` each, one at a time, in three phases:
//! - `no-webhook`: before the host runs (the CRD alone), the baseline;
//! - `admitted`: the host serves mydaemonset's mutating (`:latest`) and
//!   validating webhooks; each request passes both;
//! - `refused`: without `image`, refused by the plugin's validate.
//!
//! Per phase: the client's latency (p50, p99, mean) and, from the host's
//! `trellis_admission_seconds`, the host-side time per admission call
//! (mean, and p50/p99 as histogram bucket bounds), per hook. The table goes
//! to stdout, the figures to `target/admission-bench.json`.
//!
//! Run: `make plugins`, then `cargo bench -p trellis --bench admission`.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use trellis::admission::AdmissionOptions;
use trellis::controller::PluginAccounts;
use trellis::host::{HostOptions, run_host};
use trellis::metrics::Metrics;
use trellis::server::Readiness;
use trellis_testenv::TestEnv;
use trellis_testenv::wait::{install_crd, until};

const MYDAEMONSET_CRD: &str = include_str!("../../deploy/crds/apps.zhongmingmao.io_mydaemonsets.yaml");

/// Latencies in ms: p50, p99, mean.
fn summary(mut ms: Vec<f64>) -> Value {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 - 1.0) * q).round() as usize];
    json!({"n": ms.len(), "p50_ms": at(0.5), "p99_ms": at(0.99), "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64})
}

/// `count` dry-run creates of a MyDaemonSet with `image`, one at a time.
async fn creates(api: &Api<DynamicObject>, image: Option<&str>, count: usize) -> (Vec<f64>, usize) {
    let dry_run = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let (mut ms, mut refused) = (Vec::with_capacity(count), 0);
    for i in 0..count {
        let spec = image.map_or(json!({}), |image| json!({"image": image}));
        let object = json!({"apiVersion": "apps.zhongmingmao.io/v1beta1", "kind": "MyDaemonSet",
            "metadata": {"name": format!("bench-{i}")}, "spec": spec});
        let started = Instant::now();
        let result = api.create(&dry_run, &serde_json::from_value(object).unwrap()).await;
        ms.push(started.elapsed().as_secs_f64() * 1e3);
        if result.is_err() {
            refused += 1;
        }
    }
    (ms, refused)
}

/// The host-side figures of `hook`'s answers with `verdict` from the
/// metrics: count, mean, and the bucket bounds holding p50 and p99.
fn host_side(metrics: &Metrics, hook: &str, verdict: &str) -> Value {
    let text = metrics.encode();
    let labels = format!("plugin=\"mydaemonset\",hook=\"{hook}\",verdict=\"{verdict}\"");
    let value = |series: &str| {
        text.lines()
            .find(|l| l.starts_with(series) && l.contains(&labels))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let count = value("trellis_admission_seconds_count");
    let sum = value("trellis_admission_seconds_sum");
    let buckets: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.starts_with("trellis_admission_seconds_bucket") && l.contains(&labels))
        .filter_map(|l| {
            let le = l.split("le=\"").nth(1)?.split('"').next()?;
            let bound = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((bound, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect();
    let bound = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n >= q * count)
            .map_or(f64::NAN, |(b, _)| b * 1e3)
    };
    json!({"n": count, "mean_ms": if count > 0.0 { sum / count * 1e3 } else { f64::NAN },
        "p50_at_most_ms": bound(0.5), "p99_at_most_ms": bound(0.99)})
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::var("TRELLIS_ADMISSION_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    eprintln!("admission benchmark: {n} server-side dry-run creates per phase");
    let env = TestEnv::builder().start().await.expect("control plane");
    let client = env.client();
    let mut crd: Value = serde_yaml::from_str(MYDAEMONSET_CRD).unwrap();
    // The message must come from the plugin, not the CRD's CEL rule.
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        .as_object_mut()
        .unwrap()
        .remove("x-kubernetes-validations");
    install_crd(&client, &serde_json::from_value(crd).unwrap()).await;
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk("apps.zhongmingmao.io", "v1beta1", "MyDaemonSet"));
    let daemons: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    // Warm the client's connection and the apiserver's caches.
    creates(&daemons, Some("nginx:1"), 20).await;
    let (baseline, _) = creates(&daemons, Some("nginx"), n).await;

    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(
        trellis::testing::guest_module("trellis-plugin-mydaemonset"),
        plugins.path().join("mydaemonset.wasm"),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut options = HostOptions::new(plugins.path());
    options.plugin_accounts = PluginAccounts::HostClient;
    options.poll = Duration::from_millis(300);
    options.admission = Some(
        AdmissionOptions::new(
            format!("127.0.0.1:{port}").parse().unwrap(),
            Some(format!("https://127.0.0.1:{port}")),
            "default",
        )
        .unwrap(),
    );
    let metrics = Metrics::new();
    let (stop, shutdown) = watch::channel(false);
    let host = tokio::spawn(run_host(
        client.clone(),
        options,
        metrics.clone(),
        Readiness::default(),
        shutdown,
    ));
    until("the webhooks to default", Duration::from_secs(120), || async {
        let object = json!({"apiVersion": "apps.zhongmingmao.io/v1beta1", "kind": "MyDaemonSet",
            "metadata": {"name": "probe"}, "spec": {"image": "nginx"}});
        let created = daemons
            .create(
                &PostParams {
                    dry_run: true,
                    ..Default::default()
                },
                &serde_json::from_value(object).unwrap(),
            )
            .await
            .map_err(|e| e.to_string())?;
        (created.data["spec"]["image"] == "nginx:latest")
            .then_some(())
            .ok_or("not yet".to_owned())
    })
    .await;
    creates(&daemons, Some("nginx"), 20).await;
    let warm = (
        host_side(&metrics, "mutate", "patched"),
        host_side(&metrics, "validate", "allowed"),
    );
    let (admitted, admitted_refused) = creates(&daemons, Some("nginx"), n).await;
    let (refused, refused_count) = creates(&daemons, None, n).await;
    assert_eq!(admitted_refused, 0, "admitted requests were refused");
    assert_eq!(refused_count, n, "requests without image were admitted");
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(20), host).await;

    let report = json!({
        "n": n,
        "client": {"no-webhook": summary(baseline), "admitted": summary(admitted), "refused": summary(refused)},
        "host": {
            "mutate_patched": host_side(&metrics, "mutate", "patched"),
            "validate_allowed": host_side(&metrics, "validate", "allowed"),
            "validate_denied": host_side(&metrics, "validate", "denied"),
            "warmup_counts": {"mutate": warm.0["n"], "validate": warm.1["n"]},
        },
    });
    println!("{:<34} {:>8} {:>8} {:>8}", "client latency (ms)", "p50", "p99", "mean");
    for phase in ["no-webhook", "admitted", "refused"] {
        let s = &report["client"][phase];
        println!(
            "{phase:<34} {:>8.2} {:>8.2} {:>8.2}",
            s["p50_ms"].as_f64().unwrap(),
            s["p99_ms"].as_f64().unwrap(),
            s["mean_ms"].as_f64().unwrap()
        );
    }
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8}",
        "host side per call (ms)", "p50<=", "p99<=", "mean", "calls"
    );
    for series in ["mutate_patched", "validate_allowed", "validate_denied"] {
        let s = &report["host"][series];
        println!(
            "{series:<34} {:>8.2} {:>8.2} {:>8.3} {:>8}",
            s["p50_at_most_ms"].as_f64().unwrap_or(f64::NAN),
            s["p99_at_most_ms"].as_f64().unwrap_or(f64::NAN),
            s["mean_ms"].as_f64().unwrap_or(f64::NAN),
            s["n"]
        );
    }
    let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/admission-bench.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    eprintln!("figures in {}", out.display());
}
