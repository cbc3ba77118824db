//! What the controller knows across resources, kept from the resource watch itself so no
//! reconcile scans the cache: which resource owns each node (the oldest that names it), and
//! the rollout budget: the resources that have failed since their last change plus the changed
//! ones whose agent Job is running now (as kubernetes-nmstate's maxUnavailable counts failed
//! and in-progress nodes), so a bad push stops after a few Jobs, not after the Job cap.

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigStatus, NodeConfigState, StateReason};
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use tokio::sync::mpsc::UnboundedSender;

type Ref = ObjectRef<MultiNicNodeConfig>;

/// How many failed resources pause the rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaxFailures {
    /// A fixed number of resources.
    Count(usize),
    /// A percentage of all resources (rounded up, at least one).
    Percent(u8),
}

impl MaxFailures {
    /// Parses `3` or `10%`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("{text:?}: expected a number of resources (3) or a percentage (10%)");
        match text.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u8>() {
                Ok(p) if (1..=100).contains(&p) => Ok(Self::Percent(p)),
                _ => Err(bad()),
            },
            None => match text.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Self::Count(n)),
                _ => Err(bad()),
            },
        }
    }

    /// The number of failed resources that pauses a rollout over `total` resources.
    pub fn limit(self, total: usize) -> usize {
        match self {
            Self::Count(n) => n.max(1),
            Self::Percent(p) => (total * usize::from(p)).div_ceil(100).max(1),
        }
    }
}

/// How the rollout budget stands when it holds a resource back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spent {
    /// Resources failed since their last change.
    pub failed: usize,
    /// Changed resources whose agent Job runs now.
    pub changing: usize,
    /// The budget ([`MaxFailures::limit`]).
    pub limit: usize,
}

/// One resource's claim on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Claim {
    created: Option<jiff::Timestamp>,
    /// An agent Job has run for it (status names one).
    ran: bool,
    uid: String,
    who: Ref,
}

impl Claim {
    /// Older first. Timestamps have one-second resolution: within a second the resource
    /// that already ran a Job keeps the node, then the uid decides (the same on every replica).
    fn key(&self) -> (Option<jiff::Timestamp>, bool, &str) {
        (self.created, !self.ran, &self.uid)
    }
}

#[derive(Default)]
struct Maps {
    /// uid -> (node, claim).
    by_uid: HashMap<String, (String, Claim)>,
    /// node -> claims.
    by_node: HashMap<String, Vec<Claim>>,
    /// Resources failed since their last change, by uid.
    failed: HashSet<String>,
    /// Changed resources (generation above 1: the spec changed after creation) with an agent
    /// Job applying that generation, uid -> generation. Never also in `failed`.
    changing: HashMap<String, i64>,
    /// Resources held back by the rollout budget, woken when it frees.
    paused: HashSet<Ref>,
    /// Uids seen during a re-list (between Init and InitDone).
    relist: Option<HashSet<String>>,
}

/// Node ownership and the rollout budget, fed by every resource watch event.
pub struct Fleet {
    maps: Mutex<Maps>,
    budget: MaxFailures,
    wake: UnboundedSender<Ref>,
}

/// Whether `obj` has failed at its current generation in a way a Job run caused.
pub fn failed_since_change(obj: &MultiNicNodeConfig) -> bool {
    obj.status
        .as_ref()
        .is_some_and(|s| job_failed_at(s, obj.metadata.generation))
}

/// Whether `obj`'s status says an agent Job applies its current generation, and that
/// generation is a change (the first configuration of a new resource uses no budget: a new
/// node serves nothing yet, and a fleet's first rollout must not run a few Jobs at a time).
fn changing_now(obj: &MultiNicNodeConfig) -> bool {
    let generation = obj.metadata.generation;
    generation.is_some_and(|g| g > 1)
        && obj.status.as_ref().is_some_and(|s| {
            s.state == Some(NodeConfigState::InProgress) && s.observed_generation == generation
        })
}

/// Whether `obj`'s status ends the run that `changing` counted at `generation`: a later
/// generation, or an outcome of this one. (A Pending status of this generation does not: the
/// watch may deliver one written before the Job started after it; the controller's own writes
/// end a run through [`Fleet::wrote_status`].)
fn run_ended(obj: &MultiNicNodeConfig, generation: i64) -> bool {
    let current = obj.metadata.generation.unwrap_or(0);
    current > generation
        || obj.status.as_ref().is_some_and(|s| {
            s.observed_generation == Some(current)
                && matches!(
                    s.state,
                    Some(NodeConfigState::Configured | NodeConfigState::Failed)
                )
        })
}

