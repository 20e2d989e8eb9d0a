//! Counting API requests: the apiserver's `apiserver_request_total`
//! counter (by verb, group, resource, subresource), minus what the bench
//! driver itself sent, which it counts as it sends.
//!
//! The counter has no namespace or user label. Each controller runs alone,
//! so a phase's requests are that controller's, the driver's and the
//! apiserver's own background (leases, endpoints); the background is left
//! out by keeping only the kinds the controllers touch ([`is_bench_resource`]),
//! the driver's part is subtracted. WATCH requests are counted when a watch
//! ends, so a phase rarely shows any.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// A request class: verb, API group, resource, subresource.
pub type Key = (String, String, String, String);

/// Request counts by class.
#[derive(Debug, Clone, Default)]
pub struct Requests(pub BTreeMap<Key, f64>);

/// Verbs that change something.
pub const WRITES: [&str; 6] = ["APPLY", "PATCH", "POST", "PUT", "DELETE", "DELETECOLLECTION"];
/// Verbs that read.
pub const READS: [&str; 3] = ["GET", "LIST", "WATCH"];

/// Whether `group`/`resource` is a kind a controller here reads or writes:
/// the parent, its children, Namespaces, Events, Trellis's registrations.
pub fn is_bench_resource(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        ("custom.ops", "microservicedeploys")
            | (
                "",
                "serviceaccounts" | "configmaps" | "services" | "resourcequotas" | "namespaces" | "events"
            )
            | ("apps", "deployments")
            | ("autoscaling", "horizontalpodautoscalers")
            | ("events.k8s.io", "events")
            | ("trellis.dev", _)
    )
}

impl Requests {
    /// Parses `apiserver_request_total` out of the apiserver's /metrics.
    pub fn parse(metrics: &str) -> Self {
        let mut out = BTreeMap::new();
        for line in metrics.lines() {
            let Some(rest) = line.strip_prefix("apiserver_request_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let labels = labels_of(labels);
            let label = |name: &str| labels.get(name).cloned().unwrap_or_default();
            if label("resource").is_empty() {
                continue; // /metrics, /healthz, discovery
            }
            let key = (label("verb"), label("group"), label("resource"), label("subresource"));
            *out.entry(key).or_insert(0.0) += value.trim().parse::<f64>().unwrap_or(0.0);
        }
        Self(out)
    }

    /// `self - earlier`, per class.
    pub fn since(&self, earlier: &Requests) -> Requests {
        let mut out = self.0.clone();
        for (key, n) in &earlier.0 {
            *out.entry(key.clone()).or_insert(0.0) -= n;
        }
        out.retain(|_, n| n.abs() > 0.5);
        Requests(out)
    }

    /// The requests of the bench's kinds, and the others.
    pub fn split(&self) -> (Requests, Requests) {
        let (bench, other) = self
            .0
            .iter()
            .map(|(k, n)| (k.clone(), *n))
            .partition(|((_, group, resource, _), _)| is_bench_resource(group, resource));
        (Requests(bench), Requests(other))
    }

    /// Total per verb.
    pub fn by_verb(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for ((verb, ..), n) in &self.0 {
            *out.entry(verb.clone()).or_insert(0.0) += n;
        }
        out
    }

    /// Total of the write verbs.
    pub fn writes(&self) -> f64 {
        let by_verb = self.by_verb();
        // An empty f64 sum is -0.0.
        WRITES.iter().filter_map(|v| by_verb.get(*v)).sum::<f64>() + 0.0
    }

    /// `verb group/resource[/subresource]` -> count, for the JSON.
    pub fn detail(&self) -> BTreeMap<String, f64> {
        self.0
            .iter()
            .map(|((verb, group, resource, sub), n)| {
                let mut name = format!("{verb} ");
                if !group.is_empty() {
                    name.push_str(group);
                    name.push('/');
                }
                name.push_str(resource);
                if !sub.is_empty() {
                    name.push('/');
                    name.push_str(sub);
                }
                (name, *n)
            })
            .collect()
    }
}

/// `a="x",b="y"` -> map. Label values here hold no escaped quotes.
fn labels_of(text: &str) -> BTreeMap<String, String> {
    text.split("\",")
        .filter_map(|pair| {
            let (name, value) = pair.split_once("=\"")?;
            Some((name.trim().to_owned(), value.trim_end_matches('"').to_owned()))
        })
        .collect()
}

/// The requests the bench driver sends, counted as it sends them.
#[derive(Debug, Default)]
pub struct DriverCount(Mutex<Requests>);

impl DriverCount {
    pub fn add(&self, verb: &str, group: &str, resource: &str) {
        let key = (verb.to_owned(), group.to_owned(), resource.to_owned(), String::new());
        *self.0.lock().expect("count lock").0.entry(key).or_insert(0.0) += 1.0;
    }

    pub fn snapshot(&self) -> Requests {
        self.0.lock().expect("count lock").clone()
    }
}

/// The sum of every series of `metric` (Prometheus text), optionally only
/// those whose labels include `label="value"`.
pub fn metric_sum(text: &str, metric: &str, label: Option<(&str, &str)>) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let rest = line.strip_prefix(metric)?;
            let (labels, value) = match rest.strip_prefix('{') {
                Some(rest) => rest.rsplit_once("} ")?,
                None => ("", rest.strip_prefix(' ')?),
            };
            if let Some((name, want)) = label
                && labels_of(labels).get(name).map(String::as_str) != Some(want)
            {
                return None;
            }
            value.trim().parse::<f64>().ok()
        })
        .sum()
}
