//! The cluster-wide cap on agent Jobs in flight: a reservation per Job, and a queue of
//! resources waiting for a slot that are woken (through the controller's `reconcile_on`
//! trigger) the moment one frees up, so nobody polls.

use kube::runtime::reflector::ObjectRef;
use multinic_api::MultiNicNodeConfig;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

type Waiter = ObjectRef<MultiNicNodeConfig>;

#[derive(Default)]
struct Inner {
    in_flight: HashMap<String, Instant>,
    waiting: VecDeque<Waiter>,
    waiting_set: HashSet<Waiter>,
    /// Woken for a free slot and not yet back.
    woken: HashSet<Waiter>,
}

/// Reservations of Job slots, keyed by `namespace/job-name`.
pub struct JobSlots {
    cap: usize,
    inner: Mutex<Inner>,
    wake: UnboundedSender<Waiter>,
}

impl JobSlots {
    /// A cap of `cap` Jobs; waiters are sent to `wake` when a slot frees.
    pub fn new(cap: usize, wake: UnboundedSender<Waiter>) -> Self {
        Self {
            cap: cap.max(1),
            inner: Mutex::new(Inner::default()),
            wake,
        }
    }

    /// Reserves a slot for `job` (idempotent). When none is free, `waiter` is queued and
    /// woken later, and `false` comes back.
    pub fn reserve(&self, job: &str, waiter: &Waiter) -> bool {
        let mut inner = self.lock();
        if inner.in_flight.contains_key(job) {
            return true;
        }
        inner.woken.remove(waiter);
        if inner.in_flight.len() < self.cap {
            inner.in_flight.insert(job.to_string(), Instant::now());
            inner.waiting_set.remove(waiter);
            return true;
        }
        if inner.waiting_set.insert(waiter.clone()) {
            inner.waiting.push_back(waiter.clone());
        }
        false
    }

    /// Counts a Job that already exists (found in the cache after a restart), cap or not.
    pub fn adopt(&self, job: &str) {
        self.lock()
            .in_flight
            .entry(job.to_string())
            .or_insert_with(Instant::now);
    }

    /// `waiter` was woken for a slot but needs none now (it settled otherwise): the slot
    /// passes on to the next waiter instead of staying free until a safety requeue.
    pub fn declined(&self, waiter: &Waiter) {
        let mut inner = self.lock();
        if inner.woken.remove(waiter) {
            self.wake_free(&mut inner);
        }
    }

    /// Frees the slot of `job` and wakes as many waiters as there are free slots.
    pub fn release(&self, job: &str) {
        let mut inner = self.lock();
        if inner.in_flight.remove(job).is_some() {
            self.wake_free(&mut inner);
        }
    }

    /// Frees reservations older than `max_age` whose Job is not `alive` (deleted by someone
    /// else, or never created), so a lost Job cannot hold a slot forever; forgets who was
    /// woken for a slot (one deleted meanwhile never comes back to take it).
    pub fn sweep(&self, max_age: Duration, alive: impl Fn(&str) -> bool) {
        let mut inner = self.lock();
        let before = inner.in_flight.len();
        inner
            .in_flight
            .retain(|job, since| since.elapsed() < max_age || alive(job));
        // A woken waiter that never came back (deleted meanwhile) gives up its claim.
        let stale_claims = !inner.woken.is_empty();
        inner.woken.clear();
        if inner.in_flight.len() < before || stale_claims {
            self.wake_free(&mut inner);
        }
    }

    /// Jobs in flight now.
    pub fn in_flight(&self) -> usize {
        self.lock().in_flight.len()
    }

    /// Resources waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    fn wake_free(&self, inner: &mut Inner) {
        // Those woken and not yet back hold a claim on the free slots already.
        let free = self
            .cap
            .saturating_sub(inner.in_flight.len() + inner.woken.len());
        for _ in 0..free {
            let Some(next) = inner.waiting.pop_front() else {
                break;
            };
            inner.waiting_set.remove(&next);
            inner.woken.insert(next.clone());
            let _ = self.wake.send(next);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiter(name: &str) -> Waiter {
        ObjectRef::new(name).within("ns")
    }

    #[test]
    fn cap_is_enforced_and_waiters_are_woken_in_order() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let slots = JobSlots::new(2, tx);
        assert!(slots.reserve("ns/a", &waiter("a")));
        assert!(slots.reserve("ns/b", &waiter("b")));
        assert!(slots.reserve("ns/a", &waiter("a")), "idempotent");
        assert!(!slots.reserve("ns/c", &waiter("c")));
        assert!(!slots.reserve("ns/d", &waiter("d")));
        assert!(!slots.reserve("ns/c", &waiter("c")), "queued once");
        assert_eq!((slots.in_flight(), slots.waiting()), (2, 2));
        slots.release("ns/a");
        assert_eq!(rx.try_recv().unwrap(), waiter("c"));
        assert!(rx.try_recv().is_err(), "only one slot freed");
        slots.release("ns/unknown");
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_woken_waiter_that_needs_no_slot_passes_it_on() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let slots = JobSlots::new(1, tx);
        assert!(slots.reserve("ns/a", &waiter("a")));
        assert!(!slots.reserve("ns/b", &waiter("b")));
        assert!(!slots.reserve("ns/c", &waiter("c")));
        slots.release("ns/a");
        assert_eq!(rx.try_recv().unwrap(), waiter("b"));
        // b settles without a Job (e.g. the rollout is paused): c gets the slot.
        slots.declined(&waiter("b"));
        assert_eq!(rx.try_recv().unwrap(), waiter("c"));
        // Declining when not woken for a slot wakes nobody.
        slots.declined(&waiter("b"));
        assert!(rx.try_recv().is_err());
        assert!(slots.reserve("ns/c", &waiter("c")));
    }

    #[test]
    fn sweep_frees_lost_reservations() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let slots = JobSlots::new(5, tx);
        slots.adopt("ns/kept");
        slots.adopt("ns/lost");
        slots.sweep(Duration::ZERO, |job| job == "ns/kept");
        assert_eq!(slots.in_flight(), 1);
    }
}
