//! Resource policies: what a checkpoint does with descriptors the program
//! left open, CRaC's `jdk.crac.resource-policies`.
//!
//! `CRAC_RESOURCE_POLICIES=FILE` names a file of rules in CRaC's own format,
//! a YAML subset: rules separated by lines `---`, `#` comments, one
//! `key: value` per line.
//!
//! ```text
//! # The access log is opened again at its offset after restore.
//! type: file
//! path: /var/log/app/*.log
//! action: reopen
//! ---
//! # Connections to the database are dropped; the pool reconnects.
//! type: socket
//! family: ipv4
//! remotePort: 5432
//! action: close
//! warn: false
//! ```
//!
//! `type` and `action` are required; their values are case-insensitive. For
//! each descriptor the open-descriptor check would look at (not stdio, not
//! inherited, not the library's own), the **first rule that matches wins**;
//! keys a rule leaves out match anything, and `*` matches anything too.
//!
//! | `type` | matches | keys | actions |
//! |---|---|---|---|
//! | `file` | regular files, directories, FIFOs, devices | `path` (glob) | `error`, `ignore`, `close`, `reopen` |
//! | `pipe` | anonymous pipes | — | `error`, `ignore`, `close` |
//! | `socket` | sockets | `family` (`ipv4`, `inet4`, `ipv6`, `inet6`, `ip`, `inet`, `unix`), `localAddress`, `localPort`, `remoteAddress`, `remotePort` (an IP address or port, or `*`), `localPath`, `remotePath` (Unix socket paths, globs) | `error`, `ignore`, `close`, `reopen` (listening sockets only) |
//! | `filedescriptor` | any descriptor | `value` (its number) | `error`, `ignore`, `close` |
//!
//! Every rule also takes `warn: true|false` (default true).
//!
//! Actions:
//!
//! * `error`: the checkpoint is refused while the descriptor is open, even
//!   if the engine could carry it.
//! * `close`: the restored process finds the descriptor closed at its
//!   number: a socket as a closed connection (reads give end-of-file), a
//!   file or pipe as a pipe end whose other end is closed.
//! * `ignore`: the restored process finds `/dev/null` at its number.
//! * `reopen`: a file is opened again by its path at the same offset; a
//!   listening socket listens again at its address.
//!
//! A rule with an action other than `error` prints a warning to stderr each
//! time it applies, unless it says `warn: false`.
//!
//! Globs are shell-like and match whole paths: `*` and `?` stay within one
//! path component, `**` (a component of its own) spans any number of
//! directories, `[abc]` and `[!abc]` match one character. Brace alternatives
//! (`{a,b}`) are not supported: write two rules. Abstract Unix socket names
//! start with `@`. The peer path of a connected Unix socket is not known
//! here, so `remotePath` other than `*` matches only sockets with a known
//! peer path, that is none.
//!
//! The file is read at every checkpoint, so a change applies to the next
//! one. After a restore the file the (possibly new) environment names is read
//! once to report problems early. An invalid file fails the checkpoint
//! before any resource is notified, naming the file and the rule's lines:
//! `invalid rule in policies file /etc/app/policies.yaml on lines 4-6: no
//! 'type'`.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use crac_engine::native::FdPolicy;

use crate::fds::{FdInfo, FdKind};
use crate::net::{SocketInfo, TcpState, UnixSocketState};

/// Longest policies file read; a longer one is an error rather than a
/// surprise allocation.
const MAX_FILE_LEN: u64 = 1 << 20;

