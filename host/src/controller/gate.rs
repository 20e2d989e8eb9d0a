//! The call gate: every plugin call of the host passes it, whichever
//! registration makes it.
//!
//! - **Instances.** At most `instances` calls are admitted at once: each
//!   holds a sandbox of the instance pool, which is sized a little above.
//!   One registration holds at most half of them, so it cannot leave the
//!   others without. A free one goes to the registrations waiting in turn
//!   (round robin), not to whoever asked first.
//! - **Memory budget.** A call is admitted only when its memory limit fits
//!   in what the calls admitted leave of the host-wide budget; it waits at
//!   most a bounded time, then fails with [`GateError::MemoryBudget`].
//! - **CPU turns.** Of the calls admitted, at most `cpu_slots` (a small
//!   multiple of the cores) execute at once, so looping plugins cannot
//!   take every core, the API server's included. A call gives its turn
//!   away at the end of each quantum when others wait ([`CpuShare`]), and
//!   turns go to the waiting registrations in turn: a registration with
//!   one call runs about as often as one with thirty looping ones, and a
//!   loop slows the others by its share of the CPU, not by its deadline.
//!   A thread executing plugin code also runs below the host's own threads
//!   (nice +[`PLUGIN_NICE`]), so busy plugins leave the CPU to the host's
//!   watches and writes, and to the API server beside it.

use crate::runtime::CpuShare;
use std::cell::Cell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// How much below the host's own threads (in nice steps) a thread runs once
/// it has executed plugin code. Linux lets no unprivileged thread climb back,
/// so such a thread of the blocking pool stays low for whatever it runs
/// next (host work there is blocking file IO, which the niceness barely
/// touches).
pub const PLUGIN_NICE: i32 = 10;

/// How often at most the running calls' quanta end early, for calls of
/// registrations that were running nothing.
const EARLY_QUANTUM_END: Duration = Duration::from_millis(1);

thread_local! {
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

/// Lowers the calling thread's priority by [`PLUGIN_NICE`], once.
fn lower_this_threads_priority() {
    if LOWERED.replace(true) {
        return;
    }
    let thread = Some(rustix::thread::gettid());
    let lowered = rustix::process::getpriority_process(thread)
        .and_then(|nice| rustix::process::setpriority_process(thread, (nice + PLUGIN_NICE).min(19)));
    if let Err(error) = lowered {
        tracing::debug!(%error, "could not lower the priority of a thread running plugin code");
    }
}

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

/// How many calls the gate lets in and run, and how much memory.
#[derive(Debug, Clone, Copy)]
pub struct GateLimits {
    /// Calls executing at once.
    pub cpu_slots: usize,
    /// Calls admitted (holding an instance) at once.
    pub instances: usize,
    /// The memory limits of the calls admitted add up to at most this.
    pub budget_mib: u32,
    /// How long a call waits for memory before it fails.
    pub memory_wait: Duration,
}

/// Admits plugin calls (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct CallGate {
    instances: Arc<FairSlots>,
    cpu: Arc<FairSlots>,
    memory: Arc<Semaphore>,
    budget_mib: u32,
    memory_wait: Duration,
}

impl std::fmt::Debug for CallGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallGate")
            .field("instances", &self.instances.total)
            .field("cpu_slots", &self.cpu.total)
            .field("budget_mib", &self.budget_mib)
            .finish_non_exhaustive()
    }
}

/// A call admitted: it holds an instance and its memory until dropped, and
/// takes CPU turns as the [`CpuShare`] of the call.
pub struct CallPermit {
    /// The instance, held by the call's registration (whose turns it takes).
    instance: SlotPermit,
    _memory: OwnedSemaphorePermit,
    cpu: Arc<FairSlots>,
    turn: Option<SlotPermit>,
}

impl CpuShare for CallPermit {
    fn take_turn(&mut self, end_quanta: &dyn Fn()) {
        lower_this_threads_priority();
        if self.turn.is_none() {
            self.turn = Some(
                self.cpu
                    .clone()
                    .acquire_blocking(&self.instance.registration, end_quanta),
            );
        }
    }

    fn pass_turn(&mut self) {
        if self.cpu.has_waiters()
            && let Some(turn) = self.turn.take()
        {
            self.turn = Some(self.cpu.pass_blocking(turn));
        }
    }
}

