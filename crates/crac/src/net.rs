//! Sockets: what `/proc/net/*` says about a socket inode.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// A socket, as found in `/proc/net/*` by its inode.
///
/// Descriptions (the `Display` form), by kind:
///
/// | Kind | Description |
/// |---|---|
/// | TCP over IPv4 | `TCP socket 127.0.0.1:40000 -> 127.0.0.1:8080 (established)`, `TCP socket 0.0.0.0:8080 (listening)` |
/// | TCP over IPv6 | `TCPv6 socket [::1]:8080 (listening)` |
/// | UDP | `UDP socket 127.0.0.1:5000 (unconnected)`, `UDPv6 socket [::1]:5000 -> [::1]:6000 (connected)` |
/// | raw IP | `raw socket 0.0.0.0 (protocol 1)`, `rawv6 socket :: (protocol 58)` |
/// | Unix stream | `Unix socket /tmp/x.sock (listening)`, `unnamed Unix socket (connected)` |
/// | Unix datagram / seqpacket | `Unix datagram socket /tmp/d.sock (unconnected)`, `unnamed Unix seqpacket socket (connected)` |
/// | netlink | `netlink socket (protocol 0)` |
/// | packet | `packet socket` |
/// | not found | `socket:[12345] (socket)` |
///
/// The peer is shown only when connected. Abstract Unix names start with `@`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SocketInfo {
    /// A TCP socket.
    Tcp {
        /// Local address.
        local: SocketAddr,
        /// Peer address, if connected.
        peer: Option<SocketAddr>,
        /// Connection state.
        state: TcpState,
    },
    /// A UDP (or UDP-Lite) socket.
    Udp {
        /// Local address.
        local: SocketAddr,
        /// Peer address, if connected.
        peer: Option<SocketAddr>,
    },
    /// A raw IP socket.
    Raw {
        /// Local address.
        local: IpAddr,
        /// IP protocol number.
        protocol: u16,
    },
    /// A Unix domain socket.
    Unix {
        /// Bound path (`@name` for abstract names), if any.
        path: Option<String>,
        /// Stream, datagram or seqpacket.
        socket_type: UnixSocketType,
        /// State.
        state: UnixSocketState,
    },
    /// A netlink socket.
    Netlink {
        /// Netlink protocol (family) number.
        protocol: u32,
    },
    /// A packet (`AF_PACKET`) socket.
    Packet,
    /// A socket not listed in any `/proc/net` file this library reads.
    Unknown {
        /// The socket's inode.
        inode: u64,
    },
}

/// TCP connection states, as in `/proc/net/tcp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TcpState {
    /// `ESTABLISHED`: connected.
    Established,
    /// `SYN_SENT`: connecting.
    SynSent,
    /// `SYN_RECV`: being accepted.
    SynReceived,
    /// `FIN_WAIT1`: closing, our FIN sent.
    FinWait1,
    /// `FIN_WAIT2`: closing, our FIN acknowledged.
    FinWait2,
    /// `TIME_WAIT`: closed, waiting for stray packets.
    TimeWait,
    /// `CLOSE`: not connected (also a socket neither bound nor connected).
    Closed,
    /// `CLOSE_WAIT`: the peer closed.
    CloseWait,
    /// `LAST_ACK`: closing after the peer closed.
    LastAck,
    /// `LISTEN`: accepting connections.
    Listening,
    /// `CLOSING`: both sides closing at once.
    Closing,
    /// `NEW_SYN_RECV`: a request socket.
    NewSynReceived,
    /// A state number this library does not know.
    Other(u8),
}

impl TcpState {
    fn from_proc(st: u8) -> Self {
        match st {
            1 => TcpState::Established,
            2 => TcpState::SynSent,
            3 => TcpState::SynReceived,
            4 => TcpState::FinWait1,
            5 => TcpState::FinWait2,
            6 => TcpState::TimeWait,
            7 => TcpState::Closed,
            8 => TcpState::CloseWait,
            9 => TcpState::LastAck,
            10 => TcpState::Listening,
            11 => TcpState::Closing,
            12 => TcpState::NewSynReceived,
            other => TcpState::Other(other),
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            TcpState::Established => "established",
            TcpState::SynSent => "syn-sent",
            TcpState::SynReceived => "syn-received",
            TcpState::FinWait1 => "fin-wait-1",
            TcpState::FinWait2 => "fin-wait-2",
            TcpState::TimeWait => "time-wait",
            TcpState::Closed => "closed",
            TcpState::CloseWait => "close-wait",
            TcpState::LastAck => "last-ack",
            TcpState::Listening => "listening",
            TcpState::Closing => "closing",
            TcpState::NewSynReceived => "new-syn-received",
            TcpState::Other(n) => return write!(f, "state {n}"),
        };
        f.write_str(name)
    }
}

