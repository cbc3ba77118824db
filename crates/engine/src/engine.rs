//! The [`Engine`]: one netlink socket plus configuration and a host hand-off, and the
//! run that ties plan, apply, verify, files, hand-off, probe and revert together.

use crate::apply::{Counters, Writer};
use crate::config::{EngineConfig, RESERVED_TABLES};
use crate::diff::{current_slots, plan_runtime};
use crate::error::EngineError;
use crate::file_batch::FileBatch;
use crate::files::{self, FileOp, OwnedScan};
use crate::handoff::{HostHandoff, handoff_nics};
use crate::interrupt::Interrupt;
use crate::netlink::BatchSocket;
use crate::outcome::{ApplyOutcome, WriteCounts, outcomes};
use crate::plan::{Change, FileChange, NicAction, NicPlan, Plan};
use crate::probe::probe;
use crate::recover;
use crate::revert::FileSnapshot;
use crate::state::KernelState;
use crate::sysctl;
use crate::verify::Failure;
use multinic_api::{InterfaceReason, MacAddress};
use multinic_netconf::{DesiredNode, OwnedFile, render};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

/// How long verify waits for a daemon that took the NICs over to converge on multinic's
/// files (NetworkManager and networkd settle within a fraction of a second).
const DAEMON_SETTLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Applies desired NIC state to the network namespace it was connected in.
pub struct Engine {
    /// The engine's netlink socket: the writes go through it, batched per NIC, and the
    /// state's dumps (see `state.rs`). Opened at connect, so it lives in the network
    /// namespace the engine was connected in.
    pub(crate) socket: std::sync::Mutex<BatchSocket>,
    pub(crate) config: EngineConfig,
    pub(crate) handoff: Box<dyn HostHandoff>,
    interrupt: Interrupt,
}

impl Engine {
    /// Opens a netlink socket in the current network namespace.
    pub fn connect(
        config: EngineConfig,
        handoff: Box<dyn HostHandoff>,
    ) -> Result<Self, EngineError> {
        config.check()?;
        let mut config = config;
        if config.ipv6_runtime && !sysctl::ipv6_writable(&config.proc_sys) {
            tracing::warn!(
                proc_sys = %config.proc_sys.display(),
                "IPv6 accept_ra/autoconf cannot be written here (read-only /proc/sys or no \
                 IPv6); managed NICs get them from their persistent files only"
            );
            config.ipv6_runtime = false;
        }
        let socket = std::sync::Mutex::new(BatchSocket::open().map_err(EngineError::Connect)?);
        Ok(Self {
            socket,
            config,
            handoff,
            interrupt: Interrupt::default(),
        })
    }

    /// The flag that stops this engine's runs: once set, a running apply makes no further
    /// change, reverts what it changed and returns its outcome (e.g. on SIGTERM).
    pub fn interrupt(&self) -> Interrupt {
        self.interrupt.clone()
    }

