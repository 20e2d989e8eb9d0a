//! [`Ownership`]: which shards this replica may reconcile now, and the
//! reconciles running in each, so that a shard is given up only once its
//! in-flight work has finished.
//!
//! A reconcile asks [`Ownership::begin`] for its parent's shard and holds
//! the [`InFlight`] it gets until its writes are done; it gets none for a
//! shard this replica does not hold. The Lease task grants a shard after
//! taking its Lease, and withdraws it before giving the Lease up (or when
//! it could not renew in time): from then on no reconcile of the shard
//! begins, and the Lease is released once [`Ownership::in_flight`] is 0.

use super::assign::{ShardBy, shard_of};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The shards this replica holds and the reconciles running in them.
/// Shared by the Lease task and the controllers.
#[derive(Debug)]
pub struct Ownership {
    shards: u32,
    by: ShardBy,
    state: Mutex<State>,
    /// The shards held, for those who react to a change (a controller
    /// queues the parents of a shard just granted).
    held: watch::Sender<BTreeSet<u32>>,
}

#[derive(Debug, Default)]
struct State {
    /// The shards held, each with the grant that gave it (a number that
    /// grows with every grant).
    held: BTreeMap<u32, u64>,
    in_flight: BTreeMap<u32, usize>,
    grants: u64,
}

/// One reconcile running in a shard; dropping it ends it.
#[derive(Debug)]
pub struct InFlight {
    ownership: Arc<Ownership>,
    shard: u32,
    grant: u64,
}

impl InFlight {
    /// The grant under which the shard is held: a reconcile under a grant
    /// it has not read the parent fresh in must read it first (the
    /// previous holder may have written since the cache last heard).
    pub fn grant(&self) -> u64 {
        self.grant
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.ownership.lock();
        if let Some(count) = state.in_flight.get_mut(&self.shard) {
            *count -= 1;
            if *count == 0 {
                state.in_flight.remove(&self.shard);
            }
        }
    }
}

impl Ownership {
    /// No shard held yet, among `shards` (at least 1) assigned `by`.
    pub fn new(shards: u32, by: ShardBy) -> Arc<Self> {
        Arc::new(Self {
            shards: shards.max(1),
            by,
            state: Mutex::default(),
            held: watch::channel(BTreeSet::new()).0,
        })
    }

    /// How many shards there are.
    pub fn shards(&self) -> u32 {
        self.shards
    }

    /// The shard of a parent.
    pub fn shard_of(&self, namespace: Option<&str>, name: &str) -> u32 {
        shard_of(self.by, namespace, name, self.shards)
    }

    /// The shards held now.
    pub fn held(&self) -> BTreeSet<u32> {
        self.lock().held.keys().copied().collect()
    }

    /// Follows the shards held.
    pub fn subscribe(&self) -> watch::Receiver<BTreeSet<u32>> {
        self.held.subscribe()
    }

    /// A reconcile in `shard` begins, if this replica holds it.
    pub fn begin(self: &Arc<Self>, shard: u32) -> Option<InFlight> {
        let mut state = self.lock();
        let grant = *state.held.get(&shard)?;
        *state.in_flight.entry(shard).or_default() += 1;
        Some(InFlight {
            ownership: self.clone(),
            shard,
            grant,
        })
    }

    /// Reconciles running in `shard`.
    pub fn in_flight(&self, shard: u32) -> usize {
        self.lock().in_flight.get(&shard).copied().unwrap_or(0)
    }

    /// The shard's Lease was taken: its reconciles may begin.
    pub(super) fn grant(&self, shard: u32) {
        let held = {
            let mut state = self.lock();
            if state.held.contains_key(&shard) {
                return;
            }
            state.grants += 1;
            let grant = state.grants;
            state.held.insert(shard, grant);
            state.held.keys().copied().collect()
        };
        self.held.send_replace(held);
    }

    /// No reconcile of `shard` begins any more (those running finish).
    pub(super) fn withdraw(&self, shard: u32) {
        let held = {
            let mut state = self.lock();
            if state.held.remove(&shard).is_none() {
                return;
            }
            state.held.keys().copied().collect()
        };
        self.held.send_replace(held);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Counters only: a panic elsewhere leaves them consistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_withdrawn_shard_admits_no_new_reconcile_and_counts_the_running_ones() {
        let ownership = Ownership::new(4, ShardBy::Name);
        assert!(ownership.begin(1).is_none(), "not held yet");
        ownership.grant(1);
        let running = ownership.begin(1).expect("held");
        let second = ownership.begin(1).expect("held");
        assert_eq!(running.grant(), second.grant());
        let first_grant = running.grant();
        assert_eq!(ownership.in_flight(1), 2);
        ownership.withdraw(1);
        assert!(ownership.begin(1).is_none(), "withdrawn");
        assert_eq!(ownership.in_flight(1), 2, "the running ones go on");
        drop(running);
        drop(second);
        assert_eq!(ownership.in_flight(1), 0);
        assert_eq!(*ownership.subscribe().borrow(), BTreeSet::new());
        ownership.grant(1);
        let regranted = ownership.begin(1).expect("held again");
        assert!(regranted.grant() > first_grant, "a new grant asks for a fresh read");
    }
}
