//! The Job controller (batch/v1): creates a Pod from the template (owned by the Job), counts
//! active/succeeded/failed Pods into status, retries until `backoffLimit` failures, fails the
//! Job after `activeDeadlineSeconds`, sets Complete/Failed conditions and deletes finished Jobs
//! after `ttlSecondsAfterFinished`. Restart policy `OnFailure` is treated as `Never`: each retry
//! is a new Pod.

use crate::gc::{DeleteOptions, Propagation};
use crate::meta;
use crate::registry::ResourceType;
use crate::store::{Change, Store, Target};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

type JobKey = (String, String);

struct JobController {
    store: Arc<Store>,
    jobs: Arc<ResourceType>,
    pods: Arc<ResourceType>,
    timers: mpsc::UnboundedSender<JobKey>,
    /// Pods by owning Job uid, kept from the change feed (the informer index a real Job
    /// controller uses), so counting a Job's pods does not scan every pod.
    pods_by_owner: Mutex<HashMap<String, BTreeSet<(String, String)>>>,
}

/// Runs the Job controller until `stop` turns true.
pub(crate) async fn run(store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    let mut feed = store.subscribe_internal();
    let (timers, mut due) = mpsc::unbounded_channel();
    let (Some(jobs), Some(pods)) = (
        store.lookup("batch", "v1", "jobs"),
        store.lookup("", "v1", "pods"),
    ) else {
        return;
    };
    let ctl = JobController {
        store,
        jobs,
        pods,
        timers,
        pods_by_owner: Mutex::default(),
    };
    ctl.resync();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            Some((ns, name)) = due.recv() => ctl.reconcile(&ns, &name),
            got = feed.recv() => match got {
                Some(c) => ctl.on_change(&c),
                None => return,
            }
        }
    }
}

fn secs(ts: Option<&Value>) -> Option<i64> {
    ts?.as_str()?
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_second())
}

fn now_secs() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn finished(job: &Value) -> Option<&'static str> {
    let conds = job
        .pointer("/status/conditions")
        .and_then(Value::as_array)?;
    ["Complete", "Failed"].into_iter().find(|t| {
        conds
            .iter()
            .any(|c| c["type"] == json!(t) && c["status"] == json!("True"))
    })
}

fn condition(type_: &str, reason: &str, message: &str) -> Value {
    let now = meta::now();
    json!({"type": type_, "status": "True", "lastProbeTime": now, "lastTransitionTime": now, "reason": reason, "message": message})
}

