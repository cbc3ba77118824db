//! Executes kernel changes over rtnetlink, counting every write, in batches (one `sendmsg`
//! for a NIC's changes). Link-level changes of one link that follow each other (rename, MTU,
//! sysctls, up) go out as one `RTM_SETLINK`; a `LinkDown` is a message of its own because
//! the kernel renames only links that are already down (it handles a batch in order).

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::interrupt::{Gate, Interrupt};
use crate::netlink::BatchSocket;
use crate::plan::Change;
use crate::state::{RouteEntry, RuleEntry};
use crate::sysctl;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::route::{RouteProtocol, RouteScope};
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage,
};
use rtnetlink::{AddressMessageBuilder, LinkMessageBuilder, LinkUnspec, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Send each write before the next is counted (the test-only pause hook stops a run
    /// after exactly N writes have reached the kernel).
    one_at_a_time: bool,
}

impl Counters {
    pub fn new(config: &EngineConfig, interrupt: &Interrupt) -> Arc<Self> {
        Arc::new(Self {
            netlink: AtomicU64::new(0),
            files: AtomicU64::new(0),
            gate: Gate::new(config, interrupt),
            #[cfg(feature = "fault-injection")]
            fail_after: AtomicU64::new(config.fault.fail_after_writes.unwrap_or(u64::MAX)),
            #[cfg(feature = "fault-injection")]
            one_at_a_time: config.fault.pause_after_writes.is_some(),
            #[cfg(not(feature = "fault-injection"))]
            one_at_a_time: false,
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

/// Sends kernel changes, counting every write.
///
/// The changes of one call go to the kernel as one batch (see `netlink.rs`), split only
/// where a change must see the ones before it done: an IPv6 sysctl write goes through
/// `/proc/sys` by the NIC's name (the planner puts it first, before the link edits, so a
/// fresh NIC's changes are one batch). Each write is counted (and may be stopped by the
/// interrupt or the test-only fault hook) before the batch holding it is sent; the changes
/// before a stopped one are sent, the rest are not, as if they went one at a time.
pub(crate) struct Writer<'a> {
    /// Opened with the writer, in the network namespace of the engine's thread.
    socket: &'a Mutex<BatchSocket>,
    counters: Arc<Counters>,
    /// `/proc/sys`, for the IPv6 values netlink cannot set.
    proc_sys: &'a Path,
}

/// Requests waiting to be sent, each with the position of its (first) change, what it does
/// and whether "already gone" counts as done.
#[derive(Default)]
struct Batch {
    requests: Vec<NetlinkMessage<RouteNetlinkMessage>>,
    about: Vec<(usize, String, bool)>,
}

impl<'a> Writer<'a> {
    /// Writes through `socket`, the engine's own, which sends each NIC's changes as one
    /// batch.
    pub fn new(
        socket: &'a Mutex<BatchSocket>,
        counters: Arc<Counters>,
        proc_sys: &'a Path,
    ) -> Self {
        Self {
            socket,
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
    pub fn execute(&self, changes: &[Change]) -> Result<(), (usize, EngineError)> {
        let mut batch = Batch::default();
        let mut i = 0;
        while i < changes.len() {
            // A run of link edits on the same link becomes one message.
            let end = match edit_index(&changes[i]) {
                Some(index) => {
                    let mut end = i + 1;
                    while end < changes.len() && edit_index(&changes[end]) == Some(index) {
                        end += 1;
                    }
                    end
                }
                None => i + 1,
            };
            if let Err(e) = self.count() {
                self.flush(&mut batch)?;
                return Err((i, e));
            }
            match &changes[i] {
                Change::Ipv6Conf { name, to, .. } => {
                    self.flush(&mut batch)?;
                    sysctl::write_ipv6(self.proc_sys, name, to).map_err(|e| {
                        let path = self.proc_sys.join("net/ipv6/conf").join(name);
                        (i, EngineError::io(path, e))
                    })?;
                }
                change => {
                    let (request, tolerate_gone) = request(change, &changes[i..end]);
                    let what: Vec<String> = changes[i..end].iter().map(|c| c.to_string()).collect();
                    batch.requests.push(request);
                    batch.about.push((i, what.join(", "), tolerate_gone));
                }
            }
            if self.counters.one_at_a_time {
                self.flush(&mut batch)?;
            }
            i = end;
        }
        self.flush(&mut batch)
    }

    /// Sends the batch; the first request the kernel refused is the error.
    fn flush(&self, batch: &mut Batch) -> Result<(), (usize, EngineError)> {
        let requests = std::mem::take(&mut batch.requests);
        let about = std::mem::take(&mut batch.about);
        let Some((first, first_what, _)) = about.first() else {
            return Ok(());
        };
        let failed = |e: String| {
            (
                *first,
                EngineError::netlink(
                    format!("{first_what}: {e}"),
                    rtnetlink::Error::RequestFailed,
                ),
            )
        };
        let answers = self
            .socket
            .lock()
            .map_err(|e| failed(e.to_string()))?
            .send(requests)
            .map_err(|e| failed(e.to_string()))?;
        for ((i, what, tolerate_gone), answer) in about.into_iter().zip(answers) {
            match answer {
                Some(e) if tolerate_gone && GONE.contains(&e.raw_code()) => {}
                Some(e) => {
                    return Err((
                        i,
                        EngineError::netlink(what, rtnetlink::Error::NetlinkError(e)),
                    ));
                }
                None => {}
            }
        }
        Ok(())
    }
}

/// The request for `change` (with the link edits that follow it in `edits` when it is one),
/// and whether "already gone" counts as done.
fn request(change: &Change, edits: &[Change]) -> (NetlinkMessage<RouteNetlinkMessage>, bool) {
    let (message, flags, tolerate_gone) = match change {
        Change::Rename { .. }
        | Change::Mtu { .. }
        | Change::Sysctls { .. }
        | Change::LinkUp { .. } => {
            let index = change.link_index().unwrap_or_default();
            (
                RouteNetlinkMessage::SetLink(set_link(index, edits)),
                CHANGE,
                false,
            )
        }
        Change::LinkDown { index } => {
            let message = LinkUnspec::new_with_index(*index).down().build();
            (RouteNetlinkMessage::SetLink(message), CHANGE, false)
        }
        Change::AddAddress {
            index,
            address,
            noprefixroute,
        } => {
            let mut message = match address.addr() {
                IpAddr::V4(ip) => AddressMessageBuilder::<Ipv4Addr>::new()
                    .index(*index)
                    .address(ip, address.prefix_len())
                    .build(),
                IpAddr::V6(ip) => AddressMessageBuilder::<Ipv6Addr>::new()
                    .index(*index)
                    .address(ip, address.prefix_len())
                    .build(),
            };
            if *noprefixroute {
                message
                    .attributes
                    .push(AddressAttribute::Flags(AddressFlags::Noprefixroute));
            }
            (RouteNetlinkMessage::NewAddress(message), REPLACE, false)
        }
        Change::RemoveAddress { index, address } => (
            RouteNetlinkMessage::DelAddress(address_message(*index, address)),
            REMOVE,
            true,
        ),
        Change::AddRoute(route) => (
            RouteNetlinkMessage::NewRoute(route_message(route)),
            REPLACE,
            false,
        ),
        Change::RemoveRoute(route) => (
            RouteNetlinkMessage::DelRoute(route_message(route)),
            REMOVE,
            true,
        ),
        Change::AddRule(rule) => (RouteNetlinkMessage::NewRule(rule_message(rule)), ADD, false),
        Change::RemoveRule(rule) => (
            RouteNetlinkMessage::DelRule(rule_message(rule)),
            REMOVE,
            true,
        ),
        Change::Ipv6Conf { .. } => unreachable!("written through /proc/sys"),
    };
    let mut request = NetlinkMessage::from(message);
    request.header.flags = flags;
    (request, tolerate_gone)
}

/// Header flags, as rtnetlink sets them: a link edit, an add that replaces what is there,
/// an add that fails when it is there, a delete.
const CHANGE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
const REPLACE: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_REPLACE | NLM_F_CREATE;
const ADD: u16 = NLM_F_REQUEST | NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE;
const REMOVE: u16 = NLM_F_REQUEST | NLM_F_ACK;

/// One `RTM_SETLINK` for a run of edits of one link.
fn set_link(index: u32, edits: &[Change]) -> LinkMessage {
    let mut builder = LinkUnspec::new_with_index(index);
    let mut extra = Vec::new();
    for edit in edits {
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
    message
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