/// Unix socket types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnixSocketType {
    /// `SOCK_STREAM`.
    Stream,
    /// `SOCK_DGRAM`.
    Datagram,
    /// `SOCK_SEQPACKET`.
    Seqpacket,
    /// Another type number.
    Other(u16),
}

/// Unix socket states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnixSocketState {
    /// Accepting connections.
    Listening,
    /// Not connected.
    Unconnected,
    /// Connecting.
    Connecting,
    /// Connected.
    Connected,
    /// Disconnecting.
    Disconnecting,
    /// A state number this library does not know.
    Other(u8),
}

impl fmt::Display for UnixSocketState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            UnixSocketState::Listening => "listening",
            UnixSocketState::Unconnected => "unconnected",
            UnixSocketState::Connecting => "connecting",
            UnixSocketState::Connected => "connected",
            UnixSocketState::Disconnecting => "disconnecting",
            UnixSocketState::Other(n) => return write!(f, "state {n}"),
        };
        f.write_str(name)
    }
}

impl fmt::Display for SocketInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SocketInfo::Tcp { local, peer, state } => {
                let name = if local.is_ipv6() { "TCPv6" } else { "TCP" };
                write!(f, "{name} socket {local}")?;
                if let Some(peer) = peer {
                    write!(f, " -> {peer}")?;
                }
                write!(f, " ({state})")
            }
            SocketInfo::Udp { local, peer } => {
                let name = if local.is_ipv6() { "UDPv6" } else { "UDP" };
                write!(f, "{name} socket {local}")?;
                match peer {
                    Some(peer) => write!(f, " -> {peer} (connected)"),
                    None => f.write_str(" (unconnected)"),
                }
            }
            SocketInfo::Raw { local, protocol } => {
                let name = if local.is_ipv6() { "rawv6" } else { "raw" };
                write!(f, "{name} socket {local} (protocol {protocol})")
            }
            SocketInfo::Unix {
                path,
                socket_type,
                state,
            } => {
                let kind = match socket_type {
                    UnixSocketType::Stream => "Unix socket".to_owned(),
                    UnixSocketType::Datagram => "Unix datagram socket".to_owned(),
                    UnixSocketType::Seqpacket => "Unix seqpacket socket".to_owned(),
                    UnixSocketType::Other(n) => format!("Unix socket of type {n}"),
                };
                match path {
                    Some(path) => write!(f, "{kind} {path} ({state})"),
                    None => write!(f, "unnamed {kind} ({state})"),
                }
            }
            SocketInfo::Netlink { protocol } => write!(f, "netlink socket (protocol {protocol})"),
            SocketInfo::Packet => f.write_str("packet socket"),
            SocketInfo::Unknown { inode } => write!(f, "socket:[{inode}] (socket)"),
        }
    }
}

/// Socket inode → socket, from every `/proc/net` file we understand.
#[derive(Debug, Default)]
pub(crate) struct SocketTable {
    sockets: HashMap<u64, SocketInfo>,
}

impl SocketTable {
    /// Reads `/proc/self/net/*`. Files that are missing (no IPv6, say) or
    /// unreadable are skipped.
    pub(crate) fn load() -> Self {
        let mut table = SocketTable::default();
        let read = |name: &str| fs::read_to_string(format!("/proc/self/net/{name}")).ok();
        for (name, kind) in [
            ("tcp", InetKind::Tcp),
            ("tcp6", InetKind::Tcp),
            ("udp", InetKind::Udp),
            ("udp6", InetKind::Udp),
            ("udplite", InetKind::Udp),
            ("udplite6", InetKind::Udp),
            ("raw", InetKind::Raw),
            ("raw6", InetKind::Raw),
        ] {
            if let Some(text) = read(name) {
                table.add_inet(&text, kind);
            }
        }
        if let Some(text) = read("unix") {
            table.add_unix(&text);
        }
        if let Some(text) = read("netlink") {
            table.add_netlink(&text);
        }
        if let Some(text) = read("packet") {
            table.add_packet(&text);
        }
        table
    }

