//! The plan: an explicit list of changes that takes the node from its current state to the
//! desired one. The same value drives applying, logging, dry-run output and the report.

use crate::state::{Ipv6Conf, RouteEntry, RuleEntry};
use ipnet::IpNet;
use multinic_api::InterfaceReason;
use multinic_netconf::{NicSysctls, OwnedFile};
use std::fmt;
use std::path::PathBuf;

/// What happens to one NIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NicAction {
    /// Make it match the desired model.
    Configure,
    /// It is multinic's but left the desired set (or cleanup): strip it and take it down.
    Remove,
    /// Leave it alone, with this reason (MacNotFound, PrimaryInterfaceProtected, NameConflict ...).
    Skip {
        /// Reported reason.
        reason: InterfaceReason,
        /// Reported detail.
        message: String,
    },
}

/// One kernel change. Link-level changes of one NIC are sent together where the kernel allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Set the link down (before a rename, or to retire an orphan).
    LinkDown {
        /// ifindex.
        index: u32,
    },
    /// Rename the link (it is down).
    Rename {
        /// ifindex.
        index: u32,
        /// Current name.
        from: String,
        /// New name.
        to: String,
    },
    /// Set the MTU.
    Mtu {
        /// ifindex.
        index: u32,
        /// Current MTU.
        from: u32,
        /// New MTU.
        to: u32,
    },
    /// Set the ARP/rp_filter devconf values.
    Sysctls {
        /// ifindex.
        index: u32,
        /// Current values, when known.
        from: Option<NicSysctls>,
        /// New values.
        to: NicSysctls,
    },
    /// Set the IPv6 `accept_ra`/`autoconf` values (through `/proc/sys`, by name).
    Ipv6Conf {
        /// ifindex.
        index: u32,
        /// The link's name when the change runs: it runs before the link's rename (the
        /// values move with the link).
        name: String,
        /// Current values, when known.
        from: Option<Ipv6Conf>,
        /// New values.
        to: Ipv6Conf,
    },
    /// Set the link up.
    LinkUp {
        /// ifindex.
        index: u32,
    },
    /// Remove an address.
    RemoveAddress {
        /// ifindex.
        index: u32,
        /// The address.
        address: IpNet,
    },
    /// Add (or replace) an address.
    AddAddress {
        /// ifindex.
        index: u32,
        /// The address.
        address: IpNet,
        /// With `noprefixroute`.
        noprefixroute: bool,
    },
    /// Remove a route from an owned table.
    RemoveRoute(RouteEntry),
    /// Add a route to an owned table.
    AddRoute(RouteEntry),
    /// Remove a rule pointing at an owned table.
    RemoveRule(RuleEntry),
    /// Add a rule.
    AddRule(RuleEntry),
}

impl Change {
    /// The link the change is about, if it is about one link.
    pub fn link_index(&self) -> Option<u32> {
        match self {
            Self::LinkDown { index }
            | Self::Rename { index, .. }
            | Self::Mtu { index, .. }
            | Self::Sysctls { index, .. }
            | Self::Ipv6Conf { index, .. }
            | Self::LinkUp { index }
            | Self::RemoveAddress { index, .. }
            | Self::AddAddress { index, .. } => Some(*index),
            Self::RemoveRoute(r) | Self::AddRoute(r) => r.oif,
            Self::RemoveRule(_) | Self::AddRule(_) => None,
        }
    }
}

/// One NIC's part of the plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NicPlan {
    /// Slot N.
    pub slot: u8,
    /// `multinicN`.
    pub name: String,
    /// MAC, lowercase.
    pub mac: String,
    /// Position in the source (none for orphans).
    pub source_index: Option<usize>,
    /// ifindex of the link found for it.
    pub index: Option<u32>,
    /// What happens to it.
    pub action: NicAction,
    /// Kernel changes, in execution order.
    pub changes: Vec<Change>,
}

/// One file change under the root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileChange {
    /// Write the file atomically.
    Write {
        /// Host path (joined under the root when written).
        path: PathBuf,
        /// Permission bits.
        mode: u32,
        /// Contents.
        contents: String,
        /// The NIC the file belongs to, from its marker.
        owner: Option<OwnedFile>,
    },
    /// Remove one of multinic's files.
    Remove {
        /// Host path.
        path: PathBuf,
        /// The NIC the file belonged to.
        owner: Option<OwnedFile>,
    },
}

impl FileChange {
    /// The host path concerned.
    pub fn path(&self) -> &PathBuf {
        match self {
            Self::Write { path, .. } | Self::Remove { path, .. } => path,
        }
    }

    /// The owning NIC, if known.
    pub fn owner(&self) -> Option<&OwnedFile> {
        match self {
            Self::Write { owner, .. } | Self::Remove { owner, .. } => owner.as_ref(),
        }
    }
}

