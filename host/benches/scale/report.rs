//! The figures of a phase, the printed table and the JSON.

use crate::procs::{Controller, Usage};
use crate::requests::{READS, Requests, WRITES, metric_sum};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Everything read at one instant.
pub struct Snapshot {
    pub at: Instant,
    pub controller: Usage,
    pub apiserver: Usage,
    /// The apiserver's request counter.
    pub requests: Requests,
    /// The driver's own requests so far.
    pub driver: Requests,
    /// The controller's /metrics.
    pub metrics: String,
}

/// What the controller counts of its own writes.
const OWN_WRITES: [&str; 4] = ["applied", "skipped", "pruned", "status"];

/// The figures of one phase of one controller.
#[derive(Debug, Clone)]
pub struct Phase {
    pub parents: usize,
    pub wall: Duration,
    pub controller_cpu: Duration,
    pub apiserver_cpu: Duration,
    pub peak_rss_kib: u64,
    pub reconciles: f64,
    pub own_writes: BTreeMap<&'static str, f64>,
    /// Requests on the bench's kinds, the driver's taken out.
    pub requests: Requests,
    /// Requests on other kinds (apiserver background included).
    pub other: Requests,
}

impl Phase {
    pub fn between(controller: Controller, parents: usize, wall: Duration, a: &Snapshot, b: &Snapshot) -> Self {
        let all = b.requests.since(&a.requests);
        let driver = b.driver.since(&a.driver);
        let (requests, other) = all.since(&driver).split();
        let counter = |text: &str, label| metric_sum(text, controller.writes_metric(), label);
        Self {
            parents,
            wall,
            controller_cpu: b.controller.cpu.saturating_sub(a.controller.cpu),
            apiserver_cpu: b.apiserver.cpu.saturating_sub(a.apiserver.cpu),
            peak_rss_kib: b.controller.peak_rss_kib,
            reconciles: metric_sum(&b.metrics, controller.reconciles_metric(), None)
                - metric_sum(&a.metrics, controller.reconciles_metric(), None),
            own_writes: OWN_WRITES
                .iter()
                .map(|w| {
                    (
                        *w,
                        counter(&b.metrics, Some(("write", w))) - counter(&a.metrics, Some(("write", w))),
                    )
                })
                .collect(),
            requests,
            other,
        }
    }

    fn cpu_ms_per_parent(&self) -> f64 {
        self.controller_cpu.as_secs_f64() * 1000.0 / self.parents.max(1) as f64
    }

    fn verb(&self, verb: &str) -> f64 {
        self.requests.by_verb().get(verb).copied().unwrap_or(0.0)
    }

    /// The figures, by name, in table order.
    fn figures(&self, steady: bool) -> Vec<(String, f64, usize)> {
        let mut rows = vec![
            ("wall s".to_owned(), self.wall.as_secs_f64(), 1),
            ("controller CPU s".to_owned(), self.controller_cpu.as_secs_f64(), 2),
        ];
        if !steady {
            rows.push(("controller CPU ms/parent".to_owned(), self.cpu_ms_per_parent(), 2));
        }
        rows.push(("apiserver CPU s".to_owned(), self.apiserver_cpu.as_secs_f64(), 2));
        rows.push(("peak RSS MiB".to_owned(), self.peak_rss_kib as f64 / 1024.0, 1));
        rows.push(("reconciles".to_owned(), self.reconciles, 0));
        for write in OWN_WRITES {
            rows.push((format!("own count: {write}"), self.own_writes[write], 0));
        }
        rows.push(("API writes".to_owned(), self.requests.writes(), 0));
        for verb in WRITES.iter().chain(&READS) {
            rows.push((format!("  {verb}"), self.verb(verb), 0));
        }
        rows.push((
            "other kinds (apiserver's own)".to_owned(),
            self.other.by_verb().values().sum(),
            0,
        ));
        rows
    }