/// A problem with the policies file. Fails the checkpoint before any
/// resource is notified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file named by `CRAC_RESOURCE_POLICIES` does not exist.
    #[error("policies file {} named by CRAC_RESOURCE_POLICIES does not exist", .file.display())]
    NotFound {
        /// The file.
        file: PathBuf,
    },
    /// The file cannot be read, is too long or is not UTF-8.
    #[error("cannot read policies file {} named by CRAC_RESOURCE_POLICIES: {reason}",
        .file.display())]
    Unreadable {
        /// The file.
        file: PathBuf,
        /// Why (the OS error, or what is wrong with the text).
        reason: String,
    },
    /// A rule is invalid.
    #[error("invalid rule in policies file {} on {}: {reason}", .file.display(),
        Lines(*.first_line, *.last_line))]
    InvalidRule {
        /// The file.
        file: PathBuf,
        /// The rule's first line (1-based).
        first_line: usize,
        /// The rule's last line.
        last_line: usize,
        /// What is wrong, e.g. `no 'type'`.
        reason: String,
    },
}

/// `lines a-b`, or `line a`.
struct Lines(usize, usize);

impl fmt::Display for Lines {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == self.1 {
            write!(f, "line {}", self.0)
        } else {
            write!(f, "lines {}-{}", self.0, self.1)
        }
    }
}

/// Where a rule is: its file and lines. Displays as `lines 4-6 of FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRef {
    file: PathBuf,
    first_line: usize,
    last_line: usize,
}

impl RuleRef {
    /// The policies file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The rule's first and last line (1-based).
    pub fn lines(&self) -> (usize, usize) {
        (self.first_line, self.last_line)
    }
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines = Lines(self.first_line, self.last_line);
        write!(f, "{lines} of {}", self.file.display())
    }
}

/// A rule's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Error,
    Ignore,
    Close,
    Reopen,
}

impl Action {
    fn parse(value: &str) -> Option<Action> {
        Some(match value.to_ascii_lowercase().as_str() {
            "error" => Action::Error,
            "ignore" => Action::Ignore,
            "close" => Action::Close,
            "reopen" => Action::Reopen,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Action::Error => "error",
            Action::Ignore => "ignore",
            Action::Close => "close",
            Action::Reopen => "reopen",
        }
    }
}

/// `*`, or a value that must be equal.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wild<T> {
    Any,
    Is(T),
}

/// What a rule matches.
#[derive(Debug)]
enum Matcher {
    File { path: Option<glob::Pattern> },
    Pipe,
    Socket(SocketMatcher),
    FileDescriptor { value: Option<RawFd> },
}

#[derive(Debug, Default)]
struct SocketMatcher {
    /// Accepted families (`None`: any).
    family: Option<Family>,
    local_address: Option<Wild<IpAddr>>,
    local_port: Option<Wild<u16>>,
    remote_address: Option<Wild<IpAddr>>,
    remote_port: Option<Wild<u16>>,
    local_path: Option<glob::Pattern>,
    remote_path: Option<glob::Pattern>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Ipv4,
    Ipv6,
    Ip,
    Unix,
}

/// One rule of a policies file.
#[derive(Debug)]
pub(crate) struct Rule {
    at: RuleRef,
    matcher: Matcher,
    action: Action,
    warn: bool,
}

/// The rules of one policies file, in order; empty without a file.
#[derive(Debug, Default)]
pub(crate) struct Policies {
    rules: Vec<Rule>,
}

/// What the check does with one descriptor.
#[derive(Debug)]
pub(crate) enum Decision {
    /// No rule matches: the engine's default applies.
    Default,
    /// A rule hands the descriptor to the engine with this policy.
    Apply(FdPolicy, &'static str),
    /// A rule refuses the checkpoint while the descriptor is open.
    Refuse(PolicyRefusal, RuleRef),
}

/// Why a resource policy refused a descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The rule's action is `error`.
    ActionError,
    /// The rule says `reopen` for a socket that is not listening.
    ReopenNotListening,
    /// The rule says `reopen` for a file that was deleted.
    ReopenDeleted,
}

impl fmt::Display for PolicyRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PolicyRefusal::ActionError => "refuses it (action: error)",
            PolicyRefusal::ReopenNotListening => {
                "says reopen, which only listening sockets can do (use action: close)"
            }
            PolicyRefusal::ReopenDeleted => {
                "says reopen, but the file was deleted (use action: close or ignore)"
            }
        })
    }
}

