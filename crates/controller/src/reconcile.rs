//! The reconciler: gathers what the caches say about one resource, asks [`decide`] for the
//! next step and performs it (Job create/delete, status apply, Events). No decisions here.

use crate::config::{ControllerConfig, FIELD_MANAGER};
use crate::decide::{self, Action, JobFacts, Observed};
use crate::error::{Error, is_status};
use crate::expect::Expectations;
use crate::job;
use crate::launch::{Launch, held_by, launch_apply};
use crate::metrics::Metrics;
use crate::slots::JobSlots;
use crate::{report, status};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, Resource, ResourceExt};
use multinic_api::report::AgentAction;
use multinic_api::{MultiNicNodeConfig, MultiNicNodeConfigStatus, NodeConfigState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Shared state of every reconcile.
pub struct Context {
    /// API client.
    pub client: Client,
    /// The controller's configuration.
    pub config: ControllerConfig,
    /// Cache of the controller's Jobs (trimmed).
    pub jobs: Store<Job>,
    /// Turns true once the Job cache holds its first full list. (A watch channel, not
    /// `Store::wait_until_ready`, which wakes only the last of several concurrent waiters.)
    pub jobs_synced: tokio::sync::watch::Receiver<bool>,
    /// What the controller knows of each Node.
    pub nodes: Arc<crate::nodes::NodeCache>,
    /// Who publishes Events (this controller and replica).
    pub reporter: Reporter,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The cap on Jobs in flight.
    pub slots: JobSlots,
    /// Writes the caches have not shown yet.
    pub expect: Expectations,
    /// Node name -> resources that name it, so a Node event wakes exactly those. A resource
    /// named after its node in the watched namespace (the producer's convention) is found
    /// without an entry, so the index stays empty in the common case.
    pub node_index: Arc<Mutex<HashMap<String, Vec<ObjectRef<MultiNicNodeConfig>>>>>,
    /// Failed reconciles in a row per resource, for per-object error backoff.
    pub error_streak: Mutex<HashMap<ObjectRef<MultiNicNodeConfig>, u32>>,
    /// Cleanup attempts per resource uid (no status field holds them: the object is going).
    pub cleanup_attempts: Mutex<HashMap<String, u32>>,
    /// Node ownership and the rollout budget across resources.
    pub fleet: Arc<crate::fleet::Fleet>,
    /// Turns true once the resource cache (and so [`Self::fleet`]) holds its first full list.
    pub configs_synced: tokio::sync::watch::Receiver<bool>,
    /// Set once the Jobs running at startup were counted against the cap.
    pub adopted: std::sync::OnceLock<()>,
}

/// How long a running Job is trusted before the resource is looked at again anyway.
const JOB_RECHECK_GRACE: Duration = Duration::from_secs(60);
/// How often a Job that still has no Pod, and no refusal in its Events, is looked at again.
const POD_RECHECK: Duration = Duration::from_secs(15);

impl Context {
    /// Why the cached Job `ns/name` failed: its `Failed` condition, or a plain "the Job
    /// failed" when it carries none (or is no longer cached).
    pub fn failed_job_detail(&self, ns: &str, name: &str) -> String {
        self.jobs
            .get(&ObjectRef::new(name).within(ns))
            .map(|j| job::job_failure_detail(&j))
            .unwrap_or_else(|| "the Job failed".into())
    }

    /// The apply-side Jobs of `obj` (cached, merged with expectations), plus whether another
    /// resource has a Job running on the same node.
    pub fn jobs_of(&self, obj: &MultiNicNodeConfig) -> (Vec<JobFacts>, bool) {
        let uid = obj.uid().unwrap_or_default();
        let ns = obj.namespace().unwrap_or_default();
        let mut own = Vec::new();
        let mut node_busy = false;
        for cached in self.jobs.state() {
            let owned = cached.owner_references().iter().any(|o| o.uid == uid);
            if owned {
                if let Some(facts) = job::job_facts(&cached) {
                    own.push((cached.uid().unwrap_or_default(), facts));
                }
            } else if job::job_node(&cached) == Some(obj.spec.node_name.as_str())
                && job::job_phase(&cached) == decide::JobPhase::Running
            {
                node_busy = true;
            }
        }
        own.sort_by(|a, b| a.1.name.cmp(&b.1.name));
        (self.expect.merge_jobs(&uid, &ns, own), node_busy)
    }

    /// The older resource that owns `obj`'s node, as `namespace/name`, if not `obj`.
    pub fn conflict(&self, obj: &MultiNicNodeConfig) -> Option<String> {
        self.fleet
            .owner_other_than(&obj.spec.node_name, &obj.uid().unwrap_or_default())
            .map(|r| format!("{}/{}", r.namespace.unwrap_or_default(), r.name))
    }

    /// The Node named `name`, as the decision reads it.
    pub fn node(&self, name: &str) -> Option<decide::NodeFacts> {
        self.nodes.get(name)
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event(
        &self,
        obj: &MultiNicNodeConfig,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_,
            reason: reason.to_string(),
            note: Some(truncate(note, 1000)),
            action: action.to_string(),
            secondary: None,
        };
        // A Recorder per Event: the controller publishes one Event per transition, so the
        // Recorder's series cache (kept six minutes per Event) would only cost memory, about
        // 10 KB per resource at scale.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        if let Err(err) = recorder.publish(&ev, &obj.object_ref(&())).await {
            tracing::warn!(resource = %obj.name_any(), %err, "publishing an Event failed");
        }
    }

    /// Deletes a Job (background propagation: its Pods go too); a Job already gone is fine.
    pub async fn delete_job(&self, ns: &str, name: &str) -> Result<(), Error> {
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let cached_uid = self
            .jobs
            .get(&ObjectRef::new(name).within(ns))
            .and_then(|j| j.uid());
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        match api.delete(name, &dp).await {
            Ok(_) => {}
            Err(err) if is_status(&err, 404) => {}
            Err(err) => return Err(Error::kube(format!("deleting Job {name}"), err)),
        }
        let key = format!("{ns}/{name}");
        if let Some(uid) = cached_uid {
            self.expect.deleted_job(&key, &uid);
        }
        self.slots.release(&key);
        Ok(())
    }
}

