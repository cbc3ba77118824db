//! Reading the agent's report back: the termination message of the agent container in the
//! Job's Pod (`status.containerStatuses[].state.terminated.message`).

use crate::job::{CONTAINER_NAME, JOB_NAME_LABEL};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use multinic_api::report::AgentReport;

/// Lists the Pods of Job `job_name` in `namespace` and reads the agent's report from them.
pub async fn read_job_report(
    client: &kube::Client,
    namespace: &str,
    job_name: &str,
) -> Result<Option<AgentReport>, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let of_job = ListParams::default().labels(&format!("{JOB_NAME_LABEL}={job_name}"));
    Ok(report_from_pods(&pods.list(&of_job).await?.items))
}

/// The report of the newest Pod that left one, if any; a message that is not a report is
/// ignored (the caller then treats the Job as failed without a report).
pub fn report_from_pods(pods: &[Pod]) -> Option<AgentReport> {
    let mut candidates: Vec<&Pod> = pods.iter().collect();
    // Newest first: with a backoffLimit above 0 the last Pod tells the final outcome.
    candidates.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone()));
    candidates.into_iter().find_map(report_from_pod)
}

/// The report in one Pod's agent container status.
pub fn report_from_pod(pod: &Pod) -> Option<AgentReport> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    let agent = statuses
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
        .or_else(|| statuses.first())?;
    let terminated = agent
        .state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .or_else(|| {
            agent
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
        })?;
    let message = terminated.message.as_deref()?.trim();
    serde_json::from_str(message).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodStatus,
    };
    use multinic_api::InterfaceReason;
    use multinic_api::report::{AgentAction, ReportInterface};

    fn pod_with_message(message: &str) -> Pod {
        Pod {
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: CONTAINER_NAME.into(),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 0,
                            message: Some(message.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn reads_the_termination_message() {
        let report = AgentReport {
            v: 1,
            node: "worker-01".into(),
            generation: Some(3),
            action: AgentAction::Apply,
            error: None,
            interfaces: vec![ReportInterface {
                id: Some(0),
                name: Some("multinic0".into()),
                mac_address: "fa:16:3e:00:00:01".into(),
                reason: InterfaceReason::Configured,
                message: String::new(),
            }],
            duration_ms: 12,
        };
        let pod = pod_with_message(&serde_json::to_string(&report).unwrap());
        assert_eq!(report_from_pods(&[pod]), Some(report));
    }

    #[test]
    fn garbage_or_missing_message_is_no_report() {
        assert_eq!(report_from_pods(&[pod_with_message("panic: oh no")]), None);
        assert_eq!(report_from_pods(&[Pod::default()]), None);
        assert_eq!(report_from_pods(&[]), None);
    }
}
