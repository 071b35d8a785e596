//! The process's credentials ([`Tag::Creds`](crate::Tag::Creds)): who the
//! restored process runs as.
//!
//! Credentials are per thread in Linux; the dump records the dumping
//! thread's (a process whose threads differ is refused at the dump), and the
//! restorer gives every thread these.

use crate::records::Tag;
use crate::wire::{DecodeError, Reader, Writer};

/// [`CredsRecord::flags`]: `PR_SET_NO_NEW_PRIVS` was set.
pub const CREDS_NO_NEW_PRIVS: u32 = 1;
/// Most supplementary groups a record may list (the kernel's `NGROUPS_MAX`).
pub const MAX_GROUPS: usize = 65536;
/// Highest capability number this format knows (`CAP_LAST_CAP` of Linux 6.x
/// is 40); capability sets are 64-bit masks.
pub const CAP_BITS: u32 = 64;

/// Credentials of the dumping thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CredsRecord<'a> {
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
    /// Effective capabilities (bit n = capability n).
    pub cap_effective: u64,
    /// Permitted capabilities.
    pub cap_permitted: u64,
    /// Inheritable capabilities.
    pub cap_inheritable: u64,
    /// Capability bounding set.
    pub cap_bounding: u64,
    /// Ambient capabilities.
    pub cap_ambient: u64,
    /// `PR_GET_SECUREBITS`.
    pub securebits: u32,
    /// [`CREDS_NO_NEW_PRIVS`].
    pub flags: u32,
    /// `PR_GET_DUMPABLE` (0 or 1).
    pub dumpable: u32,
    /// Supplementary groups, `u32` little-endian each.
    pub groups: &'a [u8],
}

impl<'a> CredsRecord<'a> {
    /// Encodes as a [`Tag::Creds`] section.
    pub fn encode(&self, w: &mut Writer<'_>) {
        w.section(Tag::Creds as u32, |w| {
            for v in self.uids.iter().chain(self.gids.iter()) {
                w.u32(*v);
            }
            for v in [
                self.cap_effective,
                self.cap_permitted,
                self.cap_inheritable,
                self.cap_bounding,
                self.cap_ambient,
            ] {
                w.u64(v);
            }
            w.u32(self.securebits);
            w.u32(self.flags);
            w.u32(self.dumpable);
            w.str(self.groups);
        });
    }

    /// Decodes a [`Tag::Creds`] payload and checks its bounds.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, DecodeError> {
        let mut c = CredsRecord::default();
        for v in c.uids.iter_mut().chain(c.gids.iter_mut()) {
            *v = r.u32()?;
        }
        c.cap_effective = r.u64()?;
        c.cap_permitted = r.u64()?;
        c.cap_inheritable = r.u64()?;
        c.cap_bounding = r.u64()?;
        c.cap_ambient = r.u64()?;
        c.securebits = r.u32()?;
        c.flags = r.u32()?;
        c.dumpable = r.u32()?;
        c.groups = r.str()?;
        if c.groups.len() % 4 != 0 || c.groups.len() / 4 > MAX_GROUPS {
            return Err(DecodeError::Invalid {
                what: "supplementary group list",
            });
        }
        if c.dumpable > 1 {
            return Err(DecodeError::Invalid {
                what: "dumpable flag",
            });
        }
        // The kernel keeps effective and ambient inside permitted; an image
        // claiming otherwise was not made by a dump.
        let perm = c.cap_permitted;
        if c.cap_effective & !perm != 0 || c.cap_ambient & !(perm & c.cap_inheritable) != 0 {
            return Err(DecodeError::Invalid {
                what: "capability sets",
            });
        }
        Ok(c)
    }

    /// The supplementary groups.
    pub fn groups(&self) -> impl Iterator<Item = u32> + 'a {
        self.groups
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Number of supplementary groups.
    pub fn group_count(&self) -> usize {
        self.groups.len() / 4
    }
}

/// Owned credentials, for tools and the dump.
#[cfg(feature = "std")]
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Creds {
    /// Real, effective, saved and filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved and filesystem group ids.
    pub gids: [u32; 4],
    /// Effective capabilities.
    pub cap_effective: u64,
    /// Permitted capabilities.
    pub cap_permitted: u64,
    /// Inheritable capabilities.
    pub cap_inheritable: u64,
    /// Bounding set.
    pub cap_bounding: u64,
    /// Ambient capabilities.
    pub cap_ambient: u64,
    /// Securebits.
    pub securebits: u32,
    /// [`CREDS_NO_NEW_PRIVS`].
    pub flags: u32,
    /// 0 or 1.
    pub dumpable: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// `groups` as the record stores them (so the dump encodes without
    /// allocating).
    pub groups_le: Vec<u8>,
}