impl JobController {
    fn on_change(&self, c: &Change) {
        if c.gr.group == "batch" && c.gr.resource == "jobs" {
            if c.kind != crate::store::ChangeKind::Deleted {
                self.reconcile(meta::namespace(&c.object), meta::name(&c.object));
            }
        } else if c.gr.group.is_empty() && c.gr.resource == "pods" {
            self.index_pod(c.kind, &c.object);
            let refs = c
                .object
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array);
            for r in refs
                .into_iter()
                .flatten()
                .filter(|r| r["kind"] == json!("Job"))
            {
                if let Some(job) = r["name"].as_str() {
                    self.reconcile(meta::namespace(&c.object), job);
                }
            }
        }
    }

    fn index_pod(&self, kind: crate::store::ChangeKind, pod: &Value) {
        let key = (
            meta::namespace(pod).to_string(),
            meta::name(pod).to_string(),
        );
        let mut index = self.pods_by_owner.lock().unwrap_or_else(|e| e.into_inner());
        for owner in meta::owner_uids(pod) {
            let set = index.entry(owner.clone()).or_default();
            if kind == crate::store::ChangeKind::Deleted {
                set.remove(&key);
                if set.is_empty() {
                    index.remove(&owner);
                }
            } else {
                set.insert(key.clone());
            }
        }
    }

    fn resync(&self) {
        if let Ok(page) = self
            .store
            .list(&self.pods, None, &Default::default(), None, None)
        {
            for p in &page.items {
                self.index_pod(crate::store::ChangeKind::Added, p);
            }
        }
        if let Ok(page) = self
            .store
            .list(&self.jobs, None, &Default::default(), None, None)
        {
            for j in &page.items {
                self.reconcile(meta::namespace(j), meta::name(j));
            }
        }
    }

    fn wake_in(&self, key: JobKey, after_secs: i64) {
        let tx = self.timers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after_secs.max(0) as u64 * 1000 + 200)).await;
            let _ = tx.send(key);
        });
    }

    fn owned_pods(&self, job: &Value) -> Vec<Value> {
        let uid = meta::uid(job);
        let keys: Vec<(String, String)> = self
            .pods_by_owner
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        keys.into_iter()
            .filter_map(|(ns, name)| self.store.get(&self.pods, Some(&ns), &name).ok())
            .filter(|p| meta::owner_uids(p).iter().any(|u| u == uid))
            .collect()
    }

    fn reconcile(&self, ns: &str, name: &str) {
        let Ok(job) = self.store.get(&self.jobs, Some(ns), name) else {
            return;
        };
        if meta::is_deleting(&job) {
            return;
        }
        let key = (ns.to_string(), name.to_string());
        if finished(&job).is_some() {
            self.collect_if_expired(&job, key);
            return;
        }
        let spec = job.get("spec").cloned().unwrap_or_default();
        let int = |k: &str, d: i64| spec.get(k).and_then(Value::as_i64).unwrap_or(d);
        let pods = self.owned_pods(&job);
        let phase = |p: &Value| {
            p.pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let active: Vec<&Value> = pods
            .iter()
            .filter(|p| {
                !matches!(phase(p).as_str(), "Succeeded" | "Failed") && !meta::is_deleting(p)
            })
            .collect();
        let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i64;
        let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i64;
        let ready = active.iter().filter(|p| phase(p) == "Running").count() as i64;
        let mut status = job.get("status").cloned().unwrap_or_else(|| json!({}));
        let start = secs(status.get("startTime")).unwrap_or_else(now_secs);
        if status.get("startTime").is_none() {
            status["startTime"] = json!(meta::now());
        }
        let deadline = spec.get("activeDeadlineSeconds").and_then(Value::as_i64);
        let outcome = if succeeded >= int("completions", 1) {
            Some((
                "Complete",
                "SuccessCriteriaMet",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
            ))
        } else if failed > int("backoffLimit", 6) {
            Some((
                "Failed",
                "FailureTarget",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline.is_some_and(|d| now_secs() - start >= d) {
            Some((
                "Failed",
                "FailureTarget",
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        let mut active_count = active.len() as i64;
        match outcome {
            Some((final_type, target_type, reason, message)) => {
                for p in &active {
                    let opts = DeleteOptions {
                        propagation: Some(Propagation::Background),
                        ..Default::default()
                    };
                    let _ = self
                        .store
                        .delete(&self.pods, Some(ns), meta::name(p), &opts);
                }
                active_count = 0;
                status["conditions"] = json!([
                    condition(target_type, reason, message),
                    condition(final_type, reason, message)
                ]);
                status["completionTime"] = json!(meta::now());
                if final_type == "Failed" {
                    status.as_object_mut().map(|s| s.remove("completionTime"));
                }
            }
            None => {
                let want =
                    (int("completions", 1) - succeeded).min(int("parallelism", 1)) - active_count;
                for _ in 0..want.max(0) {
                    if self.create_pod(&job).is_ok() {
                        active_count += 1;
                    }
                }
                if let Some(d) = deadline {
                    self.wake_in(key.clone(), start + d - now_secs());
                }
            }
        }
        status["active"] = json!(active_count);
        status["succeeded"] = json!(succeeded);
        status["failed"] = json!(failed);
        status["ready"] = json!(ready.min(active_count));
        status["terminating"] = json!(0);
        status["uncountedTerminatedPods"] = json!({});
        // Nothing to write: a status write that changes nothing is a no-op anyway, but costs
        // copies of the Job under the store lock on every Pod and Job event.
        if job.get("status") == Some(&status) {
            return;
        }
        let written = self
            .store
            .modify(&self.jobs, Some(ns), name, Target::Status, |cur| {
                let mut o = cur.clone();
                o["status"] = status;
                Ok(o)
            });
        if let Ok(job) = written
            && finished(&job).is_some()
        {
            self.collect_if_expired(&job, key);
        }
    }

    fn create_pod(&self, job: &Value) -> Result<Value, crate::ApiError> {
        let template = job
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let mut labels = template
            .pointer("/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let (name, uid) = (meta::name(job), meta::uid(job));
        for (k, v) in [
            ("batch.kubernetes.io/job-name", name),
            ("job-name", name),
            ("batch.kubernetes.io/controller-uid", uid),
            ("controller-uid", uid),
        ] {
            labels[k] = json!(v);
        }
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "generateName": format!("{name}-"),
                "labels": labels,
                "annotations": template.pointer("/metadata/annotations").cloned().unwrap_or_else(|| json!({})),
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": true, "blockOwnerDeletion": true}],
            },
            "spec": template.get("spec").cloned().unwrap_or_else(|| json!({})),
        });
        self.store
            .create(&self.pods, Some(meta::namespace(job)), pod)
    }

    /// Deletes a finished Job once `ttlSecondsAfterFinished` has passed, or wakes up then.
    fn collect_if_expired(&self, job: &Value, key: JobKey) {
        let Some(ttl) = job
            .pointer("/spec/ttlSecondsAfterFinished")
            .and_then(Value::as_i64)
        else {
            return;
        };
        let conds = job
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let done_at = conds
            .iter()
            .filter_map(|c| secs(c.get("lastTransitionTime")))
            .max()
            .unwrap_or_else(now_secs);
        let left = done_at + ttl - now_secs();
        if left > 0 {
            self.wake_in(key, left);
        } else {
            let opts = DeleteOptions {
                propagation: Some(Propagation::Background),
                ..Default::default()
            };
            let _ = self.store.delete(&self.jobs, Some(&key.0), &key.1, &opts);
        }
    }
}