impl Policies {
    /// Reads and parses `file`; no file means no rules. Reports every
    /// invalid rule.
    pub(crate) fn load(file: Option<&Path>) -> Result<Policies, Vec<PolicyError>> {
        let Some(file) = file else {
            return Ok(Policies::default());
        };
        let text = read(file).map_err(|e| vec![e])?;
        Policies::parse(file, &text)
    }

    /// Parses the text of `file`.
    pub(crate) fn parse(file: &Path, text: &str) -> Result<Policies, Vec<PolicyError>> {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for block in blocks(text) {
            let at = RuleRef {
                file: file.to_owned(),
                first_line: block.first_line,
                last_line: block.last_line,
            };
            match parse_rule(&block.lines) {
                Ok((matcher, action, warn)) => rules.push(Rule {
                    at,
                    matcher,
                    action,
                    warn,
                }),
                Err(reason) => errors.push(PolicyError::InvalidRule {
                    file: at.file,
                    first_line: at.first_line,
                    last_line: at.last_line,
                    reason,
                }),
            }
        }
        if errors.is_empty() {
            Ok(Policies { rules })
        } else {
            Err(errors)
        }
    }

    /// The first rule matching `info`.
    pub(crate) fn find(&self, info: &FdInfo) -> Option<&Rule> {
        self.rules.iter().find(|r| r.matcher.matches(info))
    }

    /// What the check does with `info`. Prints the warning of a rule that
    /// applies a non-error action.
    pub(crate) fn decide(&self, info: &FdInfo) -> Decision {
        let Some(rule) = self.find(info) else {
            return Decision::Default;
        };
        let listening = matches!(
            info.kind(),
            FdKind::Socket(
                SocketInfo::Tcp {
                    state: TcpState::Listening,
                    ..
                } | SocketInfo::Unix {
                    state: UnixSocketState::Listening,
                    ..
                }
            )
        );
        let decision = match rule.action {
            Action::Error => Decision::Refuse(PolicyRefusal::ActionError, rule.at.clone()),
            Action::Reopen if matches!(info.kind(), FdKind::Socket(_)) && !listening => {
                Decision::Refuse(PolicyRefusal::ReopenNotListening, rule.at.clone())
            }
            Action::Reopen if matches!(info.kind(), FdKind::RegularFile { deleted: true, .. }) => {
                Decision::Refuse(PolicyRefusal::ReopenDeleted, rule.at.clone())
            }
            Action::Close => Decision::Apply(FdPolicy::Close, "closed"),
            Action::Ignore => Decision::Apply(FdPolicy::Ignore, "replaced by /dev/null"),
            Action::Reopen => Decision::Apply(FdPolicy::Reopen, "reopened"),
        };
        if let (Decision::Apply(_, what), true) = (&decision, rule.warn) {
            eprintln!(
                "crac: warning: file descriptor {} ({}) is {what} in the restored process \
                 (resource policy on {}, action: {}; add 'warn: false' to silence)",
                info.fd(),
                info.kind(),
                rule.at,
                rule.action.name()
            );
        }
        decision
    }
}

/// Reads the policies file with a bounded read.
fn read(file: &Path) -> Result<String, PolicyError> {
    let unreadable = |reason: String| PolicyError::Unreadable {
        file: file.to_owned(),
        reason,
    };
    let f = std::fs::File::open(file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => PolicyError::NotFound {
            file: file.to_owned(),
        },
        _ => unreadable(e.to_string()),
    })?;
    let mut bytes = Vec::new();
    f.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| unreadable(e.to_string()))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(unreadable(format!("longer than {MAX_FILE_LEN} bytes")));
    }
    String::from_utf8(bytes).map_err(|e| {
        unreadable(format!(
            "not UTF-8 at byte {}",
            e.utf8_error().valid_up_to()
        ))
    })
}

