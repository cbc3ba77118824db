//! Leader election with a coordination.k8s.io Lease, so two replicas never act at once: the
//! holder renews every `renew_interval`; anyone may take a Lease whose record this replica has
//! seen unchanged for `lease_duration` by its own clock (as client-go does: the other
//! machine's timestamps are never compared with ours); every write carries the read
//! resourceVersion, so a race ends in a 409 for all but one. Each round is bounded by
//! `renew_deadline`, and a holder without a successful renewal for that long stops acting
//! before another may take over.

use crate::config::LeaderConfig;
use crate::error::{Error, is_status};
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What to do with a Lease as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseMove {
    /// We hold it: renew.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Someone else holds it.
    Wait,
}

/// The Lease record as this replica last saw it, and when it saw it change (local clock).
#[derive(Clone, Debug, Default)]
pub struct Observation {
    record: Option<LeaseSpec>,
    changed_at: Option<Instant>,
}

impl Observation {
    /// Decides what to do with `spec` as `me` at local time `now`, remembering the record:
    /// another holder's Lease expires `lease_duration` after this replica saw it last change.
    pub fn lease_move(&mut self, spec: Option<&LeaseSpec>, me: &str, now: Instant) -> LeaseMove {
        let Some(spec) = spec else {
            return LeaseMove::Take;
        };
        let holder = spec.holder_identity.as_deref().unwrap_or("");
        if holder == me {
            return LeaseMove::Renew;
        }
        if holder.is_empty() {
            return LeaseMove::Take;
        }
        if self.record.as_ref() != Some(spec) || self.changed_at.is_none() {
            self.record = Some(spec.clone());
            self.changed_at = Some(now);
        }
        let duration = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(15)).unwrap_or(15),
        );
        match self.changed_at {
            Some(seen) if now.duration_since(seen) < duration => LeaseMove::Wait,
            _ => LeaseMove::Take,
        }
    }
}

/// A replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    identity: String,
    observed: Mutex<Observation>,
}

