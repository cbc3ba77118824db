//! Executes kernel changes over rtnetlink, counting every write. Link-level changes of one link
//! that follow each other (rename, MTU, sysctls, up) go out as one `RTM_SETLINK`; a `LinkDown`
//! always goes alone because the kernel renames only links that are already down.

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::interrupt::{Gate, Interrupt};
use crate::plan::Change;
use crate::state::{RouteEntry, RuleEntry};
use crate::sysctl;
use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Errno values a delete may meet when the object is already gone.
const GONE: [i32; 3] = [
    -libc_errno::ENOENT,
    -libc_errno::ESRCH,
    -libc_errno::EADDRNOTAVAIL,
];

mod libc_errno {
    pub const ENOENT: i32 = 2;
    pub const ESRCH: i32 = 3;
    pub const EADDRNOTAVAIL: i32 = 99;
}

/// Write counters shared by the netlink writer and the file batch (which runs on a blocking
/// thread at the same time), with the test-only fault hook (feature `fault-injection`).
#[derive(Debug)]
pub(crate) struct Counters {
    netlink: AtomicU64,
    files: AtomicU64,
    /// Fail the write after this many; `u64::MAX` when disarmed.
    #[cfg(feature = "fault-injection")]
    fail_after: AtomicU64,
    /// Stops the run's writes once interrupted (see `interrupt.rs`).
    gate: Gate,
}

impl Counters {
    pub fn new(config: &EngineConfig, interrupt: &Interrupt) -> Arc<Self> {
        Arc::new(Self {
            netlink: AtomicU64::new(0),
            files: AtomicU64::new(0),
            gate: Gate::new(config, interrupt),
            #[cfg(feature = "fault-injection")]
            fail_after: AtomicU64::new(config.fault.fail_after_writes.unwrap_or(u64::MAX)),
        })
    }

    /// Netlink writes so far.
    pub fn netlink(&self) -> u64 {
        self.netlink.load(Ordering::SeqCst)
    }

    /// File writes so far.
    pub fn files(&self) -> u64 {
        self.files.load(Ordering::SeqCst)
    }

    /// Stops injecting faults (for the revert phase).
    pub fn disarm(&self) {
        self.gate.disarm();
        #[cfg(feature = "fault-injection")]
        self.fail_after.store(u64::MAX, Ordering::SeqCst);
    }

    /// Counts one file write, or fails when the fault hook says so.
    pub fn count_file(&self) -> Result<(), EngineError> {
        self.count(&self.files)
    }

    fn count(&self, counter: &AtomicU64) -> Result<(), EngineError> {
        self.gate.check(self.netlink() + self.files())?;
        #[cfg(feature = "fault-injection")]
        {
            let n = self.fail_after.load(Ordering::SeqCst);
            if n != u64::MAX && self.netlink() + self.files() >= n {
                return Err(EngineError::InjectedFault(n));
            }
        }
        counter.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Sends kernel changes, counting every write. `execute` takes `&self` so the change lists
/// of several NICs can run concurrently.
pub(crate) struct Writer<'a> {
    handle: &'a Handle,
    counters: Arc<Counters>,
    /// `/proc/sys`, for the IPv6 values netlink cannot set.
    proc_sys: &'a Path,
}

impl<'a> Writer<'a> {
    pub fn new(handle: &'a Handle, counters: Arc<Counters>, proc_sys: &'a Path) -> Self {
        Self {
            handle,
            counters,
            proc_sys,
        }
    }

    fn count(&self) -> Result<(), EngineError> {
        self.counters.count(&self.counters.netlink)
    }

    /// The shared counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Runs `changes` in order. On failure returns the position of the change that failed.
    pub async fn execute(&self, changes: &[Change]) -> Result<(), (usize, EngineError)> {
        let mut i = 0;
        while i < changes.len() {
            // Gather a run of link edits on the same link into one message.
            if let Some(index) = edit_index(&changes[i]) {
                let mut end = i + 1;
                while end < changes.len() && edit_index(&changes[end]) == Some(index) {
                    end += 1;
                }
                self.set_link(index, &changes[i..end])
                    .await
                    .map_err(|e| (i, e))?;
                i = end;
                continue;
            }
            self.one(&changes[i]).await.map_err(|e| (i, e))?;
            i += 1;
        }
        Ok(())
    }

