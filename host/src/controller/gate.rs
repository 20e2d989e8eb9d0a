//! The call gate: every plugin call of the host passes it, whichever
//! registration makes it.
//!
//! - **Slots.** At most a small multiple of the cores execute at once, so a
//!   few looping registrations cannot take every core (the API server's
//!   included). A free slot goes to the registrations waiting in turn
//!   (round robin), not to whoever asked first, so each gets its share
//!   however many calls another queues. The slots also bound the sandboxes
//!   alive at once below the size of the instance pool, so no registration
//!   can take another's instances.
//! - **Memory budget.** A call is admitted only when its memory limit fits
//!   in what the calls executing leave of the host-wide budget; it waits at
//!   most a bounded time, then fails with [`GateError::MemoryBudget`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Why a call was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(
        "the call needs {needed_mib} MiB of the host's memory budget of {budget_mib} MiB, and it stayed taken for {waited:?}"
    )]
    MemoryBudget {
        needed_mib: u32,
        budget_mib: u32,
        waited: Duration,
    },
    #[error("the call's memory limit of {needed_mib} MiB is above the host's whole memory budget of {budget_mib} MiB")]
    AboveBudget { needed_mib: u32, budget_mib: u32 },
}

/// Admits plugin calls (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct CallGate {
    slots: Arc<FairSlots>,
    memory: Arc<Semaphore>,
    budget_mib: u32,
    memory_wait: Duration,
}

impl std::fmt::Debug for CallGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallGate")
            .field("slots", &self.slots.total)
            .field("budget_mib", &self.budget_mib)
            .finish_non_exhaustive()
    }
}

/// A call admitted: it holds a slot and its memory until dropped.
pub struct CallPermit {
    _slot: SlotPermit,
    _memory: OwnedSemaphorePermit,
}

impl CallGate {
    /// A gate of `slots` calls at once and `budget_mib` MiB of memory; a
    /// call waits for memory at most `memory_wait`.
    pub fn new(slots: usize, budget_mib: u32, memory_wait: Duration) -> Self {
        Self {
            slots: Arc::new(FairSlots::new(slots.max(1))),
            memory: Arc::new(Semaphore::new(budget_mib as usize)),
            budget_mib,
            memory_wait,
        }
    }

    /// Waits for a slot (in turn with the other registrations) and for
    /// `memory_bytes` of the budget.
    pub async fn enter(&self, registration: &str, memory_bytes: usize) -> Result<CallPermit, GateError> {
        let needed_mib = u32::try_from(memory_bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX).max(1);
        if needed_mib > self.budget_mib {
            return Err(GateError::AboveBudget {
                needed_mib,
                budget_mib: self.budget_mib,
            });
        }
        let slot = self.slots.clone().acquire(registration).await;
        let memory = tokio::time::timeout(self.memory_wait, self.memory.clone().acquire_many_owned(needed_mib))
            .await
            .map_err(|_| GateError::MemoryBudget {
                needed_mib,
                budget_mib: self.budget_mib,
                waited: self.memory_wait,
            })?
            .expect("the budget semaphore is never closed");
        Ok(CallPermit {
            _slot: slot,
            _memory: memory,
        })
    }
}

/// A counting semaphore whose waiters are served one registration at a time
/// in turn.
struct FairSlots {
    total: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    free: usize,
    /// Waiters per registration, first come first served within one.
    waiting: BTreeMap<String, VecDeque<oneshot::Sender<SlotPermit>>>,
    /// Registrations with waiters, in the order their turn comes.
    turns: VecDeque<String>,
}

/// One slot; given back when dropped.
struct SlotPermit {
    slots: Option<Arc<FairSlots>>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release();
        }
    }
}

impl FairSlots {
    fn new(total: usize) -> Self {
        Self {
            total,
            state: Mutex::new(SlotState {
                free: total,
                ..SlotState::default()
            }),
        }
    }