    /// Uses `interrupt` (e.g. one a signal handler already holds) as this engine's flag.
    pub fn with_interrupt(mut self, interrupt: Interrupt) -> Self {
        self.interrupt = interrupt;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// Reads links, addresses and the owned tables' routes and rules.
    pub fn read_state(&self) -> Result<KernelState, EngineError> {
        KernelState::read(&self.socket, &self.config.owned_tables().collect())
    }

    /// The owned tables plus the tables `desired` routes into (they may lie outside
    /// `route_table_base ..` when the model was built with other options).
    fn tables_for(&self, desired: &DesiredNode) -> Result<BTreeSet<u32>, EngineError> {
        let mut tables: BTreeSet<u32> = self.config.owned_tables().collect();
        for nic in &desired.nics {
            if let Some(routing) = nic.routing {
                if RESERVED_TABLES.contains(&routing.table) {
                    return Err(EngineError::Config(format!(
                        "{}: route table {} is reserved",
                        nic.name, routing.table
                    )));
                }
                tables.insert(routing.table);
            }
        }
        Ok(tables)
    }

    pub(crate) fn read_for(&self, desired: &DesiredNode) -> Result<KernelState, EngineError> {
        KernelState::read(&self.socket, &self.tables_for(desired)?)
    }

    /// MAC -> slot of every link named `multinicN`, for sticky slot allocation
    /// (`DesiredNode::build`'s `sticky`).
    pub fn current_slots(&self) -> Result<HashMap<MacAddress, u8>, EngineError> {
        Ok(current_slots(&self.read_state()?).into_iter().collect())
    }

    /// What [`Engine::apply`] would do, without doing it (dry run).
    pub fn plan(&self, desired: &DesiredNode) -> Result<Plan, EngineError> {
        let scan = self.owned_files()?;
        let journal = recover::read(&self.config.root)?;
        let state = self.read_for(desired)?;
        self.build_plan(desired, &state, &scan, &journal)
    }

    /// The plan when the node drifted from `desired`, `None` when it matches.
    pub fn drift(&self, desired: &DesiredNode) -> Result<Option<Plan>, EngineError> {
        let plan = self.plan(desired)?;
        Ok((!plan.is_empty()).then_some(plan))
    }

    /// Makes the node match `desired`; NICs multinic owns that left it are stripped (orphans).
    pub async fn apply(&self, desired: &DesiredNode) -> Result<ApplyOutcome, EngineError> {
        // What a killed run left: temp files to drop, NICs it touched to count as ours.
        recover::sweep_temp_files(&self.config.root, self.config.flavor)?;
        let journal = recover::read(&self.config.root)?;
        let scan = self.owned_files()?;
        let snapshot = self.read_for(desired)?;
        let plan = self.build_plan(desired, &snapshot, &scan, &journal)?;
        if plan.is_empty() {
            tracing::debug!("node matches the desired state; nothing to write");
        } else {
            tracing::info!(
                changes = plan.kernel_changes(),
                files = plan.files.len(),
                "plan:\n{plan}"
            );
        }
        self.run(desired, &scan, &journal, snapshot, plan).await
    }

    /// Removes everything multinic owns: addresses, rules, routes and files of its NICs, which
    /// go down.
    pub async fn cleanup(&self) -> Result<ApplyOutcome, EngineError> {
        let empty = DesiredNode {
            nics: Vec::new(),
            sysctls: None,
            noprefixroute: false,
            held: Vec::new(),
        };
        self.apply(&empty).await
    }

    fn owned_files(&self) -> Result<OwnedScan, EngineError> {
        files::scan_owned(&self.config.root, self.config.flavor)
    }

    fn build_plan(
        &self,
        desired: &DesiredNode,
        state: &KernelState,
        scan: &OwnedScan,
        journal: &[OwnedFile],
    ) -> Result<Plan, EngineError> {
        let owners: Vec<OwnedFile> = scan.owned.iter().map(|(_, o)| o.clone()).collect();
        let (parking, mut nics, stale) =
            plan_runtime(desired, state, &owners, journal, &self.config);
        let configured: BTreeSet<&str> = nics
            .iter()
            .filter(|n| n.action == NicAction::Configure)
            .map(|n| n.name.as_str())
            .collect();
        let keep_macs = nics
            .iter()
            .filter(|n| matches!(n.action, NicAction::Skip { .. }))
            .map(|n| n.mac.clone())
            .collect();
        let mut model = desired.clone();
        model.nics.retain(|n| configured.contains(n.name.as_str()));
        for nic in &mut model.nics {
            nic.mac = nic.mac_address().to_string();
        }
        let rendered = render(self.config.flavor, &model);
        let file_changes = files::diff(&self.config.root, &rendered, scan, &keep_macs)?;
        // Files of NICs that are gone from the node (detached) are orphans too: report them.
        for change in &file_changes {
            let (
                FileChange::Remove {
                    owner: Some(owner), ..
                },
                Ok(slot),
            ) = (change, owner_slot(change))
            else {
                continue;
            };
            if !nics.iter().any(|n| n.mac == owner.mac) {
                nics.push(NicPlan {
                    slot,
                    name: owner.name.clone(),
                    mac: owner.mac.clone(),
                    source_index: None,
                    index: None,
                    action: NicAction::Remove,
                    changes: Vec::new(),
                });
            }
        }
        Ok(Plan {
            parking,
            nics,
            stale,
            files: file_changes,
        })
    }

    async fn run(
        &self,
        desired: &DesiredNode,
        scan: &OwnedScan,
        journal: &[OwnedFile],
        snapshot: KernelState,
        plan: Plan,
    ) -> Result<ApplyOutcome, EngineError> {
        let owned = &scan.owned;
        // Journal the NICs this run touches before anything changes, so a run killed on the
        // way leaves what the next one needs to finish or undo it.
        if plan.kernel_changes() > 0 {
            recover::begin(&self.config.root, journal, &plan)?;
        }
        let counters = Counters::new(&self.config, &self.interrupt);
        let writer = Writer::new(&self.socket, counters.clone(), &self.config.proc_sys);
        // Snapshot the files, then write them on a thread of their own while the hand-off
        // begins and the kernel changes run, so the disk waits overlap that work: staged
        // (temp file, flush) at once, committed once the hand-off began, unless the kernel
        // side failed first. A failure on either side reverts both, the files from this
        // snapshot.
        let mut file_snapshot = FileSnapshot::default();
        for change in &plan.files {
            let before = scan.read(&self.config.root, change.path())?;
            file_snapshot.entries.push((change.path().clone(), before));
        }
        let mut file_batch = (!plan.files.is_empty()).then(|| {
            let ops = FileOp::batch(&plan.files);
            FileBatch::stage(self.config.root.clone(), ops, counters.clone())
        });
        // Host hand-off (owned by the hand-off module): begin before anything changes, so a
        // NetworkManager checkpoint covers the whole run; an error here changed nothing.
        let handoff_nics = handoff_nics(&plan.files, desired);
        let handoff_note = match handoff_nics.is_empty() {
            true => None,
            false => match self.handoff.begin(&handoff_nics).await {
                Ok(note) => Some(note),
                Err(e) => {
                    // Never allowed, the batch only drops its temp files; the hand-off's
                    // error is the run's.
                    if let Some(batch) = file_batch {
                        let _ = batch.finish(&self.config.root).await;
                    }
                    return Err(e.into());
                }
            },
        };
        if let Some(batch) = &mut file_batch {
            batch.allow_commit();
        }
        // A daemon taking the NICs over (NetworkManager activating a profile, networkd
        // reconfiguring a link) rewrites what the kernel holds, and may briefly flush what
        // the engine set while it notices the renamed links: with one, the kernel is verified
        // after the daemon settled on multinic's files. Without one, verify runs while the
        // files are committed.
        let daemon = handoff_note.is_some() && self.handoff.daemon_takes_over();
        let mut failure = self.apply_kernel(&writer, &plan);
        if failure.is_none() && plan.kernel_changes() > 0 && !daemon {
            failure = self.verify_run(desired, owned, journal, &plan, None).await;
        }
        // Whether any file may have changed on disk (the commit began), so revert restores.
        let mut files_committed = false;
        if let Some(batch) = file_batch {
            if failure.is_some() {
                batch.stop();
            }
            let (began, written) = batch.finish(&self.config.root).await;
            files_committed = began;
            if let Err((i, e)) = written {
                failure = failure.or(Some(Failure {
                    nic: plan.files[i].owner().map(|o| o.name.clone()),
                    reason: InterfaceReason::ApplyFailed,
                    message: e.to_string(),
                }));
            }
            if failure.is_none()
                && let Err(e) = self.handoff.reload(&handoff_nics).await
            {
                failure = Some(Failure {
                    nic: None,
                    reason: InterfaceReason::ApplyFailed,
                    message: format!("host hand-off ({}): {e}", self.handoff.name()),
                });
            }
        }
        if failure.is_none() && daemon {
            let patience = Some(DAEMON_SETTLE);
            failure = self
                .verify_run(desired, owned, journal, &plan, patience)
                .await;
        }
        if failure.is_none()
            && counters.netlink() + counters.files() > 0
            && let Some(config) = &self.config.probe
            && let Err(message) = probe(config).await
        {
            failure = Some(Failure {
                nic: None,
                reason: InterfaceReason::ProbeFailed,
                message,
            });
        }
        // Hand-off commit once verify and probe passed (NetworkManager: destroy the checkpoint).
        if failure.is_none()
            && handoff_note.is_some()
            && let Err(e) = self.handoff.commit().await
        {
            failure = Some(Failure {
                nic: None,
                reason: InterfaceReason::ApplyFailed,
                message: format!("host hand-off ({}): {e}", self.handoff.name()),
            });
        }
        let mut rolled_back = false;
        let mut failure_text = None;
        let mut settled = true;
        if let Some(f) = &mut failure {
            counters.disarm();
            rolled_back = true;
            if let Err(e) = self
                .revert(
                    &writer,
                    &self.tables_for(desired)?,
                    &snapshot,
                    &plan,
                    files_committed.then_some(&file_snapshot),
                    handoff_note.is_some(),
                )
                .await
            {
                f.message = format!("{}; revert failed: {e}", f.message);
                // The kernel may still hold what the run added: keep the journal for it.
                settled = !matches!(e, EngineError::Netlink { .. });
            }
            failure_text = Some(match &f.nic {
                Some(nic) => format!("{nic}: {}", f.message),
                None => f.message.clone(),
            });
            tracing::warn!(failure = failure_text.as_deref(), "run reverted");
        }
        // Applied or fully reverted: the node is in a known state and the journal can go.
        // After a failed revert it stays, so the next run still knows these NICs.
        if settled && let Err(e) = recover::finish(&self.config.root) {
            tracing::warn!(error = %e, "run journal not removed");
        }
        let mut nics = outcomes(&plan, failure.as_ref());
        // Say how the host learnt about the NICs (e.g. "netlink and files only: ...").
        if let Some(note) = handoff_note.as_deref().filter(|n| !n.is_empty()) {
            let told = [InterfaceReason::Configured, InterfaceReason::Removed];
            for nic in nics.iter_mut().filter(|n| told.contains(&n.reason)) {
                nic.message = format!("{}; {note}", nic.message);
            }
        }
        Ok(ApplyOutcome {
            nics,
            plan,
            writes: WriteCounts {
                netlink: counters.netlink(),
                files: counters.files(),
            },
            rolled_back,
            failure: failure_text,
        })
    }

    /// Verifies the run; a read error while verifying is a failed verify, which reverts like
    /// any other. With `patience`, a mismatch is re-checked until it clears or that long
    /// passed: a daemon that took the NICs over converges on multinic's files.
    async fn verify_run(
        &self,
        desired: &DesiredNode,
        owned: &[(PathBuf, OwnedFile)],
        journal: &[OwnedFile],
        plan: &Plan,
        patience: Option<std::time::Duration>,
    ) -> Option<Failure> {
        let deadline = patience.map(|p| tokio::time::Instant::now() + p);
        loop {
            let failure = match self.verify(desired, owned, journal, plan).await {
                Ok(failure) => failure,
                // A read error is no mismatch to wait out.
                Err(e) => return Some(Failure::verify_read(e)),
            };
            match (failure, deadline) {
                // A duplicate address stays one however long the daemon takes.
                (Some(f), Some(at))
                    if f.reason != InterfaceReason::DuplicateAddress
                        && tokio::time::Instant::now() < at =>
                {
                    tracing::debug!(mismatch = f.message, "waiting for the daemon to settle");
                    tokio::time::sleep(self.config.verify.interval).await;
                }
                (failure, _) => return failure,
            }
        }
    }

    /// Parking, orphans, stale table entries, then the NICs to configure.
    fn apply_kernel(&self, writer: &Writer<'_>, plan: &Plan) -> Option<Failure> {
        let fail = |nic: Option<&NicPlan>, change: Option<&Change>, e: EngineError| Failure {
            nic: nic.map(|n| n.name.clone()),
            reason: InterfaceReason::ApplyFailed,
            message: match change {
                Some(c) => format!("{c}: {e}"),
                None => e.to_string(),
            },
        };
        if let Err((i, e)) = writer.execute(&plan.parking) {
            let holder = plan.parking[i].link_index();
            let nic = plan
                .nics
                .iter()
                .find(|n| n.index.is_some() && n.index == holder);
            return Some(fail(nic, plan.parking.get(i), e));
        }
        let removes = plan.nics.iter().filter(|n| n.action == NicAction::Remove);
        for nic in removes {
            if let Err((i, e)) = writer.execute(&nic.changes) {
                return Some(fail(Some(nic), nic.changes.get(i), e));
            }
        }
        if let Err((i, e)) = writer.execute(&plan.stale) {
            return Some(fail(None, plan.stale.get(i), e));
        }
        // One batch per NIC: the kernel does each request's work inside the send, under its
        // routing lock, so sending the NICs' batches from several tasks would overlap nothing.
        let configure = plan
            .nics
            .iter()
            .filter(|n| n.action == NicAction::Configure);
        for nic in configure {
            if let Err((i, e)) = writer.execute(&nic.changes) {
                return Some(fail(Some(nic), nic.changes.get(i), e));
            }
        }
        None
    }
}

/// Slot of the NIC a file belongs to.
fn owner_slot(change: &FileChange) -> Result<u8, String> {
    let owner = change.owner().ok_or("no owner")?;
    multinic_api::parse_slot_name(&owner.name)
}
