//! Credentials: read for the dump (the image's [`Creds`] record), compared
//! in the restore preflight (who may restore an image), and the ownership
//! rules of image directories (like ssh's `StrictModes`).

use std::fs;

use crac_image::creds::Creds;
use crac_sys::creds as sc;

/// Parses one `/proc/.../status` into credentials (ids, groups, capability
/// sets, no_new_privs); securebits and dumpable are not in that file.
pub fn parse_status(status: &str) -> Creds {
    let mut c = Creds::default();
    let mut groups = Vec::new();
    for line in status.lines() {
        let Some((key, val)) = line.split_once(':') else {
            continue;
        };
        let nums = || val.split_whitespace().filter_map(|v| v.parse::<u32>().ok());
        let hex = || u64::from_str_radix(val.trim(), 16).unwrap_or(0);
        match key {
            "Uid" => nums().zip(c.uids.iter_mut()).for_each(|(v, s)| *s = v),
            "Gid" => nums().zip(c.gids.iter_mut()).for_each(|(v, s)| *s = v),
            "Groups" => groups = nums().collect(),
            "CapInh" => c.cap_inheritable = hex(),
            "CapPrm" => c.cap_permitted = hex(),
            "CapEff" => c.cap_effective = hex(),
            "CapBnd" => c.cap_bounding = hex(),
            "CapAmb" => c.cap_ambient = hex(),
            "NoNewPrivs" if val.trim() == "1" => c.flags |= crac_image::CREDS_NO_NEW_PRIVS,
            _ => {}
        }
    }
    c.set_groups(groups);
    c
}

/// The calling thread's credentials.
pub fn current() -> std::io::Result<Creds> {
    let mut c = parse_status(&fs::read_to_string("/proc/thread-self/status")?);
    c.securebits = sc::prctl(sc::PR_GET_SECUREBITS, 0, 0, 0, 0).unwrap_or(0) as u32;
    // 2 ("suidsafe") cannot be set with prctl; the restored process gets 0.
    c.dumpable = u32::from(sc::prctl(sc::PR_GET_DUMPABLE, 0, 0, 0, 0).unwrap_or(0) == 1);
    Ok(c)
}

/// The first thread of this process whose ids, groups or capabilities
/// differ from `c` (the calling thread's), as `(tid, what differs)`.
pub fn differing_thread(c: &Creds) -> Option<(u32, &'static str)> {
    use std::io::Read;
    let tasks = fs::read_dir("/proc/self/task").ok()?;
    // One buffer for all (a status is under 2 KiB): with hundreds of
    // threads, growing a string per file was a good part of the dump.
    let mut s = String::with_capacity(4096);
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        s.clear();
        // A thread that ended meanwhile has nothing to compare.
        let read =
            fs::File::open(t.path().join("status")).and_then(|mut f| f.read_to_string(&mut s));
        if read.is_err() {
            continue;
        }
        let o = parse_status(&s);
        let what = if o.uids != c.uids {
            "user ids"
        } else if o.gids != c.gids {
            "group ids"
        } else if o.groups != c.groups {
            "supplementary groups"
        } else if (o.cap_effective, o.cap_permitted, o.cap_inheritable)
            != (c.cap_effective, c.cap_permitted, c.cap_inheritable)
            || (o.cap_bounding, o.cap_ambient) != (c.cap_bounding, c.cap_ambient)
        {
            "capabilities"
        } else {
            continue;
        };
        return Some((tid, what));
    }
    None
}

/// Why a caller may not restore an image made with other credentials, or
/// `None` if it may: root (real uid 0) may restore any image; anyone else
/// only an image it could have made itself: every uid its real uid, every
/// gid and group one of its own, no capability it does not hold.
pub fn refusal(caller: &Creds, image: &Creds) -> Option<String> {
    if caller.uids[0] == 0 {
        return None;
    }
    let me = caller.uids[0];
    if let Some(u) = image.uids.iter().find(|&&u| u != me) {
        return Some(format!(
            "the image runs as uid {u} and this user (uid {me}) may restore only its own images (or run crac restore as root)"
        ));
    }
    let own_gid = |g: &u32| caller.gids.contains(g) || caller.groups.contains(g);
    if let Some(g) = image.gids.iter().chain(&image.groups).find(|g| !own_gid(g)) {
        return Some(format!(
            "the image runs with group {g}, which this user (uid {me}) is not in"
        ));
    }
    let extra = (image.cap_permitted | image.cap_ambient) & !caller.cap_permitted;
    if extra != 0 {
        return Some(format!(
            "the image holds capabilities this user (uid {me}) lacks: {}",
            crac_image::creds::cap_names(extra).join(", ")
        ));
    }
    None
}