#[cfg(feature = "std")]
impl Creds {
    /// Sets `groups` and its encoded form.
    pub fn set_groups(&mut self, groups: Vec<u32>) {
        self.groups_le = groups.iter().flat_map(|g| g.to_le_bytes()).collect();
        self.groups = groups;
    }

    /// The record (borrows the encoded groups).
    pub fn as_record(&self) -> CredsRecord<'_> {
        CredsRecord {
            uids: self.uids,
            gids: self.gids,
            cap_effective: self.cap_effective,
            cap_permitted: self.cap_permitted,
            cap_inheritable: self.cap_inheritable,
            cap_bounding: self.cap_bounding,
            cap_ambient: self.cap_ambient,
            securebits: self.securebits,
            flags: self.flags,
            dumpable: self.dumpable,
            groups: &self.groups_le,
        }
    }

    /// Whether `PR_SET_NO_NEW_PRIVS` was set.
    pub fn no_new_privs(&self) -> bool {
        self.flags & CREDS_NO_NEW_PRIVS != 0
    }
}

#[cfg(feature = "std")]
impl From<&CredsRecord<'_>> for Creds {
    fn from(r: &CredsRecord<'_>) -> Self {
        let mut c = Creds {
            uids: r.uids,
            gids: r.gids,
            cap_effective: r.cap_effective,
            cap_permitted: r.cap_permitted,
            cap_inheritable: r.cap_inheritable,
            cap_bounding: r.cap_bounding,
            cap_ambient: r.cap_ambient,
            securebits: r.securebits,
            flags: r.flags,
            dumpable: r.dumpable,
            ..Default::default()
        };
        c.set_groups(r.groups().collect());
        c
    }
}

/// Capability names in bit order (`CAP_CHOWN` = 0 … `CAP_CHECKPOINT_RESTORE`
/// = 40), lower case without the `cap_` prefix, as `capsh` prints them.
pub const CAP_NAMES: [&str; 41] = [
    "chown",
    "dac_override",
    "dac_read_search",
    "fowner",
    "fsetid",
    "kill",
    "setgid",
    "setuid",
    "setpcap",
    "linux_immutable",
    "net_bind_service",
    "net_broadcast",
    "net_admin",
    "net_raw",
    "ipc_lock",
    "ipc_owner",
    "sys_module",
    "sys_rawio",
    "sys_chroot",
    "sys_ptrace",
    "sys_pacct",
    "sys_admin",
    "sys_boot",
    "sys_nice",
    "sys_resource",
    "sys_time",
    "sys_tty_config",
    "mknod",
    "lease",
    "audit_write",
    "audit_control",
    "setfcap",
    "mac_override",
    "mac_admin",
    "syslog",
    "wake_alarm",
    "block_suspend",
    "audit_read",
    "perfmon",
    "bpf",
    "checkpoint_restore",
];

/// A capability mask as names (`cap_N` for bits past [`CAP_NAMES`]).
#[cfg(feature = "std")]
pub fn cap_names(mask: u64) -> Vec<String> {
    (0..CAP_BITS)
        .filter(|b| mask & (1u64 << b) != 0)
        .map(|b| match CAP_NAMES.get(b as usize) {
            Some(n) => format!("cap_{n}"),
            None => format!("cap_{b}"),
        })
        .collect()
}

/// `creds` in [`ImageSummary`](crate::ImageSummary): who the restored
/// process runs as.
#[cfg(feature = "std")]
#[derive(Debug, Clone, serde::Serialize)]
pub struct CredsView {
    /// Real, effective, saved, filesystem user ids.
    pub uids: [u32; 4],
    /// Real, effective, saved, filesystem group ids.
    pub gids: [u32; 4],
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities, by name.
    pub cap_effective: Vec<String>,
    /// Permitted capabilities.
    pub cap_permitted: Vec<String>,
    /// Inheritable capabilities.
    pub cap_inheritable: Vec<String>,
    /// Bounding set, as a hex mask (usually all).
    pub cap_bounding: String,
    /// Ambient capabilities.
    pub cap_ambient: Vec<String>,
    /// Securebits, hex.
    pub securebits: String,
    /// `PR_SET_NO_NEW_PRIVS` set.
    pub no_new_privs: bool,
    /// `PR_GET_DUMPABLE`.
    pub dumpable: u32,
}

#[cfg(feature = "std")]
impl From<&Creds> for CredsView {
    fn from(c: &Creds) -> Self {
        CredsView {
            uids: c.uids,
            gids: c.gids,
            groups: c.groups.clone(),
            cap_effective: cap_names(c.cap_effective),
            cap_permitted: cap_names(c.cap_permitted),
            cap_inheritable: cap_names(c.cap_inheritable),
            cap_bounding: format!("{:#x}", c.cap_bounding),
            cap_ambient: cap_names(c.cap_ambient),
            securebits: format!("{:#x}", c.securebits),
            no_new_privs: c.no_new_privs(),
            dumpable: c.dumpable,
        }
    }
}
