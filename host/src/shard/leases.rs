//! The shard Lease task: every retry period it renews this replica's
//! heartbeat Lease, reads all shard and member Leases in one list, lets
//! [`Round::decide`] say what to do, and does it, granting and withdrawing
//! shards in the shared [`Ownership`].
//!
//! - Every write replaces the Lease as read (or as last written), so it
//!   carries the Lease's `resourceVersion`: of two replicas reaching for one
//!   shard, exactly one wins; the other sees a conflict and moves on.
//! - Renewals come first in a round, all at once and with no read before
//!   them, so that a busy API server delays them as little as possible.
//! - Expiry is judged as the leader election does ([`LeaseObserver`]): by
//!   this replica's clock, from when it saw the record last change.
//! - A shard given up is withdrawn first; its Lease is kept (and renewed)
//!   until its reconciles in flight have finished, then cleared, so that
//!   the next holder starts after the last write of the previous one.
//! - A shard whose Lease could not be renewed within the renew deadline
//!   (two thirds of the duration) is withdrawn then, before any other
//!   replica can see the Lease expire.

use super::assign::{Round, ShardLease};
use super::ownership::Ownership;
use crate::leader::LeaseObserver;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Shard `i`'s Lease is named this and `i`.
pub const SHARD_LEASE_PREFIX: &str = "trellis-shard-";
/// A replica's heartbeat Lease is named this and its identity.
pub const MEMBER_LEASE_PREFIX: &str = "trellis-member-";
/// The label on both kinds of Lease (`shard` or `member`), by which they
/// are listed.
pub const LEASE_LABEL: &str = "trellis.dev/lease";

/// Where the Leases are and who this replica is.
#[derive(Debug, Clone)]
pub struct ShardOptions {
    /// Namespace of the Leases (the host's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease not renewed stays its holder's.
    pub lease_duration: Duration,
}

impl ShardOptions {
    /// How often the Leases are read and renewed: a seventh of the duration,
    /// at least 200 ms (as the leader election).
    pub fn retry_period(&self) -> Duration {
        (self.lease_duration / 7).max(Duration::from_millis(200))
    }

    /// How long a shard stays granted without a renewal of its Lease.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// A Lease request that failed (logged; the next round tries again).
#[derive(Debug, thiserror::Error)]
#[error("shard leases: {action} Lease {namespace}/{lease}: {source}")]
pub struct ShardError {
    action: &'static str,
    namespace: String,
    lease: String,
    source: Box<kube::Error>,
}

/// The running shard Lease task.
pub struct ShardLeases {
    stop: watch::Sender<bool>,
    task: JoinHandle<Task>,
}

impl ShardLeases {
    /// Starts taking part: heartbeat, then shards up to the fair share.
    pub fn spawn(client: kube::Client, options: ShardOptions, ownership: Arc<Ownership>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = Task {
            api: Api::namespaced(client, &options.namespace),
            options,
            ownership,
            observers: HashMap::new(),
            held: BTreeMap::new(),
            renewed: BTreeMap::new(),
            draining: BTreeSet::new(),
            heartbeat: None,
        };
        Self {
            stop,
            task: tokio::spawn(task.run(stopped)),
        }
    }

    /// Stops without leaving, as a crash would: the Leases stay until they
    /// expire. For tests of a replica that dies.
    #[doc(hidden)]
    pub fn abandon(self) {
        self.task.abort();
    }

    /// Leaves: withdraws every shard, waits (up to the renew deadline) for
    /// the reconciles in flight, clears the shard Leases held and deletes
    /// the heartbeat, so the others take over at once.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        if let Ok(task) = self.task.await {
            task.leave().await;
        }
    }
}

struct Task {
    api: Api<Lease>,
    options: ShardOptions,
    ownership: Arc<Ownership>,
    /// Per Lease name: when its record last changed, by this clock.
    observers: HashMap<String, LeaseObserver>,
    /// The shard Leases this replica holds (granted or draining), as its
    /// last write returned them: renewed without reading them first.
    held: BTreeMap<u32, Lease>,
    /// When each held shard's Lease was last renewed (the request's start).
    renewed: BTreeMap<u32, Instant>,
    /// Shards withdrawn whose Lease is released once their reconciles end.
    draining: BTreeSet<u32>,
    /// The heartbeat Lease as last written.
    heartbeat: Option<Lease>,
}