/// Whether `status` records a Job-run failure of `generation`.
fn job_failed_at(status: &MultiNicNodeConfigStatus, generation: Option<i64>) -> bool {
    status.state == Some(NodeConfigState::Failed)
        && status.observed_generation == generation
        && crate::decide::ready_reason(status).is_some_and(StateReason::is_job_failure)
}

impl Fleet {
    /// An empty view; resources woken by it (claims released, budget freed) go to `wake`.
    pub fn new(budget: MaxFailures, wake: UnboundedSender<Ref>) -> Self {
        Self {
            maps: Mutex::default(),
            budget,
            wake,
        }
    }

    /// Applies one watch event of the resource stream.
    pub fn apply(&self, event: &watcher::Event<MultiNicNodeConfig>) {
        let mut maps = self.lock();
        let mut woken = Vec::new();
        match event {
            watcher::Event::Apply(obj) => self.upsert(&mut maps, obj, &mut woken),
            watcher::Event::InitApply(obj) => {
                maps.relist
                    .get_or_insert_with(HashSet::new)
                    .insert(obj.uid().unwrap_or_default());
                self.upsert(&mut maps, obj, &mut woken);
            }
            watcher::Event::Delete(obj) => {
                remove(&mut maps, &obj.uid().unwrap_or_default(), &mut woken);
            }
            watcher::Event::Init => maps.relist = Some(HashSet::new()),
            watcher::Event::InitDone => {
                let seen = maps.relist.take().unwrap_or_default();
                let gone: Vec<String> = maps
                    .by_uid
                    .keys()
                    .filter(|u| !seen.contains(*u))
                    .cloned()
                    .collect();
                for uid in gone {
                    remove(&mut maps, &uid, &mut woken);
                }
            }
        }
        woken.extend(self.freed(&mut maps));
        drop(maps);
        for r in woken {
            let _ = self.wake.send(r);
        }
    }

    fn upsert(&self, maps: &mut Maps, obj: &MultiNicNodeConfig, woken: &mut Vec<Ref>) {
        let uid = obj.uid().unwrap_or_default();
        let node = obj.spec.node_name.clone();
        let claim = Claim {
            created: obj.metadata.creation_timestamp.as_ref().map(|t| t.0),
            ran: obj
                .status
                .as_ref()
                .is_some_and(|s| s.last_job_name.is_some()),
            uid: uid.clone(),
            who: ObjectRef::from_obj(obj),
        };
        if maps.by_uid.get(&uid) != Some(&(node.clone(), claim.clone())) {
            if maps.by_uid.get(&uid).map(|(n, _)| n) != Some(&node) {
                remove(maps, &uid, woken);
            }
            let claims = maps.by_node.entry(node.clone()).or_default();
            claims.retain(|c| c.uid != uid);
            claims.push(claim.clone());
            maps.by_uid.insert(uid.clone(), (node, claim));
        }
        if failed_since_change(obj) {
            maps.changing.remove(&uid);
            maps.failed.insert(uid);
            return;
        }
        maps.failed.remove(&uid);
        if changing_now(obj) {
            let generation = obj.metadata.generation.unwrap_or(0);
            maps.changing.insert(uid, generation);
        } else if maps.changing.get(&uid).is_some_and(|g| run_ended(obj, *g)) {
            maps.changing.remove(&uid);
        }
    }

    /// Notes a status this controller just wrote for `uid` at `generation`, before the watch
    /// shows it, so the next start already counts the failure.
    pub fn wrote_status(
        &self,
        uid: &str,
        generation: Option<i64>,
        status: &MultiNicNodeConfigStatus,
    ) {
        let failed = job_failed_at(status, generation);
        let running = status.state == Some(NodeConfigState::InProgress)
            && status.observed_generation == generation
            && generation.is_some_and(|g| g > 1);
        let mut maps = self.lock();
        if !maps.by_uid.contains_key(uid) {
            return;
        }
        if failed {
            maps.changing.remove(uid);
            maps.failed.insert(uid.to_string());
            return;
        }
        maps.failed.remove(uid);
        if running {
            maps.changing
                .insert(uid.to_string(), generation.unwrap_or(0));
        } else {
            maps.changing.remove(uid);
        }
        let woken = self.freed(&mut maps);
        drop(maps);
        for r in woken {
            let _ = self.wake.send(r);
        }
    }

