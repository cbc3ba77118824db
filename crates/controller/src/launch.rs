//! Creating agent Jobs under the cluster-wide cap: a slot is taken before the create and given
//! back when it fails; an API refusal becomes [`Launch::Rejected`] with the API's message (for
//! status), never an endless retry loop; a name clash with a Job that is not ours is a
//! refusal too; and the Jobs already running when the controller starts count at once.
//! Admission that refuses the Job's Pod rather than the Job (PodSecurity only checks Pods) is
//! found in the Job controller's `FailedCreate` Events on the Job ([`Context::pod_refusal`]).

use crate::decide::{self, JobPhase};
use crate::error::{Error, is_status};
use crate::job::{self, JobRequest};
use crate::reconcile::Context;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use multinic_api::report::AgentAction;
use multinic_api::{MultiNicNodeConfig, NodeConfigState};
use std::time::Duration;

/// How a launch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// The Job exists now (created, or found already there and ours).
    Created,
    /// No slot is free: the slot queue wakes the resource once one frees.
    NoSlot,
    /// The API server refused the Job; its message.
    Rejected(String),
}

/// Whether an API error is a refusal that repeating the same request cannot fix soon:
/// invalid (400/422), forbidden (403: RBAC, quota, admission), or a name clash handled apart.
pub fn is_refusal(err: &kube::Error) -> Option<String> {
    match err {
        kube::Error::Api(status) if [400, 403, 422].contains(&status.code) => {
            Some(format!("{} ({})", status.message, status.reason))
        }
        _ => None,
    }
}

/// The reason the Job controller gives its Events about a Pod it could not create.
const FAILED_CREATE: &str = "FailedCreate";