    pub(crate) fn get(&self, inode: u64) -> SocketInfo {
        self.sockets
            .get(&inode)
            .cloned()
            .unwrap_or(SocketInfo::Unknown { inode })
    }

    fn add_inet(&mut self, text: &str, kind: InetKind) {
        for line in text.lines().skip(1) {
            if let Some((inode, socket)) = parse_inet_line(line, kind) {
                self.sockets.entry(inode).or_insert(socket);
            }
        }
    }

    fn add_unix(&mut self, text: &str) {
        for line in text.lines().skip(1) {
            if let Some((inode, socket)) = parse_unix_line(line) {
                self.sockets.entry(inode).or_insert(socket);
            }
        }
    }

    fn add_netlink(&mut self, text: &str) {
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(protocol), Some(inode)) = (fields.get(1), fields.get(9)) else {
                continue;
            };
            if let (Ok(protocol), Ok(inode)) = (protocol.parse(), inode.parse()) {
                self.sockets
                    .entry(inode)
                    .or_insert(SocketInfo::Netlink { protocol });
            }
        }
    }

    fn add_packet(&mut self, text: &str) {
        for line in text.lines().skip(1) {
            if let Some(Ok(inode)) = line.split_whitespace().nth(8).map(str::parse) {
                self.sockets.entry(inode).or_insert(SocketInfo::Packet);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum InetKind {
    Tcp,
    Udp,
    Raw,
}

/// Parses one line of `/proc/net/{tcp,udp,raw}{,6}`:
/// `sl local rem st tx:rx tr:when retrnsmt uid timeout inode ...`.
fn parse_inet_line(line: &str, kind: InetKind) -> Option<(u64, SocketInfo)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local = parse_inet_addr(fields.get(1)?)?;
    let remote = parse_inet_addr(fields.get(2)?)?;
    let st = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    let inode: u64 = fields.get(9)?.parse().ok()?;
    let peer = (!remote.ip().is_unspecified() || remote.port() != 0).then_some(remote);
    let socket = match kind {
        InetKind::Tcp => SocketInfo::Tcp {
            local,
            peer,
            state: TcpState::from_proc(st),
        },
        InetKind::Udp => SocketInfo::Udp {
            local,
            peer: if st == 1 { peer } else { None },
        },
        InetKind::Raw => SocketInfo::Raw {
            local: local.ip(),
            protocol: local.port(),
        },
    };
    Some((inode, socket))
}

/// Parses `0100007F:1F90` (IPv4) or 32 hex digits `:port` (IPv6). The address
/// is printed as 32-bit words in host byte order.
fn parse_inet_addr(s: &str) -> Option<SocketAddr> {
    let (addr, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = addr.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// `__SO_ACCEPTCON` in the flags column of `/proc/net/unix`.
const SO_ACCEPTCON: u32 = 1 << 16;

/// Parses one line of `/proc/net/unix`:
/// `Num: RefCount Protocol Flags Type St Inode [Path]`. The inode is padded
/// and the path may contain spaces, so fields are split by hand.
fn parse_unix_line(line: &str) -> Option<(u64, SocketInfo)> {
    let mut rest = line;
    let mut fields = [""; 7];
    for field in &mut fields {
        rest = rest.trim_start_matches(' ');
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let flags = u32::from_str_radix(fields[3], 16).ok()?;
    let socket_type = match u16::from_str_radix(fields[4], 16).ok()? {
        1 => UnixSocketType::Stream,
        2 => UnixSocketType::Datagram,
        5 => UnixSocketType::Seqpacket,
        other => UnixSocketType::Other(other),
    };
    let st = u8::from_str_radix(fields[5], 16).ok()?;
    let inode = fields[6].parse().ok()?;
    let path = rest.strip_prefix(' ').filter(|p| !p.is_empty());
    let state = if flags & SO_ACCEPTCON != 0 {
        UnixSocketState::Listening
    } else {
        match st {
            1 => UnixSocketState::Unconnected,
            2 => UnixSocketState::Connecting,
            3 => UnixSocketState::Connected,
            4 => UnixSocketState::Disconnecting,
            other => UnixSocketState::Other(other),
        }
    };
    Some((
        inode,
        SocketInfo::Unix {
            path: path.map(str::to_owned),
            socket_type,
            state,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_lines() {
        let line = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 \
                    00000000  1000        0 12345 1 0000000000000000 100 0 0 10 0";
        let (inode, s) = parse_inet_line(line, InetKind::Tcp).unwrap();
        assert_eq!(inode, 12345);
        assert_eq!(s.to_string(), "TCP socket 127.0.0.1:8080 (listening)");
        let line = "   1: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 \
                    00000000  1000        0 777 1";
        let (_, s) = parse_inet_line(line, InetKind::Tcp).unwrap();
        assert_eq!(
            s.to_string(),
            "TCP socket 127.0.0.1:40000 -> 127.0.0.1:8080 (established)"
        );
    }

    #[test]
    fn tcp6_lines() {
        let line = "   0: 00000000000000000000000001000000:1F90 \
                    00000000000000000000000000000000:0000 0A 00000000:00000000 \
                    00:00000000 00000000  1000        0 99 1";
        let (inode, s) = parse_inet_line(line, InetKind::Tcp).unwrap();
        assert_eq!(inode, 99);
        assert_eq!(s.to_string(), "TCPv6 socket [::1]:8080 (listening)");
    }

    #[test]
    fn udp_and_raw_lines() {
        let line = "  1: 0100007F:1388 00000000:0000 07 00000000:00000000 00:00000000 \
                    00000000  1000        0 5 2 0000000000000000 0";
        let (_, s) = parse_inet_line(line, InetKind::Udp).unwrap();
        assert_eq!(s.to_string(), "UDP socket 127.0.0.1:5000 (unconnected)");
        let line = "  1: 0100007F:1388 0100007F:1770 01 00000000:00000000 00:00000000 \
                    00000000  1000        0 5 2 0000000000000000 0";
        let (_, s) = parse_inet_line(line, InetKind::Udp).unwrap();
        assert_eq!(
            s.to_string(),
            "UDP socket 127.0.0.1:5000 -> 127.0.0.1:6000 (connected)"
        );
        let line = "  1: 00000000:0001 00000000:0000 07 00000000:00000000 00:00000000 \
                    00000000     0        0 8 2 0000000000000000 0";
        let (_, s) = parse_inet_line(line, InetKind::Raw).unwrap();
        assert_eq!(s.to_string(), "raw socket 0.0.0.0 (protocol 1)");
    }

    #[test]
    fn unix_lines() {
        let (inode, s) = parse_unix_line(
            "00000000645ea2f1: 00000002 00000000 00010000 0001 01  1063 /tmp/a b.sock",
        )
        .unwrap();
        assert_eq!(inode, 1063);
        assert_eq!(s.to_string(), "Unix socket /tmp/a b.sock (listening)");
        let (_, s) =
            parse_unix_line("00000000645ea2f1: 00000003 00000000 00000000 0001 03 77").unwrap();
        assert_eq!(s.to_string(), "unnamed Unix socket (connected)");
        let (_, s) =
            parse_unix_line("00000000645ea2f1: 00000002 00000000 00000000 0002 01 78 @abs")
                .unwrap();
        assert_eq!(s.to_string(), "Unix datagram socket @abs (unconnected)");
    }

    #[test]
    fn netlink_and_packet_tables() {
        let mut t = SocketTable::default();
        t.add_netlink(
            "sk               Eth Pid        Groups   Rmem     Wmem     Dump  Locks    Drops    Inode\n\
             000000001bd9d604 0   0          00000000 0        0        0     2        0        4       \n",
        );
        t.add_packet(
            "sk       RefCnt Type Proto  Iface R Rmem   User   Inode\n\
             ffff88 3      3    0003   0     1 0      0      321\n",
        );
        assert_eq!(t.get(4).to_string(), "netlink socket (protocol 0)");
        assert_eq!(t.get(321).to_string(), "packet socket");
        assert_eq!(t.get(5).to_string(), "socket:[5] (socket)");
    }
}