/// The meaningful lines of one rule.
struct Block {
    first_line: usize,
    last_line: usize,
    /// (line number, text without comment, trimmed).
    lines: Vec<(usize, String)>,
}

/// Splits the text at `---` lines into blocks of non-empty lines; blocks
/// with nothing but comments are dropped.
fn blocks(text: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut current: Option<Block> = None;
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw).trim();
        if line == "---" {
            blocks.extend(current.take());
            continue;
        }
        if line.is_empty() {
            continue;
        }
        let block = current.get_or_insert_with(|| Block {
            first_line: n,
            last_line: n,
            lines: Vec::new(),
        });
        block.last_line = n;
        block.lines.push((n, line.to_owned()));
    }
    blocks.extend(current);
    blocks
}

/// The line without a `#` comment: `#` at the start or after a blank.
fn strip_comment(line: &str) -> &str {
    let mut prev_blank = true;
    for (i, c) in line.char_indices() {
        if c == '#' && prev_blank {
            return &line[..i];
        }
        prev_blank = c.is_whitespace();
    }
    line
}

/// The keys of one rule, each once, values unquoted.
fn key_values(lines: &[(usize, String)]) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in lines {
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("line {n} is not 'key: value'"));
        };
        let key = key.trim();
        let value = unquote(value.trim());
        if key.is_empty() {
            return Err(format!("line {n} has no key"));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(format!("'{key}' is given twice (line {n})"));
        }
        out.push((key.to_owned(), value.to_owned()));
    }
    Ok(out)
}

fn unquote(value: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = value
            .strip_prefix(q)
            .and_then(|v| v.strip_suffix(q))
            .filter(|_| value.len() >= 2)
        {
            return inner;
        }
    }
    value
}

/// Parses one rule: what it matches, its action and whether it warns.
fn parse_rule(lines: &[(usize, String)]) -> Result<(Matcher, Action, bool), String> {
    let kv = key_values(lines)?;
    let get = |key: &str| kv.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let type_name = get("type").ok_or("no 'type'")?.to_ascii_lowercase();
    let action_text = get("action").ok_or("no 'action'")?;
    let action = Action::parse(action_text).ok_or_else(|| {
        format!("unknown action '{action_text}' (known: error, ignore, close, reopen)")
    })?;
    let warn = match get("warn").map(str::to_ascii_lowercase).as_deref() {
        None | Some("true") => true,
        Some("false") => false,
        Some(other) => return Err(format!("'warn' is '{other}', not true or false")),
    };
    let (keys, reopen): (&[&str], bool) = match type_name.as_str() {
        "file" => (&["path"], true),
        "pipe" => (&[], false),
        "socket" => (
            &[
                "family",
                "localAddress",
                "localPort",
                "remoteAddress",
                "remotePort",
                "localPath",
                "remotePath",
            ],
            true,
        ),
        "filedescriptor" => (&["value"], false),
        other => {
            return Err(format!(
                "unknown type '{other}' (known: file, pipe, socket, filedescriptor)"
            ))
        }
    };
    for (key, _) in &kv {
        if key == "regex" && type_name == "filedescriptor" {
            return Err("'regex' is not supported: use 'value: N'".to_owned());
        }
        if !["type", "action", "warn"].contains(&key.as_str()) && !keys.contains(&key.as_str()) {
            let known = if keys.is_empty() {
                "it takes none besides type, action and warn".to_owned()
            } else {
                format!("known: {}", keys.join(", "))
            };
            return Err(format!(
                "unknown key '{key}' for type {type_name} ({known})"
            ));
        }
    }
    if action == Action::Reopen && !reopen {
        return Err(format!(
            "action reopen is not available for type {type_name} (use error, ignore or close)"
        ));
    }
    let matcher = match type_name.as_str() {
        "file" => Matcher::File {
            path: get("path").map(|p| pattern("path", p)).transpose()?,
        },
        "pipe" => Matcher::Pipe,
        "socket" => Matcher::Socket(socket_matcher(&get)?),
        _ => Matcher::FileDescriptor {
            value: get("value")
                .map(|v| {
                    v.parse::<RawFd>()
                        .ok()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| format!("'value' is '{v}', not a descriptor number"))
                })
                .transpose()?,
        },
    };
    Ok((matcher, action, warn))
}

