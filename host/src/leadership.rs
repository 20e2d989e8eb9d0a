//! Leadership in a task of its own: it acquires and renews the Lease on its
//! own clock and publishes whether this replica leads as a `watch<bool>`, so
//! nothing the host loop does (a slow registry sync, a compile) can delay a
//! renewal or a step-down.
//!
//! A leader that has not renewed within the renew deadline (shorter than the
//! Lease's duration) publishes `false` at that instant, so the host stops
//! its controllers before any other replica can see the Lease expire.

use crate::leader::LeaderElector;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The running leadership task.
pub struct Leadership {
    /// Whether this replica leads now. It starts `false`; the first attempt
    /// always publishes a value (so a follower knows it is one).
    pub leading: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    task: JoinHandle<LeaderElector>,
}

impl Leadership {
    /// Starts acquiring and renewing the elector's Lease.
    pub fn spawn(elector: LeaderElector) -> Self {
        let (leading_tx, leading) = watch::channel(false);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(elector, leading_tx, stopped));
        Self { leading, stop, task }
    }

    /// Stops the task and gives the Lease up if this replica holds it. Call
    /// it after the controllers have stopped.
    pub async fn release(self) {
        let _ = self.stop.send(true);
        if let Ok(elector) = self.task.await {
            elector.release().await;
        }
    }
}

/// One attempt after another, every retry period, until `stopped`.
async fn run(
    mut elector: LeaderElector,
    leading: watch::Sender<bool>,
    mut stopped: watch::Receiver<bool>,
) -> LeaderElector {
    let retry = elector.options().retry_period();
    let renew_deadline = elector.options().renew_deadline();
    let lease = elector.options().name.clone();
    let mut renewed: Option<Instant> = None;
    let mut first = true;
    loop {
        let is_leading = *leading.borrow();
        // The instant a leader without a renewal must step down.
        let step_down_at = renewed.map(|at| at + renew_deadline).filter(|_| is_leading);
        let outcome = tokio::select! {
            attempt = tokio::time::timeout(retry.max(Duration::from_secs(1)), elector.try_acquire_or_renew()) => Some(attempt),
            () = sleep_until_some(step_down_at) => None,
            _ = stopped.changed() => return elector,
        };
        let attempted = outcome.is_some();
        let now_leading = match outcome {
            Some(Ok(Ok(true))) => {
                renewed = Some(Instant::now());
                true
            }
            Some(Ok(Ok(false))) => {
                if is_leading {
                    tracing::warn!(%lease, "another replica holds the leader lease: stopping controllers");
                }
                renewed = None;
                false
            }
            Some(Ok(Err(e))) => {
                tracing::warn!(%lease, error = %e, "could not renew the leader lease");
                is_leading && renewed.is_some_and(|at| at.elapsed() < renew_deadline)
            }
            Some(Err(_)) => {
                tracing::warn!(%lease, "a leader lease request timed out");
                is_leading && renewed.is_some_and(|at| at.elapsed() < renew_deadline)
            }
            None => {
                tracing::warn!(%lease, deadline = ?renew_deadline, "no renewal within the renew deadline: stopping controllers");
                false
            }
        };
        if now_leading && !is_leading {
            tracing::info!(%lease, "leading");
        }
        if first {
            leading.send_replace(now_leading);
            first = false;
        } else {
            leading.send_if_modified(|l| std::mem::replace(l, now_leading) != now_leading);
        }
        if attempted {
            tokio::select! {
                () = tokio::time::sleep(retry) => {}
                () = sleep_until_some(renewed.map(|at| at + renew_deadline).filter(|_| now_leading)) => {}
                _ = stopped.changed() => return elector,
            }
        }
    }
}

/// Sleeps until `at`, or forever when there is none.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
