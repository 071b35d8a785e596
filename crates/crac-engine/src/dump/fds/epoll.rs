//! epoll: the interest list (fdinfo `tfd: events: data:` lines), with each
//! target's events (`EPOLLET`, `EPOLLONESHOT`, `EPOLLEXCLUSIVE` included; a
//! one-shot entry that fired shows, and comes back, without its event
//! bits) and data word.
//!
//! An epoll refers to its targets by descriptor number, so it is rebuilt
//! after them, an epoll inside another before the outer one. Each entry's
//! file must still be the descriptor with that number
//! (`kcmp(KCMP_EPOLL_TFD)`): an entry left behind by a descriptor closed
//! after a `dup` cannot be rebuilt, and such an epoll is not carried.

use crac_image::{FdRecord, FD_EPOLL};
use crac_sys::{fdobj, Errno};

use super::{place, read_fdinfo, Carried, FdFailure, State, CHANGED};

const EPOLL_CLOEXEC: i32 = 0o2000000;

/// One interest-list entry.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Target descriptor number.
    pub fd: i32,
    /// Event mask with the mode bits.
    pub events: u32,
    /// Data word.
    pub data: u64,
}

/// An epoll's state.
#[derive(Debug)]
pub struct Epoll {
    /// 0 if no target is an epoll, else one more than the deepest target.
    pub depth: u32,
    /// Scratch for the fdinfo text.
    text: Box<[u8]>,
    /// Entries (`len` valid).
    entries: Box<[Entry]>,
    len: usize,
    /// The entries as the record stores them (16 bytes each).
    extra: Box<[u8]>,
}