    async fn acquire(self: Arc<Self>, registration: &str) -> SlotPermit {
        let waiter = {
            let mut guard = self.state.lock().expect("slot lock");
            let state = &mut *guard;
            if state.free > 0 && state.turns.is_empty() {
                state.free -= 1;
                return SlotPermit {
                    slots: Some(self.clone()),
                };
            }
            let (tx, rx) = oneshot::channel();
            let queue = state.waiting.entry(registration.to_owned()).or_default();
            if queue.is_empty() {
                state.turns.push_back(registration.to_owned());
            }
            queue.push_back(tx);
            rx
        };
        // A permit handed over is never lost: were this future dropped, the
        // permit in the channel would be dropped and give its slot back.
        waiter.await.expect("the slots outlive their waiters")
    }

    /// Gives a slot to the next registration in turn, or frees it.
    fn release(self: &Arc<Self>) {
        let mut guard = self.state.lock().expect("slot lock");
        let state = &mut *guard;
        while let Some(registration) = state.turns.pop_front() {
            let Some(queue) = state.waiting.get_mut(&registration) else {
                continue;
            };
            let next = queue.pop_front();
            if queue.is_empty() {
                state.waiting.remove(&registration);
            } else {
                state.turns.push_back(registration);
            }
            if let Some(tx) = next {
                let permit = SlotPermit {
                    slots: Some(self.clone()),
                };
                match tx.send(permit) {
                    Ok(()) => return,
                    // The waiter gave up: disarm the permit, try the next.
                    Err(mut permit) => permit.slots = None,
                }
            }
        }
        state.free += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_free_slot_goes_to_the_registrations_in_turn() {
        let gate = CallGate::new(1, 1024, Duration::from_secs(1));
        let held = gate.enter("busy", 1 << 20).await.unwrap();
        // "busy" queues 20 calls, then "calm" one.
        let (done, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (i, name) in std::iter::repeat_n("busy", 20).chain(["calm"]).enumerate() {
            let (gate, done) = (gate.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                let _permit = gate.enter(name, 1 << 20).await.unwrap();
                done.send(name).unwrap();
                tokio::task::yield_now().await;
            }));
            // Queue them in this order.
            if i == 0 {
                tokio::task::yield_now().await;
            }
            tokio::task::yield_now().await;
        }
        drop(held);
        for task in tasks {
            task.await.unwrap();
        }
        drop(done);
        let mut served = Vec::new();
        while let Some(name) = order.recv().await {
            served.push(name);
        }
        let calm_at = served.iter().position(|n| *n == "calm").unwrap();
        assert!(
            calm_at <= 1,
            "the calm registration waited behind {calm_at} busy calls: {served:?}"
        );
    }

    #[tokio::test]
    async fn a_call_waits_for_memory_then_fails_with_the_budget() {
        let gate = CallGate::new(4, 100, Duration::from_millis(200));
        let big = gate.enter("a", 80 << 20).await.unwrap();
        let err = gate.enter("b", 30 << 20).await.err().unwrap();
        assert!(
            matches!(
                err,
                GateError::MemoryBudget {
                    needed_mib: 30,
                    budget_mib: 100,
                    ..
                }
            ),
            "{err}"
        );
        drop(big);
        gate.enter("b", 30 << 20).await.unwrap();
        let err = gate.enter("c", 200 << 20).await.err().unwrap();
        assert!(matches!(err, GateError::AboveBudget { needed_mib: 200, .. }), "{err}");
    }

    #[tokio::test]
    async fn a_waiter_that_gives_up_loses_no_slot() {
        let gate = CallGate::new(1, 1024, Duration::from_secs(1));
        let held = gate.enter("a", 1 << 20).await.unwrap();
        let waiting = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter("b", 1 << 20).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        waiting.abort();
        let _ = waiting.await;
        drop(held);
        tokio::time::timeout(Duration::from_secs(1), gate.enter("c", 1 << 20))
            .await
            .expect("the slot came back")
            .unwrap();
    }
}