impl CallGate {
    /// A gate with `limits`.
    pub fn new(limits: GateLimits) -> Self {
        Self {
            instances: Arc::new(FairSlots::new(limits.instances.max(1), (limits.instances / 2).max(1))),
            cpu: Arc::new(FairSlots::new(limits.cpu_slots.max(1), limits.cpu_slots.max(1))),
            memory: Arc::new(Semaphore::new(limits.budget_mib as usize)),
            budget_mib: limits.budget_mib,
            memory_wait: limits.memory_wait,
        }
    }

    /// Waits for an instance (in turn with the other registrations) and for
    /// `memory_bytes` of the budget.
    pub async fn enter(&self, registration: &str, memory_bytes: usize) -> Result<CallPermit, GateError> {
        let needed_mib = u32::try_from(memory_bytes.div_ceil(1 << 20)).unwrap_or(u32::MAX).max(1);
        if needed_mib > self.budget_mib {
            return Err(GateError::AboveBudget {
                needed_mib,
                budget_mib: self.budget_mib,
            });
        }
        let instance = self.instances.clone().acquire(registration).await;
        let memory = tokio::time::timeout(self.memory_wait, self.memory.clone().acquire_many_owned(needed_mib))
            .await
            .map_err(|_| GateError::MemoryBudget {
                needed_mib,
                budget_mib: self.budget_mib,
                waited: self.memory_wait,
            })?
            .expect("the budget semaphore is never closed");
        Ok(CallPermit {
            instance,
            _memory: memory,
            cpu: self.cpu.clone(),
            turn: None,
        })
    }
}

/// A counting semaphore whose waiters are served one registration at a time
/// in turn, each registration holding at most `per_registration` slots. A
/// registration holding no slot goes to the head of the line when it starts
/// to wait: one that has been idle runs next, before those that hold slots
/// already and want more.
struct FairSlots {
    total: usize,
    per_registration: usize,
    state: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    free: usize,
    /// Slots held per registration.
    held: BTreeMap<String, usize>,
    /// Waiters per registration, first come first served within one.
    waiting: BTreeMap<String, VecDeque<oneshot::Sender<SlotPermit>>>,
    /// Registrations with waiters, in the order their turn comes.
    turns: VecDeque<String>,
    /// When the running quanta were last ended early for a newcomer.
    quanta_ended: Option<Instant>,
}

impl SlotState {
    fn held(&self, registration: &str) -> usize {
        self.held.get(registration).copied().unwrap_or(0)
    }

    /// Gives a free slot to `registration`; `slots` is where it goes back.
    fn grant(&mut self, slots: &Arc<FairSlots>, registration: &str) -> SlotPermit {
        self.free -= 1;
        *self.held.entry(registration.to_owned()).or_default() += 1;
        SlotPermit {
            slots: Some(slots.clone()),
            registration: registration.to_owned(),
        }
    }

    /// `registration` gives a slot back.
    fn give_back(&mut self, registration: &str) {
        self.free += 1;
        if let Some(held) = self.held.get_mut(registration) {
            *held -= 1;
            if *held == 0 {
                self.held.remove(registration);
            }
        }
    }

    /// A place in `registration`'s queue, its turn at the head of the line
    /// if it holds no slot.
    fn enqueue(&mut self, registration: &str) -> oneshot::Receiver<SlotPermit> {
        let (tx, rx) = oneshot::channel();
        let holds = self.held.contains_key(registration);
        let queue = self.waiting.entry(registration.to_owned()).or_default();
        if queue.is_empty() {
            if holds {
                self.turns.push_back(registration.to_owned());
            } else {
                self.turns.push_front(registration.to_owned());
            }
        }
        queue.push_back(tx);
        rx
    }

    /// Hands free slots to waiters: each to the first registration in turn
    /// that holds fewer than `per_registration`, which then goes to the back.
    fn dispatch(&mut self, slots: &Arc<FairSlots>) {
        while self.free > 0 {
            let Some(at) = self.turns.iter().position(|r| self.held(r) < slots.per_registration) else {
                return;
            };
            let next = self.turns.remove(at).expect("a position in the turns");
            let Some(queue) = self.waiting.get_mut(&next) else {
                continue;
            };
            let waiter = queue.pop_front();
            if queue.is_empty() {
                self.waiting.remove(&next);
            } else {
                self.turns.push_back(next.clone());
            }
            if let Some(tx) = waiter {
                let permit = self.grant(slots, &next);
                if let Err(mut permit) = tx.send(permit) {
                    // The waiter gave up: disarm the permit, try the next.
                    permit.slots = None;
                    self.give_back(&next);
                }
            }
        }
    }
}