    fn json(&self) -> Value {
        json!({
            "wall_seconds": self.wall.as_secs_f64(),
            "controller_cpu_seconds": self.controller_cpu.as_secs_f64(),
            "controller_cpu_ms_per_parent": self.cpu_ms_per_parent(),
            "apiserver_cpu_seconds": self.apiserver_cpu.as_secs_f64(),
            "peak_rss_mib": self.peak_rss_kib as f64 / 1024.0,
            "reconciles": self.reconciles,
            "own_writes": self.own_writes,
            "api_writes": self.requests.writes(),
            "api_requests_by_verb": self.requests.by_verb(),
            "api_requests": self.requests.detail(),
            "other_kinds_requests": self.other.detail(),
        })
    }
}

/// The three phases of one controller at one N.
#[derive(Debug, Clone)]
pub struct Run {
    pub create: Phase,
    pub update: Phase,
    pub steady: Phase,
}

impl Run {
    fn phases(&self) -> [(&'static str, &Phase); 3] {
        [
            ("create", &self.create),
            ("update", &self.update),
            ("steady", &self.steady),
        ]
    }
}

fn ratio(trellis: f64, reference: f64) -> Option<f64> {
    (reference.abs() > f64::EPSILON).then(|| trellis / reference)
}

/// Prints the table of one N: reference, Trellis and their ratio per figure.
pub fn print(n: usize, reference: &Run, trellis: &Run, steady_for: Duration) {
    println!();
    println!(
        "{:<30} {:>12} {:>12} {:>12}",
        format!("N = {n} parents"),
        "reference",
        "trellis",
        "trellis/ref"
    );
    for ((phase, r), (_, t)) in reference.phases().into_iter().zip(trellis.phases()) {
        let steady = phase == "steady";
        if steady {
            println!("steady ({} s after the update converged)", steady_for.as_secs());
        } else {
            println!("{phase}");
        }
        for ((name, rv, decimals), (_, tv, _)) in r.figures(steady).into_iter().zip(t.figures(steady)) {
            if name.starts_with("  ") && rv == 0.0 && tv == 0.0 {
                continue;
            }
            // An empty f64 sum is -0.0; print it as 0.
            let (rv, tv) = (rv + 0.0, tv + 0.0);
            let ratio = ratio(tv, rv).map_or_else(|| "-".to_owned(), |x| format!("{x:.2}"));
            println!("  {name:<28} {rv:>12.decimals$} {tv:>12.decimals$} {ratio:>12}");
        }
    }
}

/// The JSON of every run: `{"parents": {"N": {"reference": {...}, "trellis": {...}, "ratio": {...}}}}`.
pub fn json(runs: &[(usize, Run, Run)], kcm: bool, quota: bool) -> Value {
    let mut by_n = Map::new();
    for (n, reference, trellis) in runs {
        let mut ratios = Map::new();
        for ((phase, r), (_, t)) in reference.phases().into_iter().zip(trellis.phases()) {
            let (r, t) = (r.json(), t.json());
            let mut figures = Map::new();
            for (key, rv) in r.as_object().into_iter().flatten() {
                if let (Some(rv), Some(tv)) = (rv.as_f64(), t[key].as_f64()) {
                    figures.insert(key.clone(), json!(ratio(tv, rv)));
                }
            }
            ratios.insert(phase.to_owned(), Value::Object(figures));
        }
        let phases = |run: &Run| {
            run.phases()
                .into_iter()
                .map(|(name, phase)| (name.to_owned(), phase.json()))
                .collect::<Map<_, _>>()
        };
        by_n.insert(
            n.to_string(),
            json!({
                "reference": phases(reference),
                "trellis": phases(trellis),
                "ratio_trellis_over_reference": ratios,
            }),
        );
    }
    json!({
        "kube_controller_manager": kcm,
        "resource_quota_expected": quota,
        "parents": by_n,
    })
}
