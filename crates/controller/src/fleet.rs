//! What the controller knows across resources, kept from the resource watch itself so no
//! reconcile scans the cache: which resource owns each node (the oldest that names it), and
//! which resources have failed since their last change (the rollout budget).

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
        if maps.failed.len() < self.limit(&maps) {
            woken.extend(maps.paused.drain());
        }
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
            maps.failed.insert(uid);
        } else {
            maps.failed.remove(&uid);
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
        let mut maps = self.lock();
        if !maps.by_uid.contains_key(uid) {
            return;
        }
        if failed {
            maps.failed.insert(uid.to_string());
        } else if maps.failed.remove(uid) && maps.failed.len() < self.limit(&maps) {
            let woken: Vec<Ref> = maps.paused.drain().collect();
            drop(maps);
            for r in woken {
                let _ = self.wake.send(r);
            }
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

    /// `(failed, limit)` when the rollout budget is spent and `uid` is not itself among the
    /// failed (a failed resource may still retry).
    pub fn rollout_paused(&self, uid: &str) -> Option<(usize, usize)> {
        let maps = self.lock();
        let limit = self.limit(&maps);
        let failed = maps.failed.len();
        (failed >= limit && !maps.failed.contains(uid)).then_some((failed, limit))
    }

    /// Remembers that `who` waits for the budget: it is woken once failures drop below it.
    pub fn pause(&self, who: &Ref) {
        let mut maps = self.lock();
        if maps.failed.len() < self.limit(&maps) {
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

    fn limit(&self, maps: &Maps) -> usize {
        self.budget.limit(maps.by_uid.len())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Maps> {
        self.maps.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops `uid`'s claim; the other claimants of its node are woken (one may own it now).
fn remove(maps: &mut Maps, uid: &str, woken: &mut Vec<Ref>) {
    maps.failed.remove(uid);
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