/// Plans an epoll: its interest list must be readable and every entry's
/// target the descriptor of that number.
pub fn plan(fd: i32) -> Option<Epoll> {
    let text = std::fs::read(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let n = text
        .split(|&b| b == b'\n')
        .filter(|l| l.starts_with(b"tfd:"))
        .count();
    let cap = n * 2 + 16;
    let mut e = Epoll {
        depth: 0,
        text: vec![0u8; text.len() * 2 + 4096].into_boxed_slice(),
        entries: vec![Entry::default(); cap].into_boxed_slice(),
        len: 0,
        extra: vec![0u8; cap * 16].into_boxed_slice(),
    };
    e.read_list(fd).ok()?;
    Some(e)
}

/// Drops epolls with a target the dump does not carry (stdio aside) and
/// sets each one's nesting depth. Repeats: dropping an epoll may leave
/// another one with a target gone.
pub fn keep_complete(fds: &mut Vec<Carried>) {
    loop {
        let before = fds.len();
        let carried: Vec<i32> = fds.iter().map(|c| c.fd).collect();
        fds.retain(|c| match &c.state {
            State::Epoll(e) => e
                .targets()
                .all(|t| t <= 2 || carried.binary_search(&t).is_ok()),
            State::Dup { of, .. } => carried.binary_search(of).is_ok(),
            _ => true,
        });
        if fds.len() == before {
            break;
        }
    }
    // The kernel refuses loops, so depths settle within as many rounds as
    // there are epolls.
    for _ in 0..fds.len() {
        let mut changed = false;
        for i in 0..fds.len() {
            let State::Epoll(e) = &fds[i].state else {
                continue;
            };
            let depth = e
                .targets()
                .filter_map(|t| depth_of(fds, t))
                .map(|d| d + 1)
                .max()
                .unwrap_or(0);
            if let State::Epoll(e) = &mut fds[i].state {
                if e.depth != depth {
                    e.depth = depth;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// The nesting depth of carried descriptor `fd` if it is an epoll (or a
/// duplicate of one).
fn depth_of(fds: &[Carried], fd: i32) -> Option<u32> {
    fds.iter()
        .find(|c| c.fd == fd)
        .and_then(|c| match &c.state {
            State::Epoll(e) => Some(e.depth),
            State::Dup { of, .. } => depth_of(fds, *of),
            _ => None,
        })
}

/// While threads are stopped: reads every epoll's interest list again.
/// A target that is not carried, or one not rebuilt before the epoll (an
/// epoll nested during the dump), is a failure (the latter makes the dump
/// try again). Allocation-free.
pub fn capture_all(fds: &mut [Carried]) -> Result<(), FdFailure> {
    for i in 0..fds.len() {
        let (before, rest) = fds.split_at_mut(i);
        let (c, after) = rest.split_first_mut().expect("i < len");
        let rank = c.state.rank();
        let State::Epoll(e) = &mut c.state else {
            continue;
        };
        e.read_list(c.fd)?;
        for t in e.targets() {
            if t <= 2 {
                continue;
            }
            let target = before.iter().chain(after.iter()).find(|o| o.fd == t);
            match target {
                None => return Err(("carry an epoll watching a descriptor not carried", Errno(9))),
                Some(o) if o.state.rank() >= rank => {
                    return Err(("order epolls nested during the dump", CHANGED));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

impl Epoll {
    /// Target descriptor numbers.
    fn targets(&self) -> impl Iterator<Item = i32> + '_ {
        self.entries[..self.len].iter().map(|e| e.fd)
    }

    /// Reads the interest list from fdinfo into the entry buffer and checks
    /// each target. Allocation-free.
    fn read_list(&mut self, fd: i32) -> Result<(), FdFailure> {
        let room = self.text.len();
        let text = read_fdinfo(fd, &mut self.text)?;
        if text.len() == room {
            return Err(("read an epoll's interest list that grew", CHANGED));
        }
        self.len = 0;
        for line in text
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"tfd:"))
        {
            let entry = parse_entry(line).ok_or(("understand an epoll's fdinfo", Errno::EINVAL))?;
            if self.len == self.entries.len() {
                return Err(("read an epoll's interest list that grew", CHANGED));
            }
            // Entries for one number come in the kernel's order, the order
            // kcmp counts them in.
            let toff = self.entries[..self.len]
                .iter()
                .filter(|x| x.fd == entry.fd)
                .count() as u32;
            let same = fdobj::epoll_target_is(entry.fd, fd, entry.fd, toff)
                .map_err(|e| ("compare an epoll target with its descriptor", e))?;
            if !same {
                return Err(("carry an epoll watching a closed descriptor", Errno(9)));
            }
            let x = &mut self.extra[self.len * 16..self.len * 16 + 16];
            x[..4].copy_from_slice(&(entry.fd as u32).to_le_bytes());
            x[4..8].copy_from_slice(&entry.events.to_le_bytes());
            x[8..].copy_from_slice(&entry.data.to_le_bytes());
            self.entries[self.len] = entry;
            self.len += 1;
        }
        Ok(())
    }

    /// Fills the record: the interest list in `extra`.
    pub fn record<'a>(&'a self, r: &mut FdRecord<'a>) {
        r.kind = FD_EPOLL;
        r.values = [self.len as u64, u64::from(self.depth), 0, 0];
        r.extra = &self.extra[..self.len * 16];
    }

    /// Rebuilds the epoll of `c` at its number with the interest list; its
    /// targets are in place. An entry that cannot be added (its target
    /// failed to come back) is left out and reported; the others stay.
    pub fn recreate(&self, c: &Carried, above: i32) -> Result<(), FdFailure> {
        let ep = fdobj::epoll_create1(EPOLL_CLOEXEC).map_err(|e| ("create an epoll", e))?;
        let mut first = Ok(());
        for x in &self.entries[..self.len] {
            if let Err(e) = fdobj::epoll_add(ep, x.fd, x.events, x.data) {
                if first.is_ok() {
                    first = Err(("add a target to an epoll", e));
                }
            }
        }
        place(ep, c, above).and(first)
    }
}

/// One `tfd: %8d events: %8x data: %16llx  pos:... ino:... sdev:...` line.
fn parse_entry(line: &[u8]) -> Option<Entry> {
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty());
    let mut value = |key: &[u8], radix: u32| {
        if words.next()? != key {
            return None;
        }
        super::parse_num(words.next()?, radix)
    };
    let fd = value(b"tfd:", 10)?;
    let events = value(b"events:", 16)?;
    let data = value(b"data:", 16)?;
    Some(Entry {
        fd: i32::try_from(fd).ok()?,
        events: u32::try_from(events).ok()?,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse() {
        let l = b"tfd:        5 events: 80000019 data: deadbeef00000001  pos:0 ino:1a sdev:f";
        assert_eq!(
            parse_entry(l),
            Some(Entry {
                fd: 5,
                events: 0x8000_0019,
                data: 0xdead_beef_0000_0001
            })
        );
        assert_eq!(parse_entry(b"tfd: x events: 1 data: 2"), None);
        assert_eq!(parse_entry(b"tfd: 1 events: 1"), None);
    }
}