impl LeaderElector {
    /// An elector for `identity` on the Lease named in `config`.
    pub fn new(client: Client, config: LeaderConfig, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            identity,
            observed: Mutex::default(),
        }
    }

    /// One round bounded by `renew_deadline`; running out of time is an error.
    pub async fn try_lead_in_time(&self) -> Result<bool, Error> {
        match tokio::time::timeout(self.config.renew_deadline, self.try_lead()).await {
            Ok(result) => result,
            Err(_) => Err(Error::Leader(format!(
                "a Lease round took longer than {:?}",
                self.config.renew_deadline
            ))),
        }
    }

    /// One round: renew or take the Lease if we may. `true` when we hold it afterwards.
    pub async fn try_lead(&self) -> Result<bool, Error> {
        let now = Timestamp::now();
        let name = &self.config.lease_name;
        let current = match self.api.get(name).await {
            Ok(lease) => Some(lease),
            Err(err) if is_status(&err, 404) => None,
            Err(err) => return Err(Error::kube("reading the leader Lease", err)),
        };
        let mv = self
            .observed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .lease_move(
                current.as_ref().and_then(|l| l.spec.as_ref()),
                &self.identity,
                Instant::now(),
            );
        if mv == LeaseMove::Wait {
            return Ok(false);
        }
        let duration_secs = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let old = current
            .as_ref()
            .and_then(|l| l.spec.clone())
            .unwrap_or_default();
        let spec = LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(duration_secs),
            acquire_time: if mv == LeaseMove::Renew {
                old.acquire_time.clone()
            } else {
                Some(MicroTime(now))
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(
                old.lease_transitions.unwrap_or(0)
                    + i32::from(mv == LeaseMove::Take && current.is_some()),
            ),
            ..LeaseSpec::default()
        };
        let result = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(spec),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            Some(mut lease) => {
                // replace carries the resourceVersion we read: a concurrent writer wins, we 409.
                lease.spec = Some(spec);
                lease.metadata.managed_fields = None;
                self.api.replace(name, &PostParams::default(), &lease).await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(err) if is_status(&err, 409) => Ok(false),
            Err(err) => Err(Error::kube("writing the leader Lease", err)),
        }
    }

    /// Waits until this replica leads.
    pub async fn acquire(&self) -> Result<(), Error> {
        let mut logged = false;
        loop {
            match self.try_lead_in_time().await {
                Ok(true) => {
                    tracing::info!(identity = %self.identity, lease = %self.config.lease_name, "leading");
                    return Ok(());
                }
                Ok(false) if !logged => {
                    tracing::info!(identity = %self.identity, "another replica leads; standing by");
                    logged = true;
                }
                Ok(false) => {}
                Err(err) => tracing::warn!(%err, "leader election round failed"),
            }
            tokio::time::sleep(self.config.renew_interval).await;
        }
    }

    /// Keeps renewing; the returned receiver turns `true` when leadership is lost (no
    /// successful renewal for `renew_deadline`, or someone else holds the Lease).
    pub fn keep_leading(self) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (lost_tx, lost_rx) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(self.config.renew_interval).await;
                match self.try_lead_in_time().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!("another replica took the Lease; stopping");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(err) => tracing::warn!(%err, "renewing the Lease failed"),
                }
                // Stop before the Lease could be taken by someone else: they wait a whole
                // lease_duration after seeing our last renewal, and renew_deadline is shorter.
                if last_ok.elapsed() + self.config.renew_interval >= self.config.renew_deadline {
                    tracing::error!("could not renew the Lease in time; stopping");
                    let _ = lost_tx.send(true);
                    return;
                }
            }
        });
        (lost_rx, handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn spec(holder: &str, renewed: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn own_free_and_missing_leases() {
        let mut seen = Observation::default();
        let now = Instant::now();
        let stamp = Timestamp::now();
        assert_eq!(seen.lease_move(None, "a", now), LeaseMove::Take);
        assert_eq!(
            seen.lease_move(Some(&spec("a", stamp)), "a", now),
            LeaseMove::Renew
        );
        assert_eq!(
            seen.lease_move(Some(&spec("", stamp)), "a", now),
            LeaseMove::Take
        );
    }

    #[test]
    fn expiry_is_judged_by_when_this_replica_saw_the_record_change() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        // The holder's clock runs an hour behind: its renewTime looks long expired, yet the
        // record is fresh to us, so we wait a full lease duration from first sight.
        let stale_stamp = Timestamp::now() - SignedDuration::from_secs(3600);
        let mut seen = Observation::default();
        let held = spec("b", stale_stamp);
        assert_eq!(seen.lease_move(Some(&held), "a", at(0)), LeaseMove::Wait);
        assert_eq!(seen.lease_move(Some(&held), "a", at(14)), LeaseMove::Wait);
        // The holder renews (the record changes): the clock starts again.
        let renewed = spec("b", stale_stamp + SignedDuration::from_secs(5));
        assert_eq!(
            seen.lease_move(Some(&renewed), "a", at(14)),
            LeaseMove::Wait
        );
        assert_eq!(
            seen.lease_move(Some(&renewed), "a", at(28)),
            LeaseMove::Wait
        );
        // Unchanged for a whole lease duration by our clock: expired.
        assert_eq!(
            seen.lease_move(Some(&renewed), "a", at(29)),
            LeaseMove::Take
        );
        // The holder's clock running ahead does not keep the Lease alive either.
        let mut seen = Observation::default();
        let future = spec("b", Timestamp::now() + SignedDuration::from_secs(3600));
        assert_eq!(seen.lease_move(Some(&future), "a", at(0)), LeaseMove::Wait);
        assert_eq!(seen.lease_move(Some(&future), "a", at(15)), LeaseMove::Take);
    }
}