/// Reconciles a resource that is not being deleted.
pub async fn apply(obj: Arc<MultiNicNodeConfig>, ctx: &Context) -> Result<Requeue, Error> {
    let uid = obj.uid().unwrap_or_default();
    let ns = obj.namespace().unwrap_or_default();
    let generation = obj.metadata.generation.unwrap_or(0);
    remember_node(ctx, &obj);
    let mut status = ctx.expect.status_for(
        &uid,
        obj.metadata.resource_version.as_deref(),
        obj.status.as_ref(),
    );
    let (mut jobs, node_busy) = ctx.jobs_of(&obj);
    let node = ctx.node(&obj.spec.node_name);
    let conflict = ctx.conflict(&obj);
    let rollout_paused = ctx.fleet.rollout_paused(&uid);
    // A few steps in one reconcile: deleting leftovers never needs a fresh look at the cache.
    for _ in 0..8 {
        let observed = Observed {
            generation,
            spec: &obj.spec,
            status: status.as_ref(),
            retry_requested: obj
                .annotations()
                .contains_key(multinic_api::RETRY_ANNOTATION),
            node: node.as_ref(),
            jobs: &jobs,
            node_busy,
            now: jiff::Timestamp::now(),
            retry: &ctx.config.retry,
            node_recheck: ctx.config.node_missing_recheck,
            conflict: conflict.as_deref(),
            rollout_paused,
            resume_requested: obj
                .annotations()
                .contains_key(multinic_api::RESUME_ROLLOUT_ANNOTATION),
        };
        let action = decide::decide(&observed);
        tracing::debug!(resource = %obj.name_any(), ?action, "decided");
        match action {
            Action::DeleteJob(name) => {
                ctx.delete_job(&ns, &name).await?;
                jobs.retain(|j| j.name != name);
            }
            Action::Record(job_facts) => {
                let agent_report = report::read_job_report(&ctx.client, &ns, &job_facts.name)
                    .await
                    .map_err(|e| {
                        Error::kube(format!("listing Pods of Job {}", job_facts.name), e)
                    })?;
                let detail = ctx.failed_job_detail(&ns, &job_facts.name);
                let next = status::recorded(
                    &obj.spec,
                    generation,
                    &job_facts,
                    agent_report.as_ref(),
                    &detail,
                    status.as_ref(),
                    jiff::Timestamp::now(),
                );
                write_status(ctx, &obj, status.as_ref(), &next).await?;
                ctx.delete_job(&ns, &job_facts.name).await?;
                status = Some(next);
                jobs.retain(|j| j.name != job_facts.name);
            }
            Action::Settle { verdict, requeue } => {
                ctx.slots.declined(&ObjectRef::from_obj(obj.as_ref()));
                if verdict.reason == multinic_api::StateReason::RolloutPaused {
                    ctx.fleet.pause(&ObjectRef::from_obj(obj.as_ref()));
                }
                let next = status::settled(
                    &obj.spec,
                    generation,
                    &verdict,
                    status.as_ref(),
                    jiff::Timestamp::now(),
                );
                write_status(ctx, &obj, status.as_ref(), &next).await?;
                return Ok(requeue.map_or_else(Requeue::await_change, Requeue::requeue));
            }
            Action::Start {
                attempt,
                flavor,
                job_exists,
                clears_retry,
            } => {
                let name = job::job_name(
                    &obj.spec.node_name,
                    &uid,
                    AgentAction::Apply,
                    generation,
                    attempt,
                );
                let key = format!("{ns}/{name}");
                if clears_retry {
                    clear_retry_annotation(ctx, &obj).await?;
                }
                if job_exists {
                    ctx.slots.adopt(&key);
                } else {
                    let held = match ctx.fleet.claim(&uid, generation, observed.resume_requested) {
                        // Another start took the budget's last unit since the decision.
                        Err(spent) => {
                            ctx.slots.declined(&ObjectRef::from_obj(obj.as_ref()));
                            ctx.fleet.pause(&ObjectRef::from_obj(obj.as_ref()));
                            Some((decide::rollout_paused(spent), decide::ROLLOUT_RECHECK))
                        }
                        Ok(claimed) => {
                            let launched = launch_apply(ctx, &obj, &key, attempt, flavor).await;
                            if claimed && !matches!(launched, Ok(Launch::Created)) {
                                ctx.fleet.unclaim(&uid);
                            }
                            held_by(ctx, &name, launched?)
                        }
                    };
                    if let Some((verdict, requeue)) = held {
                        let now = jiff::Timestamp::now();
                        let next =
                            status::settled(&obj.spec, generation, &verdict, status.as_ref(), now);
                        write_status(ctx, &obj, status.as_ref(), &next).await?;
                        return Ok(Requeue::requeue(requeue));
                    }
                }
                ctx.fleet.unpause(&ObjectRef::from_obj(obj.as_ref()));
                let next = status::in_progress(
                    &obj.spec,
                    generation,
                    &name,
                    attempt,
                    status.as_ref(),
                    jiff::Timestamp::now(),
                );
                write_status(ctx, &obj, status.as_ref(), &next).await?;
                let deadline =
                    Duration::from_secs(ctx.config.job.active_deadline_seconds.max(0) as u64);
                return Ok(Requeue::requeue(deadline + JOB_RECHECK_GRACE));
            }
            Action::CheckPods(name) => {
                let Some(refusal) = ctx.pod_refusal(&ns, &name).await? else {
                    return Ok(Requeue::requeue(POD_RECHECK));
                };
                // Failed/JobRejected with the API's words (and its Event), the Job deleted: the
                // Job controller would retry the refused Pod until the Job's deadline.
                let verdict = decide::Verdict {
                    state: NodeConfigState::Failed,
                    reason: multinic_api::StateReason::JobRejected,
                    message: format!(
                        "the API server refused the Pod of agent Job {name}: {refusal}"
                    ),
                };
                let now = jiff::Timestamp::now();
                let next = status::settled(&obj.spec, generation, &verdict, status.as_ref(), now);
                write_status(ctx, &obj, status.as_ref(), &next).await?;
                ctx.delete_job(&ns, &name).await?;
                return Ok(Requeue::requeue(ctx.config.retry.max_delay));
            }
            Action::Wait(requeue) => {
                ctx.slots.declined(&ObjectRef::from_obj(obj.as_ref()));
                return Ok(requeue.map_or_else(Requeue::await_change, Requeue::requeue));
            }
        }
    }
    Ok(Requeue::requeue(Duration::from_secs(1)))
}