    /// Takes budget for an agent Job of `uid` at `generation` before it is created; `force`
    /// (the resume annotation) takes it even when spent. `Ok(true)` when this call took it (to
    /// be given back with [`Self::unclaim`] if the Job is not created), `Ok(false)` when none
    /// was needed (a first configuration) or the resource holds budget already (failed or
    /// changing), `Err` when the budget is spent. Check and take are one step, so concurrent
    /// reconciles cannot start more changes than the budget allows.
    pub fn claim(&self, uid: &str, generation: i64, force: bool) -> Result<bool, Spent> {
        if generation <= 1 {
            return Ok(false);
        }
        let mut maps = self.lock();
        if !maps.by_uid.contains_key(uid)
            || maps.failed.contains(uid)
            || maps.changing.contains_key(uid)
        {
            return Ok(false);
        }
        let spent = self.spent(&maps);
        if !force && spent.failed + spent.changing >= spent.limit {
            return Err(spent);
        }
        maps.changing.insert(uid.to_string(), generation);
        Ok(true)
    }

    /// Gives back what [`Self::claim`] took: the Job was not created.
    pub fn unclaim(&self, uid: &str) {
        let mut maps = self.lock();
        maps.changing.remove(uid);
        let woken = self.freed(&mut maps);
        drop(maps);
        for r in woken {
            let _ = self.wake.send(r);
        }
    }

    /// The resource that owns `node` when it is not `uid`: the oldest that names the node.
    pub fn owner_other_than(&self, node: &str, uid: &str) -> Option<Ref> {
        let maps = self.lock();
        let owner = maps
            .by_node
            .get(node)?
            .iter()
            .min_by(|a, b| a.key().cmp(&b.key()))?;
        (owner.uid != uid).then(|| owner.who.clone())
    }

    /// How the budget stands when it is spent and `uid` holds none of it itself (a failed
    /// resource may still retry, a changing one finish).
    pub fn rollout_paused(&self, uid: &str) -> Option<Spent> {
        let maps = self.lock();
        let spent = self.spent(&maps);
        let holds = maps.failed.contains(uid) || maps.changing.contains_key(uid);
        (spent.failed + spent.changing >= spent.limit && !holds).then_some(spent)
    }

    /// Remembers that `who` waits for the budget: it is woken once it frees.
    pub fn pause(&self, who: &Ref) {
        let mut maps = self.lock();
        if !self.is_spent(&maps) {
            drop(maps);
            let _ = self.wake.send(who.clone());
        } else {
            maps.paused.insert(who.clone());
        }
    }

    /// Resources held back by the rollout budget now.
    pub fn paused(&self) -> usize {
        self.lock().paused.len()
    }

    /// Forgets that `who` was paused (it started, or is gone).
    pub fn unpause(&self, who: &Ref) {
        self.lock().paused.remove(who);
    }

    fn spent(&self, maps: &Maps) -> Spent {
        Spent {
            failed: maps.failed.len(),
            changing: maps.changing.len(),
            limit: self.budget.limit(maps.by_uid.len()),
        }
    }

    fn is_spent(&self, maps: &Maps) -> bool {
        let spent = self.spent(maps);
        spent.failed + spent.changing >= spent.limit
    }

    /// The paused resources to wake when the budget has room again.
    fn freed(&self, maps: &mut Maps) -> Vec<Ref> {
        if self.is_spent(maps) {
            Vec::new()
        } else {
            maps.paused.drain().collect()
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops `uid`'s claim; the other claimants of its node are woken (one may own it now).
fn remove(maps: &mut Maps, uid: &str, woken: &mut Vec<Ref>) {
    maps.failed.remove(uid);
    maps.changing.remove(uid);
    let Some((node, claim)) = maps.by_uid.remove(uid) else {
        return;
    };
    maps.paused.remove(&claim.who);
    if let Some(claims) = maps.by_node.get_mut(&node) {
        claims.retain(|c| c.uid != uid);
        woken.extend(claims.iter().map(|c| c.who.clone()));
        if claims.is_empty() {
            maps.by_node.remove(&node);
        }
    }
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