    async fn set_link(&self, index: u32, edits: &[Change]) -> Result<(), EngineError> {
        self.count()?;
        let mut builder = LinkUnspec::new_with_index(index);
        let mut extra = Vec::new();
        let mut what = Vec::new();
        for edit in edits {
            what.push(edit.to_string());
            builder = match edit {
                Change::Rename { to, .. } => builder.name(to.clone()),
                Change::Mtu { to, .. } => builder.mtu(*to),
                Change::LinkUp { .. } => builder.up(),
                Change::Sysctls { to, .. } => {
                    extra.push(sysctl::set_attribute(to));
                    builder
                }
                _ => builder,
            };
        }
        let mut message = LinkMessageBuilder::build(builder);
        message.attributes.extend(extra);
        self.handle
            .link()
            .set(message)
            .execute()
            .await
            .map_err(|e| EngineError::netlink(what.join(", "), e))
    }

    async fn one(&self, change: &Change) -> Result<(), EngineError> {
        if edit_index(change).is_some() {
            return self
                .set_link(
                    change.link_index().unwrap_or_default(),
                    std::slice::from_ref(change),
                )
                .await;
        }
        self.count()?;
        let handle = self.handle;
        let what = change.to_string();
        let result = match change {
            Change::Ipv6Conf { name, to, .. } => {
                return sysctl::write_ipv6(self.proc_sys, name, to).map_err(|e| {
                    EngineError::io(self.proc_sys.join("net/ipv6/conf").join(name), e)
                });
            }
            Change::LinkDown { index } => {
                let msg = LinkUnspec::new_with_index(*index).down().build();
                handle.link().set(msg).execute().await
            }
            Change::AddAddress {
                index,
                address,
                noprefixroute,
            } => {
                let mut req = handle
                    .address()
                    .add(*index, address.addr(), address.prefix_len())
                    .replace();
                if *noprefixroute {
                    req.message_mut()
                        .attributes
                        .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
                }
                req.execute().await
            }
            Change::RemoveAddress { index, address } => {
                let msg = address_message(*index, address);
                tolerate_gone(handle.address().del(msg).execute().await)
            }
            Change::AddRoute(route) => {
                handle
                    .route()
                    .add(route_message(route))
                    .replace()
                    .execute()
                    .await
            }
            Change::RemoveRoute(route) => {
                tolerate_gone(handle.route().del(route_message(route)).execute().await)
            }
            Change::AddRule(rule) => {
                let mut req = handle.rule().add();
                *req.message_mut() = rule_message(rule);
                req.execute().await
            }
            Change::RemoveRule(rule) => {
                tolerate_gone(handle.rule().del(rule_message(rule)).execute().await)
            }
            Change::Rename { .. }
            | Change::Mtu { .. }
            | Change::Sysctls { .. }
            | Change::LinkUp { .. } => unreachable!("sent by set_link"),
        };
        result.map_err(|e| EngineError::netlink(what, e))
    }
}

/// The link of a change that can share one `RTM_SETLINK` with its neighbours.
fn edit_index(change: &Change) -> Option<u32> {
    match change {
        Change::Rename { index, .. }
        | Change::Mtu { index, .. }
        | Change::Sysctls { index, .. }
        | Change::LinkUp { index } => Some(*index),
        _ => None,
    }
}

fn tolerate_gone(result: Result<(), rtnetlink::Error>) -> Result<(), rtnetlink::Error> {
    match result {
        Err(rtnetlink::Error::NetlinkError(e)) if GONE.contains(&e.raw_code()) => Ok(()),
        other => other,
    }
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn address_message(index: u32, address: &IpNet) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.family = family(address.addr());
    msg.header.prefix_len = address.prefix_len();
    msg.header.index = index;
    msg.attributes.push(AddressAttribute::Local(address.addr()));
    msg.attributes
        .push(AddressAttribute::Address(address.addr()));
    msg
}

fn route_message(route: &RouteEntry) -> netlink_packet_route::route::RouteMessage {
    let dst = route.destination;
    let v6 = dst.addr().is_ipv6();
    let mut builder = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .expect("destination family matches the builder")
        .table_id(route.table)
        .priority(route.metric)
        .protocol(RouteProtocol::Static)
        .scope(if v6 {
            RouteScope::Universe
        } else {
            RouteScope::Link
        });
    if let Some(oif) = route.oif {
        builder = builder.output_interface(oif);
    }
    if let Some(src) = route.pref_source {
        builder = builder
            .pref_source(src)
            .expect("source family matches the builder");
    }
    builder.build()
}

fn rule_message(rule: &RuleEntry) -> RuleMessage {
    let mut msg = RuleMessage::default();
    msg.header.family = if rule.v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    msg.header.action = RuleAction::ToTable;
    if rule.table > 255 {
        msg.attributes.push(RuleAttribute::Table(rule.table));
    } else {
        msg.header.table = rule.table as u8;
    }
    msg.attributes.push(RuleAttribute::Priority(rule.priority));
    if let Some(src) = rule.source {
        msg.header.src_len = src.prefix_len();
        msg.attributes.push(RuleAttribute::Source(src.addr()));
    }
    msg
}
