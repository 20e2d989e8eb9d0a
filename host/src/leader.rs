//! Leader election over a `coordination.k8s.io/v1` Lease, so two replicas of
//! the host never reconcile at once: one holds the Lease and renews it, the
//! other takes it over when the holder stops renewing (it died) or gives it
//! up (graceful shutdown).
//!
//! Writes are guarded by the Lease's `resourceVersion`: of two replicas
//! racing for an expired Lease, exactly one wins. As in client-go, a Lease
//! is judged expired by this replica's own clock: by how long ago it saw the
//! record last change, never by comparing the holder's `renewTime` with the
//! local wall clock (the two clocks may disagree). (The leader election
//! crates of the ecosystem are built on an older kube; this is the same
//! algorithm as client-go's `leaderelection`.) [`crate::leadership`] runs it
//! in a task of its own.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use std::time::{Duration, Instant};

/// Where the Lease is and who we are.
#[derive(Debug, Clone)]
pub struct LeaderOptions {
    /// Namespace of the Lease (the host's own).
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease not renewed stays the holder's.
    pub lease_duration: Duration,
}

impl LeaderOptions {
    /// How often every replica tries to acquire or renew: a seventh of the
    /// duration (2 s of 15 s, as client-go's defaults), at least 200 ms.
    pub fn retry_period(&self) -> Duration {
        (self.lease_duration / 7).max(Duration::from_millis(200))
    }

    /// How long the holder keeps leading without a successful renewal: two
    /// thirds of the duration (10 s of 15 s). It stops its controllers then,
    /// before any other replica can see the Lease expire.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// The Lease record as this replica last saw it, and when it saw it change.
#[derive(Debug, Clone, PartialEq)]
struct Observed {
    holder: Option<String>,
    renew_time: Option<MicroTime>,
    acquire_time: Option<MicroTime>,
    transitions: Option<i32>,
    duration: Duration,
}

/// Why a round of election could not be decided.
#[derive(Debug, thiserror::Error)]
#[error("leader election on Lease {namespace}/{name}: {source}")]
pub struct LeaderError {
    namespace: String,
    name: String,
    source: kube::Error,
}

/// Acquires and renews one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    options: LeaderOptions,
    observer: LeaseObserver,
}

/// Judges expiry as client-go does: by the local instant at which the
/// record last changed.
#[derive(Debug, Default)]
pub(crate) struct LeaseObserver {
    /// The record last seen and the local instant it was first seen.
    observed: Option<(Observed, Instant)>,
}

impl LeaseObserver {
    /// Notes the record of `spec`; returns whether it has stayed unchanged
    /// for longer than its duration, by the local monotonic clock.
    pub(crate) fn expired(&mut self, spec: &LeaseSpec) -> bool {
        let record = Observed {
            holder: spec.holder_identity.clone(),
            renew_time: spec.renew_time.clone(),
            acquire_time: spec.acquire_time.clone(),
            transitions: spec.lease_transitions,
            duration: Duration::from_secs(u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15)),
        };
        match &self.observed {
            Some((seen, since)) if *seen == record => since.elapsed() > record.duration,
            _ => {
                self.observed = Some((record, Instant::now()));
                false
            }
        }
    }
}

impl LeaderElector {
    /// An elector for the Lease of `options`.
    pub fn new(client: kube::Client, options: LeaderOptions) -> Self {
        Self {
            api: Api::namespaced(client, &options.namespace),
            options,
            observer: LeaseObserver::default(),
        }
    }

    /// The options it was made with.
    pub fn options(&self) -> &LeaderOptions {
        &self.options
    }

    /// Takes the Lease if it is free or expired, renews it if it is ours.
    /// Returns whether we hold it now. A lost race is `Ok(false)`.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, LeaderError> {
        let now = jiff::Timestamp::now();
        let Some(lease) = self.api.get_opt(&self.options.name).await.map_err(|e| self.error(e))? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.options.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, now, 0)),
            };
            return self.settle(self.api.create(&PostParams::default(), &lease).await);
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.as_deref().filter(|h| !h.is_empty());
        let ours = holder == Some(self.options.identity.as_str());
        let expired = self.observer.expired(&spec);
        if !ours && holder.is_some() && !expired {
            return Ok(false);
        }
        let (acquired, transitions) = if ours {
            (
                spec.acquire_time.map_or(now, |t| t.0),
                spec.lease_transitions.unwrap_or(0),
            )
        } else {
            (now, spec.lease_transitions.unwrap_or(0) + 1)
        };
        let mut updated = lease;
        updated.spec = Some(self.spec(acquired, now, transitions));
        if !ours {
            tracing::info!(lease = %self.options.name, previous = ?holder, "taking over the leader lease");
        }
        self.settle(
            self.api
                .replace(&self.options.name, &PostParams::default(), &updated)
                .await,
        )
    }

    /// Gives the Lease up (on shutdown) so another replica takes over at once.
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.options.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(self.options.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.options.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.options.name, "leader lease released"),
            Err(e) => tracing::warn!(lease = %self.options.name, error = %e, "could not release the leader lease"),
        }
    }

    fn spec(&self, acquired: jiff::Timestamp, renewed: jiff::Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.options.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.options.lease_duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// A conflict (someone else wrote first) means we do not hold it.
    fn settle(&self, result: Result<Lease, kube::Error>) -> Result<bool, LeaderError> {
        match result {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.error(e)),
        }
    }

    fn error(&self, source: kube::Error) -> LeaderError {
        LeaderError {
            namespace: self.options.namespace.clone(),
            name: self.options.name.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_expires_by_the_local_clock_after_its_record_stops_changing() {
        let mut observer = LeaseObserver::default();
        // The holder's renewTime is far in the past by the local wall clock:
        // that alone does not make the Lease expired.
        let spec = |renewed: i64| LeaseSpec {
            holder_identity: Some("other".into()),
            lease_duration_seconds: Some(1),
            renew_time: Some(MicroTime(jiff::Timestamp::from_second(renewed).unwrap())),
            ..LeaseSpec::default()
        };
        assert!(!observer.expired(&spec(1_000)));
        std::thread::sleep(Duration::from_millis(600));
        // Renewed meanwhile: a new record, seen now.
        assert!(!observer.expired(&spec(1_001)));
        std::thread::sleep(Duration::from_millis(600));
        assert!(
            !observer.expired(&spec(1_001)),
            "1.2 s since the first look, but 0.6 s since the change"
        );
        std::thread::sleep(Duration::from_millis(500));
        assert!(observer.expired(&spec(1_001)));
    }
}