/// One slot of a registration; given back when dropped.
struct SlotPermit {
    slots: Option<Arc<FairSlots>>,
    registration: String,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.release(&self.registration);
        }
    }
}

impl FairSlots {
    fn new(total: usize, per_registration: usize) -> Self {
        Self {
            total,
            per_registration,
            state: Mutex::new(SlotState {
                free: total,
                ..SlotState::default()
            }),
        }
    }

    /// A free slot if nobody waits and `registration` may hold another,
    /// else a place in its queue.
    fn take_or_queue(self: &Arc<Self>, registration: &str) -> Result<SlotPermit, oneshot::Receiver<SlotPermit>> {
        let mut state = self.state.lock().expect("slot lock");
        if state.free > 0 && state.turns.is_empty() && state.held(registration) < self.per_registration {
            return Ok(state.grant(self, registration));
        }
        let waiter = state.enqueue(registration);
        // Registrations ahead may all be at their share while slots are free.
        state.dispatch(self);
        Err(waiter)
    }

    async fn acquire(self: Arc<Self>, registration: &str) -> SlotPermit {
        match self.take_or_queue(registration) {
            Ok(permit) => permit,
            // A permit handed over is never lost: were this future dropped,
            // the permit in the channel would be dropped and give its slot
            // back.
            Err(waiter) => waiter.await.expect("the slots outlive their waiters"),
        }
    }

    /// [`FairSlots::acquire`] for a thread that may block (not a task).
    /// When a registration that holds no slot must wait, `end_quanta` ends
    /// the running calls' quanta, so it runs next without waiting out
    /// theirs (at most once per [`EARLY_QUANTUM_END`], so that newcomers
    /// cannot cut the quanta to nothing).
    fn acquire_blocking(self: Arc<Self>, registration: &str, end_quanta: &dyn Fn()) -> SlotPermit {
        match self.take_or_queue(registration) {
            Ok(permit) => permit,
            Err(waiter) => {
                if self.may_end_quanta_for(registration) {
                    end_quanta();
                }
                waiter.blocking_recv().expect("the slots outlive their waiters")
            }
        }
    }

    /// Whether `registration`, which waits, holds no slot and the running
    /// quanta were not ended early within [`EARLY_QUANTUM_END`].
    fn may_end_quanta_for(&self, registration: &str) -> bool {
        let mut state = self.state.lock().expect("slot lock");
        let now = Instant::now();
        let recently = state
            .quanta_ended
            .is_some_and(|at| now.duration_since(at) < EARLY_QUANTUM_END);
        if state.held.contains_key(registration) || recently {
            return false;
        }
        state.quanta_ended = Some(now);
        true
    }

    /// Gives `held` to the next in line and waits for a slot again, queued
    /// as a registration that holds one (behind the others).
    fn pass_blocking(self: &Arc<Self>, held: SlotPermit) -> SlotPermit {
        let waiter = self.state.lock().expect("slot lock").enqueue(&held.registration);
        drop(held);
        waiter.blocking_recv().expect("the slots outlive their waiters")
    }

    /// Whether any registration waits for a slot.
    fn has_waiters(&self) -> bool {
        !self.state.lock().expect("slot lock").turns.is_empty()
    }

