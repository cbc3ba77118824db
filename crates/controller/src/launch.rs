//! Creating agent Jobs under the cluster-wide cap: a slot is taken before the create and given
//! back when it fails; an API refusal becomes [`Launch::Rejected`] with the API's message (for
//! status), never an endless retry loop; a name clash with a Job that is not ours is a
//! refusal too; and the Jobs already running when the controller starts count at once.

use crate::decide::JobPhase;
use crate::error::{Error, is_status};
use crate::job::{self, JobRequest};
use crate::reconcile::Context;
use k8s_openapi::api::batch::v1::Job;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};

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

impl Context {
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