/// The API's refusal among the Job controller's `FailedCreate` Events of one Job, newest
/// first: a 403 (PodSecurity, ResourceQuota, a webhook) or a 422. Other failures (timeouts,
/// 5xx) are not refusals: the Job controller retries them.
pub fn refusal_in(events: &[Event]) -> Option<String> {
    let when = |e: &Event| {
        e.event_time
            .as_ref()
            .map(|t| t.0)
            .or(e.deprecated_last_timestamp.as_ref().map(|t| t.0))
            .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    events
        .iter()
        .filter(|e| e.reason.as_deref() == Some(FAILED_CREATE))
        .filter_map(|e| Some((when(e), e.note.as_deref()?)))
        .filter(|(_, note)| note.contains(" is forbidden: ") || note.contains(" is invalid: "))
        .max_by_key(|(at, _)| *at)
        .map(|(_, note)| note.trim_start_matches("Error creating: ").to_string())
}

impl Context {
    /// The refusal the API gave the Job controller for the Pods of Job `ns/name`, if any: its
    /// Events, read by the Job's uid (`list` on Events in the watched namespace).
    pub async fn pod_refusal(&self, ns: &str, name: &str) -> Result<Option<String>, Error> {
        let Some(uid) = self
            .jobs
            .get(&ObjectRef::new(name).within(ns))
            .and_then(|j| j.uid())
        else {
            return Ok(None);
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let lp =
            ListParams::default().fields(&format!("regarding.uid={uid},reason={FAILED_CREATE}"));
        let events = api
            .list(&lp)
            .await
            .map_err(|e| Error::kube(format!("reading the Events of Job {name}"), e))?;
        Ok(refusal_in(&events.items))
    }

    /// Builds the Job `request` describes, takes a Job slot under `key` and creates it. A
    /// failed create gives the slot back.
    pub async fn launch_job(&self, key: &str, request: JobRequest<'_>) -> Result<Launch, Error> {
        let owner = request.owner;
        let built = job::build_job(&self.config.job, request)?;
        if !self.slots.reserve(key, &ObjectRef::from_obj(owner)) {
            return Ok(Launch::NoSlot);
        }
        let uid = owner.uid().unwrap_or_default();
        let result = self.create_job(&uid, &built).await;
        if !matches!(result, Ok(Launch::Created)) {
            self.slots.release(key);
        }
        result
    }

    /// Creates `job`. One that already exists under the same name counts as created only when
    /// it is owned by `owner_uid`; someone else's is a refusal, never mistaken for ours.
    pub async fn create_job(&self, owner_uid: &str, job: &Job) -> Result<Launch, Error> {
        let ns = job.namespace().unwrap_or_default();
        let name = job.name_any();
        let api: Api<Job> = Api::namespaced(self.client.clone(), &ns);
        match api.create(&PostParams::default(), job).await {
            Ok(_) => {
                if let Some(facts) = job::job_facts(job) {
                    self.expect.created_job(owner_uid, facts);
                }
                Ok(Launch::Created)
            }
            Err(err) if is_status(&err, 409) => {
                let existing = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| Error::kube(format!("reading Job {name}"), e))?;
                let ours = |j: &Job| j.owner_references().iter().any(|o| o.uid == owner_uid);
                match existing {
                    // Ours: the cache will show it (no expectation: it may be one being
                    // deleted).
                    Some(j) if ours(&j) => Ok(Launch::Created),
                    Some(_) => Ok(Launch::Rejected(format!(
                        "a Job named {name} already exists and does not belong to this resource"
                    ))),
                    // Gone between the two requests: the next reconcile creates it.
                    None => Err(Error::kube(format!("creating Job {name}"), err)),
                }
            }
            Err(err) => match is_refusal(&err) {
                Some(message) => Ok(Launch::Rejected(message)),
                None => Err(Error::kube(format!("creating Job {name}"), err)),
            },
        }
    }

    /// Counts every Job running now against the cap, once, before the first reconcile acts:
    /// after a restart or failover the cap holds for Jobs the previous leader started.
    pub fn adopt_running_jobs(&self) {
        self.adopted.get_or_init(|| {
            for cached in self.jobs.state() {
                if job::job_phase(&cached) == JobPhase::Running {
                    let ns = cached.namespace().unwrap_or_default();
                    self.slots.adopt(&format!("{ns}/{}", cached.name_any()));
                }
            }
        });
    }
}

/// Creates the apply Job of `attempt` under the Job cap (see [`Context::launch_job`]).
pub async fn launch_apply(
    ctx: &Context,
    obj: &MultiNicNodeConfig,
    key: &str,
    attempt: u32,
    flavor: multinic_netconf::OsFlavor,
) -> Result<Launch, Error> {
    let protect = ctx
        .node(&obj.spec.node_name)
        .map(|n| n.addresses)
        .unwrap_or_default();
    let request = JobRequest {
        owner: obj,
        action: AgentAction::Apply,
        attempt,
        flavor,
        protect: &protect,
    };
    ctx.launch_job(key, request).await
}

/// The status that holds a resource back when its Job was not created, and when to look again.
pub fn held_by(ctx: &Context, name: &str, launch: Launch) -> Option<(decide::Verdict, Duration)> {
    let (state, reason, message, requeue) = match launch {
        Launch::Created => return None,
        // Woken through the slot queue; the requeue is only a safety net.
        Launch::NoSlot => (
            NodeConfigState::Pending,
            multinic_api::StateReason::WaitingForJobSlot,
            format!(
                "waiting for a free Job slot ({} agent Jobs may run at once)",
                ctx.config.max_jobs_in_flight
            ),
            Duration::from_secs(60),
        ),
        Launch::Rejected(message) => (
            NodeConfigState::Failed,
            multinic_api::StateReason::JobRejected,
            format!("the API server refused agent Job {name}: {message}"),
            ctx.config.retry.max_delay,
        ),
    };
    let verdict = decide::Verdict {
        state,
        reason,
        message,
    };
    Some((verdict, requeue))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(reason: &str, note: &str, at: &str) -> Event {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "e"}, "eventTime": at, "reason": reason, "note": note,
        }))
        .unwrap()
    }

    #[test]
    fn a_refused_pod_is_found_in_the_job_controllers_events() {
        let refused = "Error creating: pods \"j-abc\" is forbidden: violates PodSecurity \
                       \"baseline:latest\": privileged (container \"agent\" must not set \
                       securityContext.privileged=true)";
        let timeout = "Error creating: Timeout: request did not complete within 60s";
        let events = [
            event("FailedCreate", timeout, "2026-01-01T00:00:05.000000Z"),
            event("FailedCreate", refused, "2026-01-01T00:00:01.000000Z"),
            event(
                "SuccessfulCreate",
                "Created pod: j-abc",
                "2026-01-01T00:00:09.000000Z",
            ),
        ];
        let found = refusal_in(&events).expect("the PodSecurity refusal");
        assert!(found.starts_with("pods \"j-abc\" is forbidden: violates PodSecurity"));
        // A failure the Job controller retries is no refusal.
        assert_eq!(refusal_in(&events[..1]), None);
        assert_eq!(refusal_in(&[]), None);
    }
}