    /// `registration` gives a slot back: it goes to the next registration in
    /// turn, or stays free.
    fn release(self: &Arc<Self>, registration: &str) {
        let mut state = self.state.lock().expect("slot lock");
        state.give_back(registration);
        state.dispatch(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(cpu_slots: usize, instances: usize, budget_mib: u32, memory_wait: Duration) -> CallGate {
        CallGate::new(GateLimits {
            cpu_slots,
            instances,
            budget_mib,
            memory_wait,
        })
    }

    #[tokio::test]
    async fn a_free_instance_goes_to_the_registrations_in_turn() {
        let gate = gate(1, 1, 1024, Duration::from_secs(1));
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
        let gate = gate(4, 4, 100, Duration::from_millis(200));
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
        let gate = gate(1, 1, 1024, Duration::from_secs(1));
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

    /// One CPU slot; "busy" has ten calls that run without end, passing
    /// their turn at each quantum; "calm" then asks for a turn: holding none,
    /// it gets the next, not one after all the busy calls.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_registration_waiting_for_the_cpu_runs_next() {
        let gate = gate(1, 32, 1024, Duration::from_secs(1));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let quanta = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut busy = Vec::new();
        for _ in 0..10 {
            let mut permit = gate.enter("busy", 1 << 20).await.unwrap();
            let (stop, quanta) = (stop.clone(), quanta.clone());
            busy.push(tokio::task::spawn_blocking(move || {
                permit.take_turn(&|| {});
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(5));
                    quanta.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    permit.pass_turn();
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut calm = gate.enter("calm", 1 << 20).await.unwrap();
        let before = quanta.load(std::sync::atomic::Ordering::Relaxed);
        let waited = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::task::spawn_blocking(move || {
                calm.take_turn(&|| {});
                quanta.load(std::sync::atomic::Ordering::Relaxed) - before
            }),
        )
        .await;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for task in busy {
            task.await.unwrap();
        }
        let ran_after = waited.expect("the calm call got a turn").unwrap();
        assert!(
            ran_after <= 1,
            "the calm call waited {ran_after} quanta of the busy ones for its turn"
        );
    }

    /// One CPU slot held by "busy": a second busy call waits without ending
    /// the running quantum, a call of "calm" (holding none) ends it once,
    /// and then gets the turn "busy" passes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiting_newcomer_ends_the_running_quanta() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let gate = gate(1, 32, 1024, Duration::from_secs(1));
        let ended = Arc::new(AtomicUsize::new(0));
        // Takes a turn on a thread of its own, counting the quanta it ends.
        let take_turn = |mut permit: CallPermit| {
            let ended = ended.clone();
            tokio::task::spawn_blocking(move || {
                permit.take_turn(&|| {
                    ended.fetch_add(1, Ordering::SeqCst);
                });
                permit
            })
        };
        let mut running = take_turn(gate.enter("busy", 1 << 20).await.unwrap()).await.unwrap();
        assert_eq!(
            ended.load(Ordering::SeqCst),
            0,
            "a call that got a free turn ended quanta"
        );
        let second = take_turn(gate.enter("busy", 1 << 20).await.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            ended.load(Ordering::SeqCst),
            0,
            "a registration already running ended the quanta for another call"
        );
        let calm = take_turn(gate.enter("calm", 1 << 20).await.unwrap());
        tokio::time::timeout(Duration::from_secs(1), async {
            while ended.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the calm call ended the running quantum");
        let running = tokio::task::spawn_blocking(move || {
            running.pass_turn();
            running
        });
        tokio::time::timeout(Duration::from_secs(1), calm)
            .await
            .expect("the calm call got the turn passed")
            .unwrap();
        let second = tokio::time::timeout(Duration::from_secs(1), second)
            .await
            .expect("then the second busy call")
            .unwrap();
        drop(second);
        drop(running.await.unwrap());
        assert_eq!(ended.load(Ordering::SeqCst), 1);
    }

    /// Four instances: "greedy" gets two (half) and waits for more while
    /// two stay free, which "other" then takes at once.
    #[tokio::test]
    async fn one_registration_holds_at_most_half_the_instances() {
        let gate = gate(4, 4, 1024, Duration::from_secs(1));
        let _first = gate.enter("greedy", 1 << 20).await.unwrap();
        let _second = gate.enter("greedy", 1 << 20).await.unwrap();
        let third = tokio::time::timeout(Duration::from_millis(200), gate.enter("greedy", 1 << 20)).await;
        assert!(third.is_err(), "a registration took more than half the instances");
        let greedy_waits = tokio::spawn({
            let gate = gate.clone();
            async move { gate.enter("greedy", 1 << 20).await.map(|_| ()) }
        });
        tokio::task::yield_now().await;
        // Free instances and a capped registration waiting ahead: the
        // other registration is not kept behind it.
        let _a = tokio::time::timeout(Duration::from_secs(1), gate.enter("other", 1 << 20))
            .await
            .expect("the other registration got a free instance")
            .unwrap();
        let _b = tokio::time::timeout(Duration::from_secs(1), gate.enter("other", 1 << 20))
            .await
            .expect("and a second")
            .unwrap();
        // Once "greedy" gives one back, its waiter gets it.
        drop(_first);
        tokio::time::timeout(Duration::from_secs(1), greedy_waits)
            .await
            .expect("greedy's waiter got the instance given back")
            .unwrap()
            .unwrap();
    }
}
