//! The policies file parser and matcher.

use std::net::SocketAddr;

use super::*;
use crate::net::UnixSocketType;

fn parse(text: &str) -> Policies {
    Policies::parse(Path::new("/etc/p.yaml"), text).unwrap()
}

fn errors(text: &str) -> Vec<String> {
    Policies::parse(Path::new("/etc/p.yaml"), text)
        .unwrap_err()
        .iter()
        .map(ToString::to_string)
        .collect()
}

fn file(fd: RawFd, path: &str) -> FdInfo {
    FdInfo::new(
        fd,
        FdKind::RegularFile {
            path: path.into(),
            deleted: false,
        },
    )
}

fn tcp(fd: RawFd, local: &str, peer: Option<&str>, state: TcpState) -> FdInfo {
    let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
    FdInfo::new(
        fd,
        FdKind::Socket(SocketInfo::Tcp {
            local: addr(local),
            peer: peer.map(addr),
            state,
        }),
    )
}

fn unix(fd: RawFd, path: Option<&str>, state: UnixSocketState) -> FdInfo {
    FdInfo::new(
        fd,
        FdKind::Socket(SocketInfo::Unix {
            path: path.map(str::to_owned),
            socket_type: UnixSocketType::Stream,
            state,
        }),
    )
}

/// The first line of the rule matching `info`, if any.
fn matching_line(p: &Policies, info: &FdInfo) -> Option<usize> {
    p.find(info).map(|r| r.at.lines().0)
}

#[test]
fn rules_comments_quotes_and_case() {
    let p = parse(
        "# leading comment\n\
         ---\n\
         type: File   # trailing comment\n\
         path: '/tmp/a#b'\n\
         action: CLOSE\n\
         warn: False\n\
         ---\n\
         \n\
         # a block with only comments is no rule\n\
         ---\n\
         type: \"pipe\"\n\
         action: ignore\n",
    );
    assert_eq!(p.rules.len(), 2);
    let r = &p.rules[0];
    assert_eq!(r.at.lines(), (3, 6));
    assert_eq!(r.at.to_string(), "lines 3-6 of /etc/p.yaml");
    assert_eq!(r.action, Action::Close);
    assert!(!r.warn);
    assert_eq!(matching_line(&p, &file(5, "/tmp/a#b")), Some(3));
    assert_eq!(p.rules[1].at.lines(), (11, 12));
    assert!(p.rules[1].warn);
    assert_eq!(
        matching_line(&p, &FdInfo::new(6, FdKind::Pipe { inode: 1 })),
        Some(11)
    );
    assert!(parse("").rules.is_empty());
    assert!(parse("---\n# nothing\n---\n").rules.is_empty());
}

#[test]
fn errors_name_file_and_lines() {
    assert_eq!(
        errors("action: close\npath: /x\n"),
        ["invalid rule in policies file /etc/p.yaml on lines 1-2: no 'type'"]
    );
    assert_eq!(
        errors("type: file\n---\n\ntype: pipe\n  # c\naction: close\n---\ntype: pipe\n"),
        [
            "invalid rule in policies file /etc/p.yaml on line 1: no 'action'",
            "invalid rule in policies file /etc/p.yaml on line 8: no 'action'",
        ]
    );
    let cases = [
        ("type: file\naction: keep\n", "unknown action 'keep' (known: error, ignore, close, reopen)"),
        ("type: fd\naction: close\n", "unknown type 'fd' (known: file, pipe, socket, filedescriptor)"),
        ("type: file\naction: close\nhello\n", "line 3 is not 'key: value'"),
        ("type: file\naction: close\n: x\n", "line 3 has no key"),
        ("type: file\ntype: pipe\naction: close\n", "'type' is given twice (line 2)"),
        ("type: file\naction: close\nwarn: maybe\n", "'warn' is 'maybe', not true or false"),
        ("type: pipe\naction: reopen\n", "action reopen is not available for type pipe (use error, ignore or close)"),
        ("type: filedescriptor\naction: reopen\n", "action reopen is not available for type filedescriptor (use error, ignore or close)"),
        ("type: pipe\npath: /x\naction: close\n", "unknown key 'path' for type pipe (it takes none besides type, action and warn)"),
        ("type: file\nlocalPort: 1\naction: close\n", "unknown key 'localPort' for type file (known: path)"),
        ("type: filedescriptor\nregex: .*\naction: close\n", "'regex' is not supported: use 'value: N'"),
        ("type: filedescriptor\nvalue: -1\naction: close\n", "'value' is '-1', not a descriptor number"),
        ("type: socket\nfamily: ipx\naction: close\n", "unknown family 'ipx' (known: ipv4, inet4, ipv6, inet6, ip, inet, unix)"),
        ("type: socket\nlocalAddress: localhost\naction: close\n", "'localAddress' is 'localhost', not an IP address or '*'"),
        ("type: socket\nremotePort: 70000\naction: close\n", "'remotePort' is '70000', not a port number or '*'"),
        ("type: file\npath: /a/[b\naction: close\n", "'path' is not a valid glob: Pattern syntax error near position 3: invalid range pattern"),
    ];
    for (text, reason) in cases {
        let lines = text.lines().count();
        let want =
            format!("invalid rule in policies file /etc/p.yaml on lines 1-{lines}: {reason}");
        assert_eq!(errors(text), [want], "{text:?}");
    }
}

