//! Expectations: what this controller wrote and its caches have not shown yet. A reconcile
//! that runs before the watch catches up sees its own last status, the Jobs it just created
//! and not the ones it just deleted, so it neither repeats a write nor acts twice.

use crate::decide::JobFacts;
use multinic_api::MultiNicNodeConfigStatus;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A created Job the cache has not shown within this long is forgotten (it was never made, or
/// went again at once); the cache is trusted from then on.
const CREATED_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Inner {
    /// Resource uid -> (resourceVersion after our write, the status we wrote).
    statuses: HashMap<String, (u64, MultiNicNodeConfigStatus)>,
    /// Owner uid -> Jobs created, not yet seen in the Job cache, and when.
    created: HashMap<String, Vec<(Instant, JobFacts)>>,
    /// `namespace/name` -> uid of Jobs deleted and still in the Job cache (by uid: a new Job
    /// may take the same name).
    deleted: HashMap<String, String>,
}

/// Writes not yet reflected in the caches.
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<Inner>,
}

/// resourceVersions are opaque strings; every server we know uses increasing integers. When
/// one is not, expectations simply do not apply and the cache is trusted.
fn rv(version: Option<&str>) -> Option<u64> {
    version?.parse().ok()
}

impl Expectations {
    /// Remembers the status written to resource `uid`, now at `resource_version`.
    pub fn wrote_status(
        &self,
        uid: &str,
        resource_version: Option<&str>,
        status: MultiNicNodeConfigStatus,
    ) {
        if let Some(v) = rv(resource_version) {
            self.lock().statuses.insert(uid.to_string(), (v, status));
        }
    }

    /// The status to decide on: ours when the cached object is older than our write.
    pub fn status_for(
        &self,
        uid: &str,
        cached_version: Option<&str>,
        cached: Option<&MultiNicNodeConfigStatus>,
    ) -> Option<MultiNicNodeConfigStatus> {
        let mut inner = self.lock();
        let cached_v = rv(cached_version);
        match inner.statuses.get(uid) {
            Some((ours, status)) if cached_v.is_some_and(|c| c < *ours) => Some(status.clone()),
            Some(_) => {
                inner.statuses.remove(uid);
                cached.cloned()
            }
            None => cached.cloned(),
        }
    }

    /// Remembers a Job created for owner `uid`.
    pub fn created_job(&self, owner_uid: &str, job: JobFacts) {
        self.lock()
            .created
            .entry(owner_uid.to_string())
            .or_default()
            .push((Instant::now(), job));
    }

    /// Remembers a Job deleted (`namespace/name` and its uid).
    pub fn deleted_job(&self, key: &str, uid: &str) {
        self.lock().deleted.insert(key.to_string(), uid.to_string());
    }

    /// Merges expectations into the cached Jobs (with their uids) of owner `uid` in namespace
    /// `ns`, and forgets expectations the cache has caught up with.
    pub fn merge_jobs(
        &self,
        owner_uid: &str,
        ns: &str,
        cached: Vec<(String, JobFacts)>,
    ) -> Vec<JobFacts> {
        let mut inner = self.lock();
        let mut jobs: Vec<JobFacts> = Vec::with_capacity(cached.len());
        for (uid, job) in cached {
            let key = format!("{ns}/{}", job.name);
            if inner.deleted.get(&key) != Some(&uid) {
                jobs.push(job);
            }
        }
        if let Some(created) = inner.created.get_mut(owner_uid) {
            created.retain(|(at, c)| {
                at.elapsed() < CREATED_TTL && !jobs.iter().any(|j| j.name == c.name)
            });
            jobs.extend(created.iter().map(|(_, c)| c.clone()));
            if created.is_empty() {
                inner.created.remove(owner_uid);
            }
        }
        jobs
    }

    /// Forgets deletions the Job cache no longer shows (`alive(key, uid)` says what it has).
    pub fn settle_deleted(&self, alive: impl Fn(&str, &str) -> bool) {
        self.lock().deleted.retain(|key, uid| alive(key, uid));
    }

    /// Forgets everything about resource `uid` (it is gone).
    pub fn forget(&self, uid: &str) {
        let mut inner = self.lock();
        inner.statuses.remove(uid);
        inner.created.remove(uid);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::JobPhase;
    use multinic_api::report::AgentAction;

    fn facts(name: &str) -> JobFacts {
        JobFacts {
            name: name.into(),
            action: AgentAction::Apply,
            generation: Some(1),
            attempt: 1,
            phase: JobPhase::Running,
            no_pod_since: None,
        }
    }

    #[test]
    fn our_status_wins_until_the_cache_catches_up() {
        let e = Expectations::default();
        let ours = MultiNicNodeConfigStatus {
            attempts: Some(1),
            ..Default::default()
        };
        e.wrote_status("u", Some("10"), ours.clone());
        let stale = MultiNicNodeConfigStatus::default();
        assert_eq!(e.status_for("u", Some("9"), Some(&stale)), Some(ours));
        assert_eq!(
            e.status_for("u", Some("10"), Some(&stale)),
            Some(stale.clone())
        );
        // Forgotten once caught up.
        assert_eq!(e.status_for("u", Some("9"), Some(&stale)), Some(stale));
    }

    #[test]
    fn created_and_deleted_jobs_are_merged() {
        let e = Expectations::default();
        let cached = |name: &str, uid: &str| (uid.to_string(), facts(name));
        e.created_job("u", facts("new"));
        e.deleted_job("ns/old", "uid-old");
        let merged = e.merge_jobs("u", "ns", vec![cached("old", "uid-old")]);
        assert_eq!(merged, vec![facts("new")]);
        // The cache now shows "new": the expectation is dropped, nothing is doubled.
        let merged = e.merge_jobs("u", "ns", vec![cached("new", "uid-new")]);
        assert_eq!(merged, vec![facts("new")]);
        // A new Job under the deleted one's name is not hidden.
        let merged = e.merge_jobs("u", "ns", vec![cached("old", "uid-2")]);
        assert_eq!(merged, vec![facts("old")]);
        e.settle_deleted(|_, _| false);
        let merged = e.merge_jobs("u", "ns", vec![cached("old", "uid-old")]);
        assert_eq!(merged, vec![facts("old")]);
    }
}