/// What one read of the Leases found.
struct Read {
    /// The live replicas, by their heartbeats.
    members: Vec<String>,
    /// Every shard's Lease as seen, by shard.
    leases: Vec<ShardLease>,
    /// The shard Lease objects, by shard.
    objects: BTreeMap<u32, Lease>,
}

impl Task {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Self {
        let retry = self.options.retry_period();
        // A busy API server answers slowly: a round may take up to half the
        // renew deadline (renewals go first, all at once).
        let round_timeout = (self.options.renew_deadline() / 2).max(retry);
        loop {
            match tokio::time::timeout(round_timeout, self.round()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "shard lease round failed"),
                Err(_) => tracing::warn!(timeout = ?round_timeout, "a shard lease round timed out"),
            }
            self.withdraw_unrenewed();
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                _ = stopped.changed() => return self,
            }
        }
    }

    /// Renew, read, decide, write.
    async fn round(&mut self) -> Result<(), ShardError> {
        let renewed_now = self.renew_held().await;
        self.beat().await?;
        let Read {
            members,
            leases,
            mut objects,
        } = self.read().await?;
        let me = self.options.identity.clone();
        // What the API gives to another (or to nobody) is not ours any more;
        // what is still ours is known at its current resourceVersion.
        for shard in self.held.keys().copied().collect::<Vec<_>>() {
            match objects.get(&shard) {
                Some(lease) if leases[shard as usize].holder.as_deref() == Some(me.as_str()) => {
                    if !renewed_now.contains(&shard) {
                        self.held.insert(shard, lease.clone());
                    }
                }
                _ => self.lose(shard),
            }
        }
        let decision = Round {
            me: &me,
            members: &members,
            leases: &leases,
        }
        .decide();
        for &shard in &decision.release {
            if self.draining.insert(shard) {
                tracing::info!(shard, "giving up a shard");
            }
            self.ownership.withdraw(shard);
        }
        for shard in self.draining.clone() {
            if self.ownership.in_flight(shard) > 0 {
                continue;
            }
            let Some(lease) = self.held.get(&shard).cloned() else {
                self.draining.remove(&shard);
                continue;
            };
            if self.write(shard, lease, false).await?.is_some() {
                tracing::info!(shard, "shard given up");
            }
            self.held.remove(&shard);
            self.renewed.remove(&shard);
            self.draining.remove(&shard);
        }
        for &shard in &decision.renew {
            if self.draining.contains(&shard) {
                continue;
            }
            if !renewed_now.contains(&shard) {
                let Some(lease) = objects.remove(&shard) else { continue };
                let sent = Instant::now();
                match self.write(shard, lease, true).await? {
                    Some(lease) => {
                        self.held.insert(shard, lease);
                        self.renewed.insert(shard, sent);
                    }
                    None => continue,
                }
            }
            if !self.ownership.held().contains(&shard) {
                self.ownership.grant(shard);
            }
        }
        for &shard in &decision.acquire {
            let sent = Instant::now();
            let taken = match objects.remove(&shard) {
                Some(lease) => self.write(shard, lease, true).await?,
                None => self.create(shard).await?,
            };
            if let Some(lease) = taken {
                tracing::info!(shard, "took a shard");
                self.held.insert(shard, lease);
                self.renewed.insert(shard, sent);
                self.ownership.grant(shard);
            }
        }
        Ok(())
    }

    /// Renews every shard Lease held, all at once, from the Lease as last
    /// written; returns the shards renewed. A conflict leaves the shard to
    /// the read that follows.
    async fn renew_held(&mut self) -> BTreeSet<u32> {
        let now = self.now();
        let sent = Instant::now();
        let requests = self.held.iter().map(|(&shard, lease)| {
            let mut lease = lease.clone();
            if let Some(spec) = lease.spec.as_mut() {
                spec.renew_time = Some(now.clone());
            }
            let api = self.api.clone();
            async move {
                let written = api
                    .replace(&shard_lease_name(shard), &PostParams::default(), &lease)
                    .await;
                (shard, written)
            }
        });
        let mut renewed = BTreeSet::new();
        for (shard, written) in futures::future::join_all(requests).await {
            match written {
                Ok(lease) => {
                    self.held.insert(shard, lease);
                    self.renewed.insert(shard, sent);
                    renewed.insert(shard);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(e) => tracing::warn!(shard, error = %e, "could not renew a shard lease"),
            }
        }
        renewed
    }

    /// Reads every shard and heartbeat Lease in one list.
    async fn read(&mut self) -> Result<Read, ShardError> {
        let listed = self
            .api
            .list(&ListParams::default().labels(LEASE_LABEL))
            .await
            .map_err(|e| self.error("listing", "*", e))?;
        let shards = self.ownership.shards();
        let mut read = Read {
            members: Vec::new(),
            leases: vec![ShardLease::default(); shards as usize],
            objects: BTreeMap::new(),
        };
        for lease in listed {
            let name = lease.metadata.name.clone().unwrap_or_default();
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
            let expired = self.observers.entry(name.clone()).or_default().expired(&spec);
            if name.starts_with(MEMBER_LEASE_PREFIX) {
                if let Some(holder) = holder.filter(|_| !expired) {
                    read.members.push(holder);
                }
            } else if let Some(shard) = shard_number(&name).filter(|&s| s < shards) {
                read.leases[shard as usize] = ShardLease { holder, expired };
                read.objects.insert(shard, lease);
            }
        }
        Ok(read)
    }

    /// A shard held no more (another replica has it): stop at once.
    fn lose(&mut self, shard: u32) {
        if self.ownership.held().contains(&shard) {
            tracing::warn!(shard, "another replica holds the shard now: stopping it");
        }
        self.ownership.withdraw(shard);
        self.held.remove(&shard);
        self.renewed.remove(&shard);
        self.draining.remove(&shard);
    }

    /// Withdraws the shards whose Lease went unrenewed for the renew
    /// deadline: another replica may take them once they expire.
    fn withdraw_unrenewed(&mut self) {
        let deadline = self.options.renew_deadline();
        for (&shard, at) in &self.renewed {
            if at.elapsed() >= deadline && self.ownership.held().contains(&shard) {
                tracing::warn!(
                    shard,
                    ?deadline,
                    "no renewal of the shard's Lease within the renew deadline: stopping it"
                );
                self.ownership.withdraw(shard);
            }
        }
    }

    /// Renews this replica's heartbeat Lease (creating it if need be).
    async fn beat(&mut self) -> Result<(), ShardError> {
        let name = format!("{MEMBER_LEASE_PREFIX}{}", self.options.identity);
        let mut lease = match self.heartbeat.take() {
            Some(lease) => lease,
            None => match self
                .api
                .get_opt(&name)
                .await
                .map_err(|e| self.error("reading", &name, e))?
            {
                Some(lease) => lease,
                None => self.lease(&name, "member"),
            },
        };
        lease.spec = Some(self.spec(Some(self.now())));
        let written = if lease.metadata.resource_version.is_some() {
            self.api.replace(&name, &PostParams::default(), &lease).await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match written {
            Ok(lease) => {
                self.heartbeat = Some(lease);
                Ok(())
            }
            // Changed or gone meanwhile: read it again next round.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => Ok(()),
            Err(e) => Err(self.error("renewing", &name, e)),
        }
    }

    /// Creates a shard's Lease held by this replica; `None` if another
    /// replica created it first.
    async fn create(&self, shard: u32) -> Result<Option<Lease>, ShardError> {
        let name = shard_lease_name(shard);
        let mut lease = self.lease(&name, "shard");
        lease.spec = Some(self.spec(Some(self.now())));
        self.settle("creating", &name, self.api.create(&PostParams::default(), &lease).await)
    }

    /// Replaces a shard's Lease as read: held by this replica and renewed
    /// now (`hold`), or cleared. `None` on a conflict.
    async fn write(&self, shard: u32, mut lease: Lease, hold: bool) -> Result<Option<Lease>, ShardError> {
        let name = shard_lease_name(shard);
        let previous = lease.spec.take().unwrap_or_default();
        let ours = previous.holder_identity.as_deref() == Some(self.options.identity.as_str());
        let mut spec = self.spec(hold.then(|| self.now()));
        if !hold {
            spec.holder_identity = None;
        } else if ours {
            spec.acquire_time = previous.acquire_time;
        }
        spec.lease_transitions = Some(previous.lease_transitions.unwrap_or(0) + i32::from(!ours && hold));
        lease.spec = Some(spec);
        let action = if hold { "renewing" } else { "releasing" };
        self.settle(
            action,
            &name,
            self.api.replace(&name, &PostParams::default(), &lease).await,
        )
    }

    /// Leaves (see [`ShardLeases::release`]).
    async fn leave(mut self) {
        for shard in self.ownership.held() {
            self.ownership.withdraw(shard);
        }
        let deadline = Instant::now() + self.options.renew_deadline();
        while self.held.keys().any(|&s| self.ownership.in_flight(s) > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for (shard, lease) in std::mem::take(&mut self.held) {
            // On a conflict, the Lease is read again: released only if ours.
            let released = match self.write(shard, lease, false).await {
                Ok(Some(_)) => Ok(()),
                Ok(None) => match self.api.get_opt(&shard_lease_name(shard)).await {
                    Ok(Some(lease))
                        if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                            == Some(self.options.identity.as_str()) =>
                    {
                        self.write(shard, lease, false).await.map(|_| ())
                    }
                    _ => Ok(()),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release a shard lease");
            }
        }
        let member = format!("{MEMBER_LEASE_PREFIX}{}", self.options.identity);
        if let Err(e) = self.api.delete(&member, &DeleteParams::default()).await {
            tracing::warn!(lease = %member, error = %e, "could not delete the heartbeat lease");
        }
        tracing::info!("left the shard ring");
    }

    fn lease(&self, name: &str, kind: &str) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some([(LEASE_LABEL.to_owned(), kind.to_owned())].into()),
                ..ObjectMeta::default()
            },
            spec: None,
        }
    }

    fn spec(&self, renewed: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.options.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.options.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: renewed.clone(),
            renew_time: renewed,
            ..LeaseSpec::default()
        }
    }

    fn now(&self) -> MicroTime {
        MicroTime(jiff::Timestamp::now())
    }

    /// A conflict (another replica wrote first) is `None`.
    fn settle(
        &self,
        action: &'static str,
        lease: &str,
        result: Result<Lease, kube::Error>,
    ) -> Result<Option<Lease>, ShardError> {
        match result {
            Ok(lease) => Ok(Some(lease)),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(None),
            Err(e) => Err(self.error(action, lease, e)),
        }
    }

    fn error(&self, action: &'static str, lease: &str, source: kube::Error) -> ShardError {
        ShardError {
            action,
            namespace: self.options.namespace.clone(),
            lease: lease.to_owned(),
            source: Box::new(source),
        }
    }
}

/// The Lease of shard `shard`.
pub fn shard_lease_name(shard: u32) -> String {
    format!("{SHARD_LEASE_PREFIX}{shard}")
}

/// The shard a Lease name is of.
fn shard_number(name: &str) -> Option<u32> {
    name.strip_prefix(SHARD_LEASE_PREFIX)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_lease_names_round_trip() {
        assert_eq!(shard_lease_name(11), "trellis-shard-11");
        assert_eq!(shard_number("trellis-shard-11"), Some(11));
        assert_eq!(shard_number("trellis-shard-x"), None);
        assert_eq!(shard_number("trellis-member-a"), None);
    }

    #[test]
    fn renewals_come_well_before_the_deadline() {
        let options = ShardOptions {
            namespace: "trellis-system".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
        };
        assert_eq!(options.retry_period(), Duration::from_secs(15) / 7);
        assert_eq!(options.renew_deadline(), Duration::from_secs(10));
    }
}