#[test]
fn first_match_wins() {
    let p = parse(
        "type: file\npath: /var/log/app.log\naction: reopen\n---\n\
         type: file\npath: /var/log/*\naction: close\n---\n\
         type: filedescriptor\naction: error\n",
    );
    assert_eq!(matching_line(&p, &file(4, "/var/log/app.log")), Some(1));
    assert_eq!(matching_line(&p, &file(4, "/var/log/other.log")), Some(5));
    assert_eq!(matching_line(&p, &file(4, "/etc/passwd")), Some(9));
    assert_eq!(matching_line(&p, &FdInfo::new(9, FdKind::Epoll)), Some(9));
}

#[test]
fn path_globs() {
    let p = parse(
        "type: file\npath: /data/*.db\naction: close\n---\n\
         type: file\npath: /cache/**/x?\naction: close\n---\n\
         type: file\npath: /dev/[nz]*\naction: ignore\n",
    );
    let line = |path: &str| matching_line(&p, &file(4, path));
    assert_eq!(line("/data/a.db"), Some(1));
    assert_eq!(line("/data/sub/a.db"), None, "* stays in one component");
    assert_eq!(line("/cache/x1"), Some(5));
    assert_eq!(line("/cache/a/b/xy"), Some(5));
    assert_eq!(line("/cache/a/b/xyz"), None);
    assert_eq!(line("/dev/null"), Some(9));
    assert_eq!(line("/dev/zero"), Some(9));
    assert_eq!(line("/dev/tty"), None);
    // Every kind of file matches type file; other kinds do not.
    for kind in [
        FdKind::Directory {
            path: "/data/d.db".into(),
        },
        FdKind::Fifo {
            path: "/data/f.db".into(),
        },
        FdKind::CharDevice {
            path: "/data/c.db".into(),
        },
        FdKind::BlockDevice {
            path: "/data/b.db".into(),
        },
        FdKind::RegularFile {
            path: "/data/g.db".into(),
            deleted: true,
        },
    ] {
        assert_eq!(
            matching_line(&p, &FdInfo::new(4, kind.clone())),
            Some(1),
            "{kind:?}"
        );
    }
    assert_eq!(
        matching_line(&p, &FdInfo::new(4, FdKind::Pipe { inode: 3 })),
        None
    );
    // No path matches every file.
    let all = parse("type: file\naction: close\n");
    assert_eq!(matching_line(&all, &file(4, "/anything")), Some(1));
}

#[test]
fn filedescriptor_value() {
    let p = parse("type: filedescriptor\nvalue: 7\naction: ignore\n");
    assert_eq!(matching_line(&p, &FdInfo::new(7, FdKind::Inotify)), Some(1));
    assert_eq!(matching_line(&p, &file(7, "/x")), Some(1));
    assert_eq!(matching_line(&p, &FdInfo::new(8, FdKind::Inotify)), None);
}

#[test]
fn socket_addresses_ports_and_wildcards() {
    let p = parse(
        "type: socket\nfamily: ipv6\naction: close\n---\n\
         type: socket\nlocalAddress: 127.0.0.1\nlocalPort: 8080\nremotePort: '*'\naction: reopen\n---\n\
         type: socket\nremoteAddress: 10.0.0.1\nremotePort: 5432\naction: close\n---\n\
         type: socket\nfamily: inet\nremoteAddress: '*'\naction: ignore\n",
    );
    let est = TcpState::Established;
    let line = |info: FdInfo| matching_line(&p, &info);
    assert_eq!(line(tcp(5, "[::1]:80", None, TcpState::Listening)), Some(1));
    assert_eq!(
        line(tcp(5, "127.0.0.1:8080", None, TcpState::Listening)),
        Some(5)
    );
    assert_eq!(
        line(tcp(5, "127.0.0.1:8080", Some("1.2.3.4:9"), est)),
        Some(5)
    );
    assert_eq!(
        line(tcp(5, "127.0.0.1:8081", None, TcpState::Listening)),
        Some(16)
    );
    assert_eq!(
        line(tcp(5, "192.168.0.2:4000", Some("10.0.0.1:5432"), est)),
        Some(11)
    );
    assert_eq!(
        line(tcp(5, "192.168.0.2:4000", Some("10.0.0.1:5433"), est)),
        Some(16)
    );
    // A remote address needs a peer.
    let q = parse("type: socket\nremoteAddress: 10.0.0.1\naction: close\n");
    assert_eq!(
        matching_line(&q, &tcp(5, "10.0.0.1:1", None, TcpState::Listening)),
        None
    );
    // Unix sockets match only `unix` (or no family) and no address values.
    assert_eq!(
        line(unix(5, Some("/run/a.sock"), UnixSocketState::Listening)),
        None
    );
}

