//! Sharding in a controller (see [`crate::shard`]): a reconcile runs only
//! for a parent of a shard this replica holds, and holds the shard in
//! flight until its writes are done; the first reconcile of a parent under
//! a new grant of its shard starts from a fresh read; and a shard granted
//! queues its parents.
//!
//! Every replica watches all parents and filters locally: a watch selected
//! by shard would need the host to label every parent with its shard (a
//! write per parent, and every parent relabelled when the number of shards
//! changes), while hashing a parent's name costs less than a microsecond.

use super::Context;
use super::parent::ParentObject;
use crate::shard::{InFlight, Ownership};
use futures::{Stream, StreamExt};
use kube::ResourceExt;
use kube::api::ApiResource;
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use tokio::task::JoinHandle;

/// Whether a reconcile may go on.
pub(crate) enum Turn {
    /// Yes; holding the shard (when sharded) until it is dropped.
    Go(Option<ShardTurn>),
    /// The parent's shard is not held here: another replica reconciles it.
    NotOurs,
    /// The API has a newer parent than the cache: wait for the watch.
    Stale,
}

/// A reconcile running in a shard held here. Its start and end are logged
/// (debug, target `trellis::shard_turns`) with the parent, shard and
/// replica, so that a test can check from the logs of several replicas that
/// no parent was ever reconciled by two at once.
pub(crate) struct ShardTurn {
    _in_flight: InFlight,
    shard: u32,
    parent: String,
    replica: String,
}

impl ShardTurn {
    fn new(in_flight: InFlight, shard: u32, parent: &str, replica: &str) -> Self {
        tracing::debug!(target: "trellis::shard_turns", parent, shard, replica, "turn began");
        Self {
            _in_flight: in_flight,
            shard,
            parent: parent.to_owned(),
            replica: replica.to_owned(),
        }
    }
}

impl Drop for ShardTurn {
    fn drop(&mut self) {
        tracing::debug!(target: "trellis::shard_turns", parent = %self.parent, shard = self.shard, replica = %self.replica, "turn ended");
    }
}

/// Per parent (`namespace/name`): the grant of its shard under which it was
/// last read fresh.
#[derive(Debug, Default)]
pub(crate) struct FreshReads(Mutex<HashMap<String, u64>>);

impl FreshReads {
    fn read_under(&self, key: &str) -> Option<u64> {
        self.lock().get(key).copied()
    }

    fn note(&self, key: &str, grant: u64) {
        self.lock().insert(key.to_owned(), grant);
    }

    /// Forgets a parent that is gone.
    pub(crate) fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Asks whether the reconcile of `object` (keyed `key`) may go on.
pub(crate) async fn begin(ctx: &Context, object: &ParentObject, key: &str) -> Result<Turn, kube::Error> {
    let Some(ownership) = &ctx.shared.ownership else {
        return Ok(Turn::Go(None));
    };
    let namespace = object.metadata.namespace.as_deref();
    let name = object.name_any();
    let shard = ownership.shard_of(namespace, &name);
    let Some(in_flight) = ownership.begin(shard) else {
        return Ok(Turn::NotOurs);
    };
    let replica = ctx.shared.reporter.instance.as_deref().unwrap_or("");
    if ctx.fresh_reads.read_under(key) == Some(in_flight.grant()) {
        return Ok(Turn::Go(Some(ShardTurn::new(in_flight, shard, key, replica))));
    }
    let api = super::apply::api(ctx, &ctx.parent, namespace);
    // A list by name, not a get: `list` is what a plugin's identity is
    // checked for on its parent kind (with `watch`), `get` may be missing.
    let current = api
        .list_metadata(&kube::api::ListParams::default().fields(&format!("metadata.name={name}")))
        .await?;
    let fresh = current
        .items
        .first()
        .is_some_and(|c| c.metadata.resource_version == object.metadata.resource_version);
    if !fresh {
        return Ok(Turn::Stale);
    }
    ctx.fresh_reads.note(key, in_flight.grant());
    Ok(Turn::Go(Some(ShardTurn::new(in_flight, shard, key, replica))))
}

/// How often the parents per shard held are counted for the metric.
const COUNT_PARENTS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Counts `plugin`'s parents in each shard held, every
/// [`COUNT_PARENTS_EVERY`], into `trellis_shard_parents`. Runs until dropped.
pub(crate) async fn count_parents(
    ownership: Arc<Ownership>,
    parents: Store<ParentObject>,
    metrics: crate::metrics::Metrics,
    plugin: String,
) {
    let mut before = std::collections::BTreeMap::new();
    let mut tick = tokio::time::interval(COUNT_PARENTS_EVERY);
    loop {
        tick.tick().await;
        let held = ownership.held();
        let mut counts: std::collections::BTreeMap<u32, usize> = held.iter().map(|&s| (s, 0)).collect();
        for parent in parents.state() {
            let shard = ownership.shard_of(parent.metadata.namespace.as_deref(), &parent.name_any());
            if let Some(n) = counts.get_mut(&shard) {
                *n += 1;
            }
        }
        metrics.set_shard_parents(&plugin, &before, &counts);
        before = counts;
    }
}

/// The parents of each shard as it is granted, to be reconciled.
pub(crate) fn granted_parents(
    ownership: Arc<Ownership>,
    parents: Store<ParentObject>,
    resource: ApiResource,
) -> impl Stream<Item = ObjectRef<ParentObject>> + Send + 'static {
    let held = ownership.subscribe();
    let known = held.borrow().clone();
    futures::stream::unfold((held, known), move |(mut held, mut known)| {
        let (ownership, parents, resource) = (ownership.clone(), parents.clone(), resource.clone());
        async move {
            loop {
                held.changed().await.ok()?;
                let now: BTreeSet<u32> = held.borrow_and_update().clone();
                let granted: BTreeSet<u32> = now.difference(&known).copied().collect();
                known = now;
                if granted.is_empty() {
                    continue;
                }
                let refs: Vec<ObjectRef<ParentObject>> = parents
                    .state()
                    .iter()
                    .filter(|p| granted.contains(&ownership.shard_of(p.metadata.namespace.as_deref(), &p.name_any())))
                    .map(|p| ObjectRef::from_obj_with(&**p, resource.clone()))
                    .collect();
                tracing::debug!(shards = ?granted, parents = refs.len(), "shards granted: queueing their parents");
                return Some((futures::stream::iter(refs), (held, known)));
            }
        }
    })
    .flatten()
}

/// Aborts a task when dropped (with the task that holds it).
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
