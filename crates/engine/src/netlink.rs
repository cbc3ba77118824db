//! The engine's one route-netlink socket: its writes go as a batch of requests in one
//! `sendmsg`, then their acknowledgements are collected. The kernel handles route-netlink
//! requests in order, inside the send, so one batch costs one system call plus one read per
//! answer, where a request-at-a-time exchange costs a round trip each. The same socket reads
//! the state's dumps (links, addresses, routes, rules), handing each message's bytes to the
//! caller unparsed (see [`BatchSocket::dump`]).

use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{
    ErrorMessage, NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use std::io;

/// Largest answer read at once; an acknowledgement is tens of bytes, an error echoes its
/// request (a few hundred).
const RECV_BUFFER: usize = 64 * 1024;

/// The socket; opened in the network namespace of the thread that opens it.
pub(crate) struct BatchSocket {
    socket: Socket,
    next_sequence: u32,
    buffer: Vec<u8>,
}

impl BatchSocket {
    /// Opens and binds a route-netlink socket. Non-blocking: every answer is queued before
    /// the send returns, so a missing one is an error instead of a hang.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        socket.set_non_blocking(true)?;
        Ok(Self {
            socket,
            next_sequence: 1,
            buffer: Vec::with_capacity(RECV_BUFFER),
        })
    }

    /// Sends `requests` (each with `NLM_F_ACK` set) as one datagram and returns the kernel's
    /// answer to each, in order: `None` when it was done, else the error. The kernel goes on
    /// with the requests after a failed one.
    pub fn send(
        &mut self,
        requests: Vec<NetlinkMessage<RouteNetlinkMessage>>,
    ) -> io::Result<Vec<Option<ErrorMessage>>> {
        let first = self.next_sequence;
        let mut out = Vec::new();
        for mut message in requests {
            message.header.sequence_number = self.next_sequence;
            self.next_sequence = self.next_sequence.wrapping_add(1);
            message.finalize();
            let start = out.len();
            out.resize(start + message.buffer_len(), 0);
            message.serialize(&mut out[start..]);
        }
        let count = self.next_sequence.wrapping_sub(first) as usize;
        let sent = self.socket.send(&out, 0)?;
        if sent != out.len() {
            return Err(io::Error::other("netlink batch sent in part"));
        }
        let mut answers: Vec<Option<Option<ErrorMessage>>> = vec![None; count];
        let mut missing = count;
        while missing > 0 {
            self.buffer.clear();
            let read = self.socket.recv(&mut self.buffer, 0).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::other(format!("no answer to {missing} of {count} requests"))
                } else {
                    e
                }
            })?;
            let mut offset = 0;
            while offset < read.min(self.buffer.len()) {
                let message =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(&self.buffer[offset..])
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = message.header.length as usize;
                if length == 0 {
                    break;
                }
                offset += length.next_multiple_of(4);
                let slot = message.header.sequence_number.wrapping_sub(first) as usize;
                let answer = match message.payload {
                    NetlinkPayload::Error(e) if e.code.is_some() => Some(e),
                    NetlinkPayload::Error(_) => None,
                    // Not an answer to these requests.
                    _ => continue,
                };
                if let Some(entry) = answers.get_mut(slot)
                    && entry.is_none()
                {
                    *entry = Some(answer);
                    missing -= 1;
                }
            }
        }
        Ok(answers.into_iter().map(Option::flatten).collect())
    }

    /// Sends `message` as a dump request and hands the payload of each message of the answer
    /// to `each`, unparsed, until the kernel says the dump is done. The caller decodes only
    /// what it needs: a fully parsed link message holds every attribute the kernel sends
    /// (some 50 for a veth), and the whole dump of them was most of a re-apply's heap, each
    /// of its pages a page fault.
    pub fn dump(
        &mut self,
        message: RouteNetlinkMessage,
        mut each: impl FnMut(&[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut request = NetlinkMessage::from(message);
        request.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.wrapping_add(1);
        request.header.sequence_number = sequence;
        request.finalize();
        let mut out = vec![0; request.buffer_len()];
        request.serialize(&mut out);
        if self.socket.send(&out, 0)? != out.len() {
            return Err(io::Error::other("netlink dump request sent in part"));
        }
        loop {
            self.buffer.clear();
            // The kernel fills the next part of a dump inside each receive (and the first
            // inside the send), so on this non-blocking socket an empty queue means the
            // dump ended without its done message.
            let read = self.socket.recv(&mut self.buffer, 0).map_err(|e| {
                if e.kind() == io::ErrorKind::WouldBlock {
                    io::Error::other("netlink dump ended without its done message")
                } else {
                    e
                }
            })?;
            let mut rest = &self.buffer[..read.min(self.buffer.len())];
            while !rest.is_empty() {
                let message = NetlinkBuffer::new_checked(rest)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let length = message.length() as usize;
                if message.sequence_number() == sequence {
                    match message.message_type() {
                        NLMSG_DONE => return Ok(()),
                        NLMSG_ERROR => {
                            let code = message
                                .payload()
                                .first_chunk::<4>()
                                .map_or(0, |b| i32::from_ne_bytes(*b));
                            return Err(if code < 0 {
                                io::Error::from_raw_os_error(-code)
                            } else {
                                io::Error::other("netlink dump refused")
                            });
                        }
                        _ => each(message.payload())?,
                    }
                }
                rest = rest.get(length.next_multiple_of(4)..).unwrap_or_default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use netlink_packet_route::address::{AddressAttribute, AddressMessage};
    use netlink_packet_route::link::LinkMessage;
    use rtnetlink::packet_core::{NLM_F_ACK, NLM_F_REQUEST};
    use std::net::{IpAddr, Ipv4Addr};

    /// Requests that change nothing on the host: reading the loopback link, and deleting
    /// an address it does not have (TEST-NET-1), which the kernel refuses.
    fn get_lo() -> NetlinkMessage<RouteNetlinkMessage> {
        let mut link = LinkMessage::default();
        link.header.index = 1;
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::GetLink(link));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        request
    }

    fn delete_absent_address() -> NetlinkMessage<RouteNetlinkMessage> {
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 77));
        let mut address = AddressMessage::default();
        address.header.family = netlink_packet_route::AddressFamily::Inet;
        address.header.prefix_len = 32;
        address.header.index = 1;
        address.attributes.push(AddressAttribute::Local(ip));
        address.attributes.push(AddressAttribute::Address(ip));
        let mut request = NetlinkMessage::from(RouteNetlinkMessage::DelAddress(address));
        request.header.flags = NLM_F_REQUEST | NLM_F_ACK;
        request
    }

    #[test]
    fn a_batch_answers_every_request_in_order_past_a_failed_one() {
        let mut socket = BatchSocket::open().expect("route netlink socket");
        let answers = socket
            .send(vec![get_lo(), delete_absent_address(), get_lo()])
            .expect("answers");
        assert_eq!(answers.len(), 3);
        assert!(answers[0].is_none(), "{answers:?}");
        assert!(answers[1].is_some(), "the delete must fail: {answers:?}");
        assert!(answers[2].is_none(), "{answers:?}");
        // The next batch starts after the answers of this one.
        let again = socket.send(vec![get_lo()]).expect("answers");
        assert_eq!(again.len(), 1);
        assert!(again[0].is_none(), "{again:?}");
    }
}