#[test]
fn ipv4_mapped_peers_count_as_ipv4() {
    let p = parse("type: socket\nfamily: ipv4\nremoteAddress: 127.0.0.1\naction: close\n");
    let mapped = tcp(
        5,
        "[::ffff:127.0.0.1]:8080",
        Some("[::ffff:127.0.0.1]:40000"),
        TcpState::Established,
    );
    assert_eq!(matching_line(&p, &mapped), Some(1));
}

#[test]
fn unix_socket_paths() {
    let p = parse(
        "type: socket\nfamily: unix\nlocalPath: /run/app/*.sock\naction: reopen\n---\n\
         type: socket\nremotePath: /run/db.sock\naction: close\n---\n\
         type: socket\nfamily: UNIX\nremotePath: '*'\naction: ignore\n",
    );
    let listening = UnixSocketState::Listening;
    let line = |info: FdInfo| matching_line(&p, &info);
    assert_eq!(line(unix(5, Some("/run/app/x.sock"), listening)), Some(1));
    assert_eq!(line(unix(5, Some("@abstract"), listening)), Some(10));
    assert_eq!(line(unix(5, None, UnixSocketState::Connected)), Some(10));
    // An IP socket is no Unix socket.
    assert_eq!(line(tcp(5, "127.0.0.1:1", None, TcpState::Listening)), None);
}

#[test]
fn decisions() {
    let p = parse(
        "type: socket\naction: reopen\nwarn: false\n---\n\
         type: file\naction: error\n---\n\
         type: pipe\naction: close\nwarn: false\n---\n\
         type: filedescriptor\naction: ignore\nwarn: false\n",
    );
    let listening = tcp(5, "0.0.0.0:80", None, TcpState::Listening);
    assert!(matches!(
        p.decide(&listening),
        Decision::Apply(FdPolicy::Reopen, _)
    ));
    let est = tcp(5, "1.1.1.1:80", Some("2.2.2.2:9"), TcpState::Established);
    let Decision::Refuse(PolicyRefusal::ReopenNotListening, at) = p.decide(&est) else {
        panic!("an established socket cannot be reopened")
    };
    assert_eq!(at.lines(), (1, 3));
    let reopen = parse("type: file\naction: reopen\n");
    let gone = FdInfo::new(
        4,
        FdKind::RegularFile {
            path: "/x".into(),
            deleted: true,
        },
    );
    assert!(matches!(
        reopen.decide(&gone),
        Decision::Refuse(PolicyRefusal::ReopenDeleted, _)
    ));
    let Decision::Refuse(PolicyRefusal::ActionError, at) = p.decide(&file(4, "/x")) else {
        panic!("action error refuses")
    };
    assert_eq!(at.to_string(), "lines 5-6 of /etc/p.yaml");
    assert!(matches!(
        p.decide(&FdInfo::new(6, FdKind::Pipe { inode: 2 })),
        Decision::Apply(FdPolicy::Close, _)
    ));
    assert!(matches!(
        p.decide(&FdInfo::new(7, FdKind::Inotify)),
        Decision::Apply(FdPolicy::Ignore, _)
    ));
    assert!(matches!(
        Policies::default().decide(&FdInfo::new(7, FdKind::Inotify)),
        Decision::Default
    ));
}

#[test]
fn hints_name_the_policy_type() {
    assert_eq!(
        hint(&file(4, "/x")),
        "close it in before_checkpoint or add a resource policy (type: file, action: close)"
    );
    assert_eq!(
        hint(&tcp(
            8,
            "127.0.0.1:5000",
            Some("127.0.0.1:41000"),
            TcpState::Established
        )),
        "close it in before_checkpoint or add a resource policy (type: socket, action: close)"
    );
    assert_eq!(
        hint(&FdInfo::new(9, FdKind::Inotify)),
        "close it in before_checkpoint or add a resource policy \
         (type: filedescriptor, value: 9, action: close)"
    );
}

#[test]
fn missing_and_unreadable_files() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.yaml");
    let e = Policies::load(Some(&missing)).unwrap_err();
    assert_eq!(
        e[0].to_string(),
        format!(
            "policies file {} named by CRAC_RESOURCE_POLICIES does not exist",
            missing.display()
        )
    );
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, b"type: file\naction: close\npath: /\xff\n").unwrap();
    assert_eq!(
        Policies::load(Some(&bad)).unwrap_err()[0].to_string(),
        format!(
            "cannot read policies file {} named by CRAC_RESOURCE_POLICIES: not UTF-8 at byte 32",
            bad.display()
        )
    );
    assert!(Policies::load(None).unwrap().rules.is_empty());
}
