//! The pager's book of what is still to load into one address space: page
//! ranges and where their bytes are in the page file, kept up to date as the
//! program discards, unmaps and moves memory.

use std::collections::BTreeMap;

/// Image pages still to copy into one address space: start → (length,
/// page file offset), non-overlapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Pending(pub(super) BTreeMap<u64, (u64, u64)>);

impl Pending {
    /// The extent holding `addr`.
    pub(super) fn find(&self, addr: u64) -> Option<(u64, u64, u64)> {
        let (&s, &(l, o)) = self.0.range(..=addr).next_back()?;
        (addr < s + l).then_some((s, l, o))
    }

    /// The extents within `[s, e)`, clipped.
    pub(super) fn within(&self, s: u64, e: u64) -> Vec<(u64, u64, u64)> {
        let first = self
            .0
            .range(..s)
            .next_back()
            .filter(|(&k, &(l, _))| k + l > s)
            .map(|(&k, &v)| (k, v));
        let mut out = Vec::new();
        for (k, (l, o)) in first
            .into_iter()
            .chain(self.0.range(s..e).map(|(&k, &v)| (k, v)))
        {
            let (a, b) = (k.max(s), (k + l).min(e));
            if a < b {
                out.push((a, b - a, o + (a - k)));
            }
        }
        out
    }

    /// Drops `[s, e)`.
    pub(super) fn remove(&mut self, s: u64, e: u64) {
        for (a, l, _) in self.within(s, e) {
            let Some((&k, &(kl, ko))) = self.0.range(..=a).next_back() else {
                continue;
            };
            self.0.remove(&k);
            if k < a {
                self.0.insert(k, (a - k, ko));
            }
            if k + kl > a + l {
                self.0.insert(a + l, (k + kl - a - l, ko + (a + l - k)));
            }
        }
    }

    /// `[from, from + len)` moved to `to` (what was at `to` is gone).
    pub(super) fn remap(&mut self, from: u64, to: u64, len: u64) {
        let moved = self.within(from, from + len);
        self.remove(from, from + len);
        self.remove(to, to + len);
        for (a, l, o) in moved {
            self.0.insert(a - from + to, (l, o));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn first(&self) -> Option<(u64, u64, u64)> {
        self.0.iter().next().map(|(&s, &(l, o))| (s, l, o))
    }

    /// The pending piece that holds `addr` (from `addr` on), or the first
    /// one after it.
    pub(super) fn at_or_after(&self, addr: u64) -> Option<(u64, u64, u64)> {
        if let Some((s, l, o)) = self.find(addr) {
            return Some((addr, s + l - addr, o + (addr - s)));
        }
        self.0.range(addr..).next().map(|(&s, &(l, o))| (s, l, o))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[(u64, u64, u64)]) -> Pending {
        Pending(v.iter().map(|&(a, l, o)| (a, (l, o))).collect())
    }

    #[test]
    fn removing_splits_and_drops_extents() {
        let mut p = set(&[(0x1000, 0x4000, 0), (0x8000, 0x2000, 0x4000)]);
        p.remove(0x2000, 0x3000);
        assert_eq!(
            p,
            set(&[
                (0x1000, 0x1000, 0),
                (0x3000, 0x2000, 0x2000),
                (0x8000, 0x2000, 0x4000)
            ])
        );
        p.remove(0x0, 0x9000);
        assert_eq!(p, set(&[(0x9000, 0x1000, 0x5000)]));
        p.remove(0x9000, 0xa000);
        assert!(p.is_empty());
    }

    #[test]
    fn finding_and_clipping() {
        let p = set(&[(0x1000, 0x4000, 0x10000)]);
        assert_eq!(p.find(0x1000), Some((0x1000, 0x4000, 0x10000)));
        assert_eq!(p.find(0x4fff), Some((0x1000, 0x4000, 0x10000)));
        assert_eq!(p.find(0x5000), None);
        assert_eq!(p.find(0xfff), None);
        assert_eq!(p.within(0x2000, 0x3000), vec![(0x2000, 0x1000, 0x11000)]);
    }

    #[test]
    fn a_moved_range_keeps_its_file_offsets() {
        let mut p = set(&[(0x1000, 0x4000, 0x10000), (0x20000, 0x1000, 0)]);
        // Move the second half of the first extent over the second one.
        p.remap(0x3000, 0x20000, 0x2000);
        assert_eq!(
            p,
            set(&[(0x1000, 0x2000, 0x10000), (0x20000, 0x2000, 0x12000)])
        );
    }
}