fn socket_matcher<'a>(get: &dyn Fn(&str) -> Option<&'a str>) -> Result<SocketMatcher, String> {
    let address = |key: &str| -> Result<Option<Wild<IpAddr>>, String> {
        get(key)
            .map(|v| wild(v, |v| v.trim_matches(['[', ']']).parse().ok()))
            .transpose()
            .map_err(|v| format!("'{key}' is '{v}', not an IP address or '*'"))
    };
    let port = |key: &str| -> Result<Option<Wild<u16>>, String> {
        get(key)
            .map(|v| wild(v, |v| v.parse().ok()))
            .transpose()
            .map_err(|v| format!("'{key}' is '{v}', not a port number or '*'"))
    };
    let family = get("family")
        .map(|f| match f.to_ascii_lowercase().as_str() {
            "ipv4" | "inet4" => Ok(Family::Ipv4),
            "ipv6" | "inet6" => Ok(Family::Ipv6),
            "ip" | "inet" => Ok(Family::Ip),
            "unix" => Ok(Family::Unix),
            _ => Err(format!(
                "unknown family '{f}' (known: ipv4, inet4, ipv6, inet6, ip, inet, unix)"
            )),
        })
        .transpose()?;
    Ok(SocketMatcher {
        family,
        local_address: address("localAddress")?,
        local_port: port("localPort")?,
        remote_address: address("remoteAddress")?,
        remote_port: port("remotePort")?,
        local_path: get("localPath")
            .map(|p| pattern("localPath", p))
            .transpose()?,
        remote_path: get("remotePath")
            .map(|p| pattern("remotePath", p))
            .transpose()?,
    })
}