/// Applies `next` as the status when it differs from `prev` (timestamps aside), and publishes
/// an Event when the state or its reason changed.
pub async fn write_status(
    ctx: &Context,
    obj: &MultiNicNodeConfig,
    prev: Option<&MultiNicNodeConfigStatus>,
    next: &MultiNicNodeConfigStatus,
) -> Result<(), Error> {
    if !status::needs_write(prev, next) {
        return Ok(());
    }
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(ctx.client.clone(), &ns);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let written = api
        .patch_status(
            &obj.name_any(),
            &params,
            &Patch::Apply(status::apply_body(next)),
        )
        .await
        .map_err(|e| Error::kube(format!("writing status of {}", obj.name_any()), e))?;
    ctx.expect.wrote_status(
        &obj.uid().unwrap_or_default(),
        written.metadata.resource_version.as_deref(),
        next.clone(),
    );
    ctx.fleet.wrote_status(
        &obj.uid().unwrap_or_default(),
        obj.metadata.generation,
        next,
    );
    let reason_of = |s: Option<&MultiNicNodeConfigStatus>| {
        s.and_then(|s| Some((s.state?, decide::ready_reason(s)?, s.observed_generation)))
    };
    let (before, after) = (reason_of(prev), reason_of(Some(next)));
    if before != after
        && let Some((state, reason, _)) = after
    {
        let message = next
            .conditions
            .first()
            .map(|c| c.message.clone())
            .unwrap_or_default();
        let type_ = if state == NodeConfigState::Failed
            || reason == multinic_api::StateReason::NodeNotFound
        {
            ctx.metrics.failure(reason.as_str());
            EventType::Warning
        } else {
            EventType::Normal
        };
        ctx.event(obj, type_, reason.as_str(), state.as_str(), message)
            .await;
    }
    Ok(())
}

