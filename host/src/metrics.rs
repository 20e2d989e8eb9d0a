//! Prometheus metrics of the host, per plugin: reconciles, errors by
//! cause, plugin call and apply latency, writes and reconciles in flight;
//! admission answers per hook and verdict; the module cache's hits
//! and misses; and, sharded, the shards held and the parents per shard.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabel {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    plugin: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    plugin: String,
    /// `applied`, `skipped` (unchanged), `pruned` or `status`.
    write: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdmissionLabels {
    plugin: String,
    /// `validate` or `mutate`.
    hook: String,
    /// `allowed`, `patched`, `denied`, `failed` or `ignored`.
    verdict: String,
}

fn latency() -> Family<PluginLabel, Histogram> {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 2.5, 14)))
}

/// The host's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<PluginLabel, Counter>,
    errors: Family<CauseLabels, Counter>,
    plugin_call: Family<PluginLabel, Histogram>,
    apply: Family<PluginLabel, Histogram>,
    writes: Family<WriteLabels, Counter>,
    in_flight: Family<PluginLabel, Gauge>,
    /// Events a plugin asked for beyond the cap of one reconcile.
    events_dropped: Family<PluginLabel, Counter>,
    /// Module compiles served from the on-disk cache, and the ones that missed.
    module_cache: Family<CacheLabel, Gauge>,
    /// 1 while this replica runs the controllers, else 0.
    leading: Gauge,
    /// Host-side time of answering one admission review.
    admission: Family<AdmissionLabels, Histogram>,
    /// Sharded: the shards this replica holds.
    shards_held: Gauge,
    /// Sharded: the parents of each shard held here, per plugin.
    shard_parents: Family<ShardLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShardLabels {
    plugin: String,
    shard: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabel {
    /// `hit` or `miss`.
    result: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trellis");
        let (reconciles, errors, writes, in_flight) = (
            Family::default(),
            Family::default(),
            Family::default(),
            Family::default(),
        );
        let (plugin_call, apply) = (latency(), latency());
        registry.register("reconciles", "Reconciles run, per plugin", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Failed reconciles, per plugin and cause",
            errors.clone(),
        );
        registry.register(
            "plugin_call_seconds",
            "Time of one plugin call (instance + call + checks)",
            plugin_call.clone(),
        );
        registry.register(
            "apply_seconds",
            "Time to write one reconcile's children and status",
            apply.clone(),
        );
        registry.register(
            "writes",
            "Child and status writes, and the ones skipped as unchanged",
            writes.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, per plugin",
            in_flight.clone(),
        );
        let events_dropped = Family::<PluginLabel, Counter>::default();
        registry.register(
            "events_dropped",
            "Events a plugin asked for beyond the per-reconcile cap, dropped unwritten",
            events_dropped.clone(),
        );
        let module_cache = Family::<CacheLabel, Gauge>::default();
        registry.register(
            "module_cache_compiles",
            "Module compiles since the start, served from the on-disk cache (hit) or not (miss)",
            module_cache.clone(),
        );
        let leading = Gauge::default();
        registry.register(
            "leading",
            "1 while this replica leads and runs the controllers, 0 once they are stopped",
            leading.clone(),
        );
        let admission = Family::<AdmissionLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.5, 14))
        });
        registry.register(
            "admission_seconds",
            "Host-side time of answering one admission review (the plugin call included), per plugin, hook and verdict",
            admission.clone(),
        );
        let shards_held = Gauge::default();
        registry.register(
            "shards_held",
            "Sharded: the shards this replica holds (and reconciles the parents of)",
            shards_held.clone(),
        );
        let shard_parents = Family::<ShardLabels, Gauge>::default();
        registry.register(
            "shard_parents",
            "Sharded: the parents of each shard this replica holds, per plugin",
            shard_parents.clone(),
        );
        Self {
            admission,
            events_dropped,
            shards_held,
            shard_parents,
            module_cache,
            leading,
            registry: Arc::new(registry),
            reconciles,
            errors,
            plugin_call,
            apply,
            writes,
            in_flight,
        }
    }

    fn plugin(plugin: &str) -> PluginLabel {
        PluginLabel {
            plugin: plugin.to_owned(),
        }
    }

    /// A reconcile started; the guard marks its end.
    pub fn reconcile_started(&self, plugin: &str) -> InFlight {
        self.reconciles.get_or_create(&Self::plugin(plugin)).inc();
        let gauge = self.in_flight.get_or_create(&Self::plugin(plugin)).clone();
        gauge.inc();
        InFlight(gauge)
    }

    /// A reconcile failed with `cause`.
    pub fn reconcile_failed(&self, plugin: &str, cause: &str) {
        self.errors
            .get_or_create(&CauseLabels {
                plugin: plugin.to_owned(),
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// One admission review was answered with `verdict` in `took`.
    pub fn admission_answered(&self, plugin: &str, hook: &str, verdict: &str, took: Duration) {
        self.admission
            .get_or_create(&AdmissionLabels {
                plugin: plugin.to_owned(),
                hook: hook.to_owned(),
                verdict: verdict.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// One plugin call took `took`.
    pub fn plugin_called(&self, plugin: &str, took: Duration) {
        self.plugin_call
            .get_or_create(&Self::plugin(plugin))
            .observe(took.as_secs_f64());
    }

    /// Writing one reconcile's results took `took`.
    pub fn applied(&self, plugin: &str, took: Duration) {
        self.apply
            .get_or_create(&Self::plugin(plugin))
            .observe(took.as_secs_f64());
    }

    /// Counts `n` writes (or skips) of one sort.
    pub fn wrote(&self, plugin: &str, write: &str, n: u64) {
        if n > 0 {
            self.writes
                .get_or_create(&WriteLabels {
                    plugin: plugin.to_owned(),
                    write: write.to_owned(),
                })
                .inc_by(n);
        }
    }

    /// `n` events of one reconcile were dropped (over the cap).
    pub fn events_dropped(&self, plugin: &str, n: usize) {
        if n > 0 {
            self.events_dropped
                .get_or_create(&Self::plugin(plugin))
                .inc_by(n as u64);
        }
    }

    /// Whether this replica runs the controllers now.
    pub fn set_leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    /// Sharded: how many shards this replica holds.
    pub fn set_shards_held(&self, held: usize) {
        self.shards_held.set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Sharded: the parents of `plugin` in each shard held (`counts`); the
    /// shards of `before` no longer in `counts` are dropped from the metric.
    pub fn set_shard_parents(
        &self,
        plugin: &str,
        before: &std::collections::BTreeMap<u32, usize>,
        counts: &std::collections::BTreeMap<u32, usize>,
    ) {
        let labels = |shard: u32| ShardLabels {
            plugin: plugin.to_owned(),
            shard: shard.to_string(),
        };
        for shard in before.keys().filter(|s| !counts.contains_key(s)) {
            self.shard_parents.remove(&labels(*shard));
        }
        for (shard, n) in counts {
            self.shard_parents
                .get_or_create(&labels(*shard))
                .set(i64::try_from(*n).unwrap_or(i64::MAX));
        }
    }

    /// The module cache's hits and misses since the start.
    pub fn module_cache(&self, hits: usize, misses: usize) {
        let set = |result: &str, n: usize| {
            self.module_cache
                .get_or_create(&CacheLabel {
                    result: result.to_owned(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set("hit", hits);
        set("miss", misses);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String");
        out
    }
}

/// Decrements the in-flight gauge when dropped.
pub struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