/// `*` or a value `parse` accepts; the text back as the error.
fn wild<T>(v: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Wild<T>, String> {
    if v == "*" {
        return Ok(Wild::Any);
    }
    parse(v).map(Wild::Is).ok_or_else(|| v.to_owned())
}

fn pattern(key: &str, glob: &str) -> Result<glob::Pattern, String> {
    glob::Pattern::new(glob).map_err(|e| format!("'{key}' is not a valid glob: {e}"))
}

const GLOB: glob::MatchOptions = glob::MatchOptions {
    case_sensitive: true,
    // `*` stays within one path component, as in CRaC's (Java's) globs.
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

fn glob_matches(pattern: &glob::Pattern, path: &Path) -> bool {
    pattern.as_str() == "*" || pattern.matches_path_with(path, GLOB)
}

impl Matcher {
    fn matches(&self, info: &FdInfo) -> bool {
        match (self, info.kind()) {
            (Matcher::FileDescriptor { value }, _) => value.is_none_or(|v| v == info.fd()),
            (Matcher::Pipe, FdKind::Pipe { .. }) => true,
            (
                Matcher::File { path: pattern },
                FdKind::RegularFile { path, .. }
                | FdKind::Directory { path }
                | FdKind::Fifo { path }
                | FdKind::CharDevice { path }
                | FdKind::BlockDevice { path },
            ) => pattern.as_ref().is_none_or(|p| glob_matches(p, path)),
            (Matcher::Socket(m), FdKind::Socket(s)) => m.matches(s),
            _ => false,
        }
    }
}

impl SocketMatcher {
    fn matches(&self, socket: &SocketInfo) -> bool {
        let (local, peer) = match socket {
            SocketInfo::Tcp { local, peer, .. } | SocketInfo::Udp { local, peer } => (
                Some((local.ip(), local.port())),
                peer.map(|p| (p.ip(), p.port())),
            ),
            SocketInfo::Raw { local, .. } => (Some((*local, 0)), None),
            SocketInfo::Unix { path, .. } => return self.matches_unix(path.as_deref()),
            _ => {
                return self.family.is_none()
                    && self.is_any_ip()
                    && self.local_path.is_none()
                    && self.remote_path.is_none()
            }
        };
        let family_ok = match (self.family, local) {
            (None | Some(Family::Ip), _) => true,
            (Some(Family::Unix), _) | (_, None) => false,
            (Some(Family::Ipv4), Some((ip, _))) => to_v4(ip).is_ipv4(),
            (Some(Family::Ipv6), Some((ip, _))) => ip.is_ipv6(),
        };
        let path_ok = [&self.local_path, &self.remote_path]
            .iter()
            .all(|p| p.as_ref().is_none_or(|p| p.as_str() == "*"));
        family_ok
            && path_ok
            && ip_matches(&self.local_address, &self.local_port, local)
            && ip_matches(&self.remote_address, &self.remote_port, peer)
    }

    fn matches_unix(&self, path: Option<&str>) -> bool {
        let family_ok = matches!(self.family, None | Some(Family::Unix));
        let local_ok = self.local_path.as_ref().is_none_or(|p| {
            p.as_str() == "*" || path.is_some_and(|path| glob_matches(p, Path::new(path)))
        });
        // The peer's path is not known (see the module docs).
        let remote_ok = self.remote_path.as_ref().is_none_or(|p| p.as_str() == "*");
        family_ok && local_ok && remote_ok && self.is_any_ip()
    }

    /// Whether no address or port key asks for a particular value.
    fn is_any_ip(&self) -> bool {
        [&self.local_address, &self.remote_address]
            .iter()
            .all(|a| matches!(a, None | Some(Wild::Any)))
            && [&self.local_port, &self.remote_port]
                .iter()
                .all(|p| matches!(p, None | Some(Wild::Any)))
    }
}

/// An IPv4-mapped IPv6 address as IPv4 (a dual-stack socket's IPv4 peer).
fn to_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn ip_matches(
    address: &Option<Wild<IpAddr>>,
    port: &Option<Wild<u16>>,
    actual: Option<(IpAddr, u16)>,
) -> bool {
    let address_ok = match (address, actual) {
        (None | Some(Wild::Any), _) => true,
        (Some(Wild::Is(want)), Some((ip, _))) => to_v4(*want) == to_v4(ip),
        (Some(Wild::Is(_)), None) => false,
    };
    let port_ok = match (port, actual) {
        (None | Some(Wild::Any), _) => true,
        (Some(Wild::Is(want)), Some((_, p))) => *want == p,
        (Some(Wild::Is(_)), None) => false,
    };
    address_ok && port_ok
}

/// The hint of a refused descriptor: how to let it through.
pub(crate) fn hint(info: &FdInfo) -> String {
    let rule = match info.kind() {
        FdKind::RegularFile { .. }
        | FdKind::Directory { .. }
        | FdKind::Fifo { .. }
        | FdKind::CharDevice { .. }
        | FdKind::BlockDevice { .. } => "type: file".to_owned(),
        FdKind::Pipe { .. } => "type: pipe".to_owned(),
        FdKind::Socket(_) => "type: socket".to_owned(),
        _ => format!("type: filedescriptor, value: {}", info.fd()),
    };
    format!("close it in before_checkpoint or add a resource policy ({rule}, action: close)")
}

/// After a restore: reads the policies file the environment now names, so
/// that a problem shows at once rather than at the next checkpoint.
pub(crate) fn report_after_restore() {
    let file = std::env::var_os(crate::config::RESOURCE_POLICIES_VAR).filter(|v| !v.is_empty());
    if let Err(errors) = Policies::load(file.as_deref().map(Path::new)) {
        for e in errors {
            eprintln!("crac: warning: {e}; the next checkpoint will fail");
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