/// Why a file or directory of an image is not trusted, or `None`: it must be
/// owned by root or by the image's user and not be writable by group or
/// others (another user could have put anything there).
fn untrusted(
    what: &str,
    path: &std::path::Path,
    owner: u32,
    mode: u32,
    image_uid: u32,
) -> Option<String> {
    let mode = mode & 0o7777;
    if owner != 0 && owner != image_uid {
        return Some(format!(
            "the image {what} {} is owned by uid {owner}, neither root nor the image's user (uid {image_uid})",
            path.display(),
        ));
    }
    if mode & 0o022 != 0 {
        return Some(format!(
            "the image {what} {} has mode {mode:04o}: writable by {} (chmod go-w it)",
            path.display(),
            if mode & 0o002 != 0 {
                "every user"
            } else {
                "its group"
            }
        ));
    }
    None
}

/// The trust problems of the image directory `dir` as the strict reader
/// opened it, for an image of user `image_uid`: the directory and the page
/// file by their open descriptors, `meta.crac` relative to the directory's
/// descriptor without following a link (a dump never writes one) — never
/// by their paths again.
pub fn image_dir_problems(
    dir: &std::path::Path,
    verified: &crac_image::VerifiedImage,
    image_uid: u32,
) -> Vec<String> {
    use rustix::fs::{fstat, statat, AtFlags, FileType};
    let mut out = Vec::new();
    let mut check = |what: &str,
                     path: std::path::PathBuf,
                     st: rustix::io::Result<rustix::fs::Stat>| match st {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => out.push(format!(
            "the image {what} {} is a symbolic link, not a file the dump wrote",
            path.display()
        )),
        Ok(st) => out.extend(untrusted(what, &path, st.st_uid, st.st_mode, image_uid)),
        Err(e) => out.push(format!(
            "the image {what} {} cannot be examined: {e}",
            path.display()
        )),
    };
    check("directory", dir.to_path_buf(), fstat(verified.dir.fd()));
    check(
        "file",
        dir.join(crac_image::META_FILE),
        statat(
            verified.dir.fd(),
            crac_image::META_FILE,
            AtFlags::SYMLINK_NOFOLLOW,
        ),
    );
    check(
        "file",
        dir.join(crac_image::PAGES_FILE),
        fstat(&verified.pages),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_is_parsed() {
        let s = "Name:\tx\nUid:\t1\t2\t3\t4\nGid:\t5\t6\t7\t8\nGroups:\t9 10 \nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t0000000000000400\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n";
        let c = parse_status(s);
        assert_eq!(c.uids, [1, 2, 3, 4]);
        assert_eq!(c.gids, [5, 6, 7, 8]);
        assert_eq!(c.groups, vec![9, 10]);
        assert_eq!(c.cap_permitted, 0x1ff_ffff_ffff);
        assert_eq!(c.cap_effective, 0x400);
        assert!(c.no_new_privs());
        let now = current().unwrap();
        assert_eq!(now.uids[0], sc::getresuid().unwrap()[0]);
        assert_eq!(now.cap_effective, sc::capget().unwrap().0);
    }

    #[test]
    fn only_root_restores_other_users_images() {
        let mut user = Creds {
            uids: [1000; 4],
            gids: [1000; 4],
            ..Default::default()
        };
        user.set_groups(vec![27]);
        let root = Creds::default();
        assert_eq!(refusal(&root, &user), None);
        assert_eq!(refusal(&user, &user), None);
        assert!(refusal(&user, &root).unwrap().contains("uid 0"));
        let mut other_group = user.clone();
        other_group.set_groups(vec![4]);
        assert!(refusal(&user, &other_group).unwrap().contains("group 4"));
        let mut capable = user.clone();
        capable.cap_permitted = 1 << 12;
        assert!(refusal(&user, &capable).unwrap().contains("cap_net_admin"));
    }
}
