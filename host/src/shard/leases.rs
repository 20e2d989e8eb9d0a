//! The shard Lease task: every retry period it renews this replica's
//! heartbeat Lease, reads all shard and member Leases in one list, lets
//! [`Round::decide`] say what to do, and does it, granting and withdrawing
//! shards in the shared [`Ownership`].
//!
//! - Every write replaces the Lease as read, so it carries the Lease's
//!   `resourceVersion`: of two replicas reaching for one shard, exactly one
//!   wins; the other sees a conflict and moves on.
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
            renewed: BTreeMap::new(),
            draining: BTreeSet::new(),
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
    /// Shards granted, and when their Lease was last renewed.
    renewed: BTreeMap<u32, Instant>,
    /// Shards withdrawn whose Lease is released once their reconciles end.
    draining: BTreeSet<u32>,
}

impl Task {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) -> Self {
        let retry = self.options.retry_period();
        loop {
            match tokio::time::timeout(retry.max(Duration::from_secs(1)), self.round()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "shard lease round failed"),
                Err(_) => tracing::warn!("a shard lease round timed out"),
            }
            self.withdraw_unrenewed();
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                _ = stopped.changed() => return self,
            }
        }
    }

    /// One read, decide, write.
    async fn round(&mut self) -> Result<(), ShardError> {
        self.heartbeat().await?;
        let listed = self
            .api
            .list(&ListParams::default().labels(LEASE_LABEL))
            .await
            .map_err(|e| self.error("listing", "*", e))?;
        let shards = self.ownership.shards();
        let mut members = Vec::new();
        let mut leases = vec![ShardLease::default(); shards as usize];
        let mut objects: BTreeMap<u32, Lease> = BTreeMap::new();
        for lease in listed {
            let name = lease.metadata.name.clone().unwrap_or_default();
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
            let expired = self.observers.entry(name.clone()).or_default().expired(&spec);
            if name.starts_with(MEMBER_LEASE_PREFIX) {
                if let Some(holder) = holder.filter(|_| !expired) {
                    members.push(holder);
                }
            } else if let Some(shard) = shard_number(&name).filter(|&s| s < shards) {
                leases[shard as usize] = ShardLease { holder, expired };
                objects.insert(shard, lease);
            }
        }
        let decision = Round {
            me: &self.options.identity,
            members: &members,
            leases: &leases,
        }
        .decide();
        for &shard in &decision.release {
            tracing::info!(shard, "giving up a shard");
            self.ownership.withdraw(shard);
            self.draining.insert(shard);
        }
        for shard in self.draining.clone() {
            let Some(lease) = objects.remove(&shard) else {
                self.draining.remove(&shard);
                continue;
            };
            if lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) != Some(&self.options.identity) {
                self.draining.remove(&shard);
            } else if self.ownership.in_flight(shard) == 0 {
                self.write(shard, lease, None).await?;
                self.draining.remove(&shard);
                self.renewed.remove(&shard);
                tracing::info!(shard, "shard given up");
            } else if self.write(shard, lease, Some(self.now())).await? {
                self.renewed.insert(shard, Instant::now());
            }
        }
        for &shard in &decision.renew {
            let Some(lease) = objects.remove(&shard) else { continue };
            if self.write(shard, lease, Some(self.now())).await? {
                self.renewed.insert(shard, Instant::now());
                if !self.ownership.held().contains(&shard) {
                    self.ownership.grant(shard);
                }
            } else {
                tracing::warn!(shard, "another replica took the shard");
                self.ownership.withdraw(shard);
                self.renewed.remove(&shard);
            }
        }
        for &shard in &decision.acquire {
            let taken = match objects.remove(&shard) {
                Some(lease) => self.write(shard, lease, Some(self.now())).await?,
                None => self.create(shard).await?,
            };
            if taken {
                tracing::info!(shard, "took a shard");
                self.renewed.insert(shard, Instant::now());
                self.ownership.grant(shard);
            }
        }
        Ok(())
    }

    /// Withdraws the shards whose Lease went unrenewed for the renew
    /// deadline: another replica may take them once they expire.
    fn withdraw_unrenewed(&mut self) {
        let deadline = self.options.renew_deadline();
        let late: Vec<u32> = self
            .renewed
            .iter()
            .filter(|(_, at)| at.elapsed() >= deadline)
            .map(|(&shard, _)| shard)
            .collect();
        for shard in late {
            tracing::warn!(
                shard,
                ?deadline,
                "no renewal of the shard's Lease within the renew deadline: stopping it"
            );
            self.ownership.withdraw(shard);
            self.renewed.remove(&shard);
        }
    }

    /// Creates or renews this replica's heartbeat Lease.
    async fn heartbeat(&self) -> Result<(), ShardError> {
        let name = format!("{MEMBER_LEASE_PREFIX}{}", self.options.identity);
        let mut lease = match self
            .api
            .get_opt(&name)
            .await
            .map_err(|e| self.error("reading", &name, e))?
        {
            Some(lease) => lease,
            None => self.lease(&name, "member"),
        };
        lease.spec = Some(self.spec(Some(self.now())));
        let written = if lease.metadata.resource_version.is_some() {
            self.api.replace(&name, &PostParams::default(), &lease).await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(e) => Err(self.error("renewing", &name, e)),
        }
    }

    /// Creates a shard's Lease held by this replica; `false` if another
    /// replica created it first.
    async fn create(&self, shard: u32) -> Result<bool, ShardError> {
        let name = shard_lease_name(shard);
        let mut lease = self.lease(&name, "shard");
        lease.spec = Some(self.spec(Some(self.now())));
        self.settle("creating", &name, self.api.create(&PostParams::default(), &lease).await)
    }

    /// Replaces a shard's Lease as read, held by this replica and renewed
    /// at `renewed`, or cleared with `None`. `false` on a conflict.
    async fn write(&self, shard: u32, mut lease: Lease, renewed: Option<MicroTime>) -> Result<bool, ShardError> {
        let name = shard_lease_name(shard);
        let previous = lease.spec.take().unwrap_or_default();
        let ours = previous.holder_identity.as_deref() == Some(self.options.identity.as_str());
        let mut spec = self.spec(renewed.clone());
        if renewed.is_none() {
            spec.holder_identity = None;
            spec.acquire_time = None;
        } else if ours {
            spec.acquire_time = previous.acquire_time;
        }
        spec.lease_transitions = Some(previous.lease_transitions.unwrap_or(0) + i32::from(!ours && renewed.is_some()));
        lease.spec = Some(spec);
        let action = if renewed.is_some() { "renewing" } else { "releasing" };
        self.settle(
            action,
            &name,
            self.api.replace(&name, &PostParams::default(), &lease).await,
        )
    }

    /// Leaves (see [`ShardLeases::release`]).
    async fn leave(mut self) {
        let held = self.ownership.held();
        for &shard in &held {
            self.ownership.withdraw(shard);
        }
        let deadline = Instant::now() + self.options.renew_deadline();
        while held.iter().any(|&s| self.ownership.in_flight(s) > 0) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for shard in held.into_iter().chain(std::mem::take(&mut self.draining)) {
            let name = shard_lease_name(shard);
            let Ok(Some(lease)) = self.api.get_opt(&name).await else {
                continue;
            };
            let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref());
            if holder == Some(self.options.identity.as_str())
                && let Err(e) = self.write(shard, lease, None).await
            {
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

    /// A conflict (another replica wrote first) is `false`.
    fn settle(
        &self,
        action: &'static str,
        lease: &str,
        result: Result<Lease, kube::Error>,
    ) -> Result<bool, ShardError> {
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
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