/// Desired vs current, as explicit changes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Links multinic must move off a slot name before others can take it (run first).
    pub parking: Vec<Change>,
    /// Per NIC: desired NICs in slot order, then orphans.
    pub nics: Vec<NicPlan>,
    /// Routes and rules in owned tables that belong to no planned NIC.
    pub stale: Vec<Change>,
    /// File writes and removals.
    pub files: Vec<FileChange>,
}

impl Plan {
    /// Number of kernel changes.
    pub fn kernel_changes(&self) -> usize {
        self.parking.len()
            + self.stale.len()
            + self.nics.iter().map(|n| n.changes.len()).sum::<usize>()
    }

    /// True when nothing would be written at all.
    pub fn is_empty(&self) -> bool {
        self.kernel_changes() == 0 && self.files.is_empty()
    }

    /// The plan of the NIC with this name.
    pub fn nic(&self, name: &str) -> Option<&NicPlan> {
        self.nics.iter().find(|n| n.name == name)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::LinkDown { index } => write!(f, "set link {index} down"),
            Self::Rename { index, from, to } => write!(f, "rename link {index} {from} -> {to}"),
            Self::Mtu { index, from, to } => write!(f, "set link {index} mtu {from} -> {to}"),
            Self::Sysctls { index, from, to } => {
                write!(f, "set link {index} ")?;
                if let Some(from) = from {
                    write!(f, "{} -> ", Sysctls(from))?;
                }
                write!(f, "{}", Sysctls(to))
            }
            Self::Ipv6Conf {
                index,
                name,
                from,
                to,
            } => {
                write!(f, "set link {index} ({name}) ipv6 ")?;
                if let Some(from) = from {
                    write!(
                        f,
                        "accept_ra={} autoconf={} -> ",
                        from.accept_ra, from.autoconf
                    )?;
                }
                write!(f, "accept_ra={} autoconf={}", to.accept_ra, to.autoconf)
            }
            Self::LinkUp { index } => write!(f, "set link {index} up"),
            Self::RemoveAddress { index, address } => {
                write!(f, "remove address {address} from link {index}")
            }
            Self::AddAddress {
                index,
                address,
                noprefixroute,
            } => {
                let flag = if *noprefixroute { " noprefixroute" } else { "" };
                write!(f, "add address {address}{flag} to link {index}")
            }
            Self::RemoveRoute(r) => write!(f, "remove route {}", Route(r)),
            Self::AddRoute(r) => write!(f, "add route {}", Route(r)),
            Self::RemoveRule(r) => write!(f, "remove rule {}", Rule(r)),
            Self::AddRule(r) => write!(f, "add rule {}", Rule(r)),
        }
    }
}

struct Sysctls<'a>(&'a NicSysctls);

impl fmt::Display for Sysctls<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        write!(
            f,
            "arp_ignore={} arp_announce={} rp_filter={}",
            s.arp_ignore, s.arp_announce, s.rp_filter
        )
    }
}

struct Route<'a>(&'a RouteEntry);

impl fmt::Display for Route<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "{} table {} metric {}", r.destination, r.table, r.metric)?;
        if let Some(oif) = r.oif {
            write!(f, " dev {oif}")?;
        }
        if let Some(src) = r.pref_source {
            write!(f, " src {src}")?;
        }
        Ok(())
    }
}

struct Rule<'a>(&'a RuleEntry);

impl fmt::Display for Rule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.0;
        write!(f, "priority {}", r.priority)?;
        match &r.source {
            Some(src) => write!(f, " from {src}")?,
            None => write!(f, " from all")?,
        }
        write!(f, " lookup {}", r.table)
    }
}

impl fmt::Display for NicAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Configure => f.write_str("configure"),
            Self::Remove => f.write_str("remove"),
            Self::Skip { reason, message } => write!(f, "skip ({reason}: {message})"),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for change in &self.parking {
            writeln!(f, "park: {change}")?;
        }
        for nic in &self.nics {
            let index = nic.index.map(|i| format!(" link {i}")).unwrap_or_default();
            writeln!(f, "{} {}{}: {}", nic.name, nic.mac, index, nic.action)?;
            for change in &nic.changes {
                writeln!(f, "  - {change}")?;
            }
        }
        for change in &self.stale {
            writeln!(f, "stale: {change}")?;
        }
        for file in &self.files {
            match file {
                FileChange::Write { path, mode, .. } => {
                    writeln!(f, "file: write {} ({mode:04o})", path.display())?
                }
                FileChange::Remove { path, .. } => writeln!(f, "file: remove {}", path.display())?,
            }
        }
        Ok(())
    }
}
