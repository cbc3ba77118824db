//! Verification: after applying, the kernel is re-read and re-planned; anything left to do
//! for a NIC the run configured or removed is a verify failure that reverts the run, and so is
//! an IPv6 address that fails duplicate address detection.

use crate::diff::plan_runtime;
use crate::engine::Engine;
use crate::error::EngineError;
use crate::plan::{Change, NicAction, NicPlan, Plan};
use crate::state::KernelState;
use ipnet::IpNet;
use multinic_api::InterfaceReason;
use multinic_netconf::{DesiredNode, OwnedFile};
use std::path::PathBuf;
use std::time::Duration;

/// How often verify looks again while duplicate address detection runs.
const DAD_POLL: Duration = Duration::from_millis(100);

/// Why a run is being reverted.
pub(crate) struct Failure {
    /// The NIC the failure is about, if it is about one.
    pub nic: Option<String>,
    pub reason: InterfaceReason,
    pub message: String,
}

impl Engine {
    /// Re-reads the kernel until re-planning finds nothing left to do, a few times.
    pub(crate) async fn verify(
        &self,
        desired: &DesiredNode,
        owned: &[(PathBuf, OwnedFile)],
        journal: &[OwnedFile],
        plan: &Plan,
    ) -> Result<Option<Failure>, EngineError> {
        let owners: Vec<OwnedFile> = owned.iter().map(|(_, o)| o.clone()).collect();
        let verify = &self.config.verify;
        let dad_deadline = tokio::time::Instant::now() + verify.dad_timeout;
        let mut attempt = 0;
        tracing::debug!("verifying");
        loop {
            #[cfg(feature = "fault-injection")]
            if self.config.fault.fail_verify_reads {
                return Err(EngineError::netlink(
                    "dump links",
                    rtnetlink::Error::RequestFailed,
                ));
            }
            let state = self.read_for(desired)?;
            let tentative = match dad(plan, &state) {
                Err(failure) => return Ok(Some(failure)),
                Ok(tentative) => tentative,
            };
            let (_, replanned, stale) =
                plan_runtime(desired, &state, &owners, journal, &self.config);
            let last = mismatch(plan, &replanned, &stale);
            if tentative && tokio::time::Instant::now() < dad_deadline {
                // DAD takes the kernel a second or two; it does not use up the retries.
                tokio::time::sleep(verify.interval.max(DAD_POLL)).await;
                continue;
            }
            if last.is_none() || attempt >= verify.retries {
                tracing::debug!(attempts = attempt + 1, ok = last.is_none(), "verified");
                return Ok(last);
            }
            attempt += 1;
            tokio::time::sleep(verify.interval).await;
        }
    }
}

impl Failure {
    /// The kernel could not be re-read while verifying: the run is not known to be right.
    pub fn verify_read(e: EngineError) -> Self {
        Self {
            nic: None,
            reason: InterfaceReason::VerifyFailed,
            message: format!("re-reading the kernel state while verifying: {e}"),
        }
    }
}

/// The IPv6 addresses the plan adds to NICs it configures, by link.
fn added_v6(plan: &Plan) -> impl Iterator<Item = (&NicPlan, u32, IpNet)> {
    plan.nics
        .iter()
        .filter(|n| n.action == NicAction::Configure)
        .flat_map(|nic| {
            nic.changes.iter().filter_map(move |c| match c {
                Change::AddAddress { index, address, .. } if address.addr().is_ipv6() => {
                    Some((nic, *index, *address))
                }
                _ => None,
            })
        })
}

/// Duplicate address detection of the addresses the plan added: a failure names the NIC;
/// `Ok(true)` while some are still tentative.
pub(crate) fn dad(plan: &Plan, state: &KernelState) -> Result<bool, Failure> {
    let mut tentative = false;
    for (nic, index, address) in added_v6(plan) {
        let Some(found) = state.addresses_of(index).find(|a| a.address == address) else {
            continue;
        };
        if found.dad_failed {
            return Err(Failure {
                nic: Some(nic.name.clone()),
                reason: InterfaceReason::DuplicateAddress,
                message: format!(
                    "{address}: duplicate address detection failed: another host on the link holds it"
                ),
            });
        }
        tentative |= found.tentative;
    }
    Ok(tentative)
}

/// Why the re-planned state still differs, naming the first NIC that is not done.
pub(crate) fn mismatch(plan: &Plan, replanned: &[NicPlan], stale: &[Change]) -> Option<Failure> {
    for nic in plan
        .nics
        .iter()
        .filter(|n| n.action == NicAction::Configure)
    {
        let now = replanned.iter().find(|r| r.name == nic.name);
        let left = match now {
            Some(r) if r.action == NicAction::Configure && r.changes.is_empty() => continue,
            Some(r) if r.action == NicAction::Configure => r
                .changes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            Some(r) => format!("now planned as {}", r.action),
            None => "not found any more".into(),
        };
        return Some(Failure {
            nic: Some(nic.name.clone()),
            reason: InterfaceReason::VerifyFailed,
            message: format!("kernel state differs after applying: {left}"),
        });
    }
    for nic in plan.nics.iter().filter(|n| n.action == NicAction::Remove) {
        if let Some(r) = replanned
            .iter()
            .find(|r| r.index == nic.index && !r.changes.is_empty())
        {
            return Some(Failure {
                nic: Some(nic.name.clone()),
                reason: InterfaceReason::VerifyFailed,
                message: format!("still configured after removal: {}", r.changes[0]),
            });
        }
    }
    stale.first().map(|c| Failure {
        nic: None,
        reason: InterfaceReason::VerifyFailed,
        message: format!("stale entry left behind: {c}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nic(name: &str, action: NicAction, changes: Vec<Change>) -> NicPlan {
        NicPlan {
            slot: 0,
            name: name.into(),
            mac: "fa:16:3e:00:00:00".into(),
            source_index: Some(0),
            index: Some(3),
            action,
            changes,
        }
    }

    #[test]
    fn leftover_changes_fail_verification_and_name_the_nic() {
        let up = Change::LinkUp { index: 3 };
        let plan = Plan {
            nics: vec![nic("multinic0", NicAction::Configure, vec![up.clone()])],
            ..Plan::default()
        };
        let done = [nic("multinic0", NicAction::Configure, vec![])];
        assert!(mismatch(&plan, &done, &[]).is_none());
        let left = [nic("multinic0", NicAction::Configure, vec![up.clone()])];
        let failure = mismatch(&plan, &left, &[]).expect("still needs a change");
        assert_eq!(failure.reason, InterfaceReason::VerifyFailed);
        assert_eq!(failure.nic.as_deref(), Some("multinic0"));
        assert!(
            failure.message.contains("set link 3 up"),
            "{}",
            failure.message
        );
        assert!(
            mismatch(&plan, &[], &[])
                .unwrap()
                .message
                .contains("not found")
        );
        let stale = [Change::LinkDown { index: 9 }];
        assert!(
            mismatch(&plan, &done, &stale)
                .unwrap()
                .message
                .contains("stale")
        );
    }
}
