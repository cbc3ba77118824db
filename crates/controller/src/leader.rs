//! Leader election with a coordination.k8s.io Lease, so two replicas never act at once: the
//! holder renews every `renew_interval`; anyone may take a Lease not renewed for
//! `lease_duration`; every write carries the read resourceVersion, so a race ends in a 409 for
//! all but one. A holder that cannot renew in time stops acting before another may take over.

use crate::config::LeaderConfig;
use crate::error::{Error, is_status};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
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

/// Decides what to do with `spec` as `me` at `now`.
pub fn lease_move(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> LeaseMove {
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
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    match last {
        Some(last) if last + duration > now => LeaseMove::Wait,
        _ => LeaseMove::Take,
    }
}

/// A replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
    identity: String,
}

impl LeaderElector {
    /// An elector for `identity` on the Lease named in `config`.
    pub fn new(client: Client, config: LeaderConfig, identity: String) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            identity,
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
        let mv = lease_move(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
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
            match self.try_lead().await {
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
    /// successful renewal for `lease_duration`, or someone else holds the Lease).
    pub fn keep_leading(self) -> (watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
        let (lost_tx, lost_rx) = watch::channel(false);
        let handle = tokio::spawn(async move {
            let mut last_ok = tokio::time::Instant::now();
            loop {
                tokio::time::sleep(self.config.renew_interval).await;
                match self.try_lead().await {
                    Ok(true) => last_ok = tokio::time::Instant::now(),
                    Ok(false) => {
                        tracing::error!("another replica took the Lease; stopping");
                        let _ = lost_tx.send(true);
                        return;
                    }
                    Err(err) => tracing::warn!(%err, "renewing the Lease failed"),
                }
                // Stop a safety margin before the Lease could be taken by someone else.
                let margin = self.config.renew_interval.min(Duration::from_secs(2));
                if last_ok.elapsed() + margin >= self.config.lease_duration {
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

    fn spec(holder: &str, renewed_secs_ago: i64, duration: i32, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn moves() {
        let now = Timestamp::now();
        assert_eq!(lease_move(None, "a", now), LeaseMove::Take);
        assert_eq!(
            lease_move(Some(&spec("a", 1, 15, now)), "a", now),
            LeaseMove::Renew
        );
        assert_eq!(
            lease_move(Some(&spec("b", 1, 15, now)), "a", now),
            LeaseMove::Wait
        );
        assert_eq!(
            lease_move(Some(&spec("b", 16, 15, now)), "a", now),
            LeaseMove::Take
        );
        assert_eq!(
            lease_move(Some(&spec("", 1, 15, now)), "a", now),
            LeaseMove::Take
        );
    }
}