async fn clear_retry_annotation(ctx: &Context, obj: &MultiNicNodeConfig) -> Result<(), Error> {
    let ns = obj.namespace().unwrap_or_default();
    let api: Api<MultiNicNodeConfig> = Api::namespaced(ctx.client.clone(), &ns);
    let patch =
        serde_json::json!({"metadata": {"annotations": {multinic_api::RETRY_ANNOTATION: null}}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(patch),
    )
    .await
    .map_err(|e| Error::kube("removing the retry annotation", e))?;
    ctx.event(
        obj,
        EventType::Normal,
        "RetryRequested",
        "Retry",
        format!(
            "{} set: trying generation {} again",
            multinic_api::RETRY_ANNOTATION,
            obj.metadata.generation.unwrap_or(0)
        ),
    )
    .await;
    Ok(())
}

/// The resource as the node index keeps it (no resourceVersion or uid to hold on to).
fn index_ref(obj: &MultiNicNodeConfig) -> ObjectRef<MultiNicNodeConfig> {
    ObjectRef::new(&obj.name_any()).within(&obj.namespace().unwrap_or_default())
}

/// Whether a Node event finds `obj` without an index entry (see [`Context::node_index`]).
fn found_by_name(ctx: &Context, obj: &MultiNicNodeConfig) -> bool {
    obj.name_any() == obj.spec.node_name
        && ctx.config.namespace.is_some()
        && ctx.config.namespace == obj.namespace()
}

fn remember_node(ctx: &Context, obj: &MultiNicNodeConfig) {
    if found_by_name(ctx, obj) {
        return;
    }
    let mut index = ctx.node_index.lock().unwrap_or_else(|p| p.into_inner());
    let refs = index.entry(obj.spec.node_name.clone()).or_default();
    let me = index_ref(obj);
    if !refs.contains(&me) {
        refs.push(me);
    }
}

/// Drops `obj` from the node index (it is gone).
pub fn forget_node(ctx: &Context, obj: &MultiNicNodeConfig) {
    let mut index = ctx.node_index.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(refs) = index.get_mut(&obj.spec.node_name) {
        let me = index_ref(obj);
        refs.retain(|r| *r != me);
        if refs.is_empty() {
            index.remove(&obj.spec.node_name);
        }
    }
}

fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut cut = max;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    text
}
