//! Expectations: what this controller wrote and its caches have not shown yet. A reconcile
//! that runs before the watch catches up sees its own last status, the Jobs it just created
//! and not the ones it just deleted, so it neither repeats a write nor acts twice.

use crate::decide::JobFacts;
use multinic_api::MultiNicNodeConfigStatus;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

#[derive(Default)]
struct Inner {
    /// Resource uid -> (resourceVersion after our write, the status we wrote).
    statuses: HashMap<String, (u64, MultiNicNodeConfigStatus)>,
    /// Owner uid -> Jobs created, not yet seen in the Job cache.
    created: HashMap<String, Vec<JobFacts>>,
    /// `namespace/name` of Jobs deleted, still in the Job cache.
    deleted: HashSet<String>,
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
            .push(job);
    }

    /// Remembers a Job deleted (`namespace/name`).
    pub fn deleted_job(&self, key: &str) {
        self.lock().deleted.insert(key.to_string());
    }

    /// Merges expectations into the cached Jobs of owner `uid` in namespace `ns`, and forgets
    /// expectations the cache has caught up with.
    pub fn merge_jobs(&self, owner_uid: &str, ns: &str, cached: Vec<JobFacts>) -> Vec<JobFacts> {
        let mut inner = self.lock();
        let mut jobs: Vec<JobFacts> = Vec::with_capacity(cached.len());
        for job in cached {
            let key = format!("{ns}/{}", job.name);
            if !inner.deleted.contains(&key) {
                jobs.push(job);
            }
        }
        if let Some(created) = inner.created.get_mut(owner_uid) {
            created.retain(|c| !jobs.iter().any(|j| j.name == c.name));
            jobs.extend(created.iter().cloned());
            if created.is_empty() {
                inner.created.remove(owner_uid);
            }
        }
        jobs
    }

    /// Forgets deletions the Job cache no longer shows (`alive` says what it still has).
    pub fn settle_deleted(&self, alive: impl Fn(&str) -> bool) {
        self.lock().deleted.retain(|key| alive(key));
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
        e.created_job("u", facts("new"));
        e.deleted_job("ns/old");
        let merged = e.merge_jobs("u", "ns", vec![facts("old")]);
        assert_eq!(merged, vec![facts("new")]);
        // The cache now shows "new": the expectation is dropped, nothing is doubled.
        let merged = e.merge_jobs("u", "ns", vec![facts("new")]);
        assert_eq!(merged, vec![facts("new")]);
        e.settle_deleted(|_| false);
        assert_eq!(
            e.merge_jobs("u", "ns", vec![facts("old")]),
            vec![facts("old")]
        );
    }
}
