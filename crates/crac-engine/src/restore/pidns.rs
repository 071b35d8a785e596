//! `crac restore --pidns`: the restore in a PID namespace of its own.
//!
//! The caller forks the namespace's init (PID 1 of a new PID namespace,
//! in a new mount namespace with its own `/proc`, and in a new time
//! namespace) and waits for it; the init restores the image there, so the
//! process gets the image's PID and TIDs whatever runs outside, and any
//! number of copies of one image can run at once. The init reaps every
//! process orphaned in the namespace, forwards signals, and ends as the
//! program does (the kernel then ends whatever is left in the namespace).
//!
//! The time namespace's offsets make CLOCK_MONOTONIC and CLOCK_BOOTTIME
//! read, at the restore, what they read at the checkpoint: they continue
//! from there, never backwards, even after a reboot.
//!
//! A caller other than root first enters a new user namespace in which it
//! is itself (its uid and gid mapped to themselves, `setgroups` denied, as
//! an unprivileged process may) and holds the capabilities the namespaces
//! and the restore need over what it owns: rootless restores, as CRIU's
//! and FastFreeze's. Its supplementary groups stay what they are.

use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;

use crac_sys::fork::{self, Fork};

use super::RestoreError;

/// Which side of [`enter`] the caller is on.
#[derive(Debug)]
pub enum Side {
    /// Outside: wait for the namespace's init (a child), then end as
    /// [`Outside::program_status`] says the program did.
    Outside(Outside),
    /// In the new namespace, as its init: restore, wait with
    /// [`super::wait_and_forward_as_init`], then [`Init::report`].
    Init(Init),
}

/// The caller's side: the init and the pipe it reports on.
#[derive(Debug)]
pub struct Outside {
    /// The init's PID (in the caller's namespace).
    pub init: u32,
    report: std::io::PipeReader,
}

/// The init's side.
#[derive(Debug)]
pub struct Init {
    report: std::io::PipeWriter,
}

impl Outside {
    /// How the program ended, as the init reported it once the init has
    /// ended (`init_status`); the init's own status if it reported nothing
    /// (it failed before the program ran). The init of a PID namespace
    /// cannot end by a signal it sends itself, so it hands the program's
    /// status over for the caller to end with.
    pub fn program_status(mut self, init_status: ExitStatus) -> ExitStatus {
        use std::io::Read;
        let mut raw = [0u8; 4];
        match self.report.read_exact(&mut raw) {
            Ok(()) => ExitStatus::from_raw(i32::from_le_bytes(raw)),
            Err(_) => init_status,
        }
    }
}

impl Init {
    /// Hands how the program ended to the caller outside.
    pub fn report(mut self, status: ExitStatus) {
        use std::io::Write;
        let _ = self.report.write_all(&status.into_raw().to_le_bytes());
    }
}

fn setup(what: &'static str) -> impl Fn(io::Error) -> RestoreError {
    move |source| RestoreError::Setup { what, source }
}

/// The offsets that make a clock reading `now` read `then`, as
/// `/proc/self/timens_offsets` wants them (seconds may be negative,
/// nanoseconds not).
fn offset(then: u64, now: u64) -> (i64, u32) {
    let d = i128::from(then) - i128::from(now);
    let secs = d.div_euclid(1_000_000_000);
    let nanos = d.rem_euclid(1_000_000_000);
    (secs as i64, nanos as u32)
}

/// Maps the caller's uid and gid to themselves in its new user namespace
/// (the only mapping an unprivileged process may write; `setgroups` must
/// be denied first).
fn map_user(u: u32, g: u32) -> io::Result<()> {
    std::fs::write("/proc/self/setgroups", "deny")?;
    std::fs::write("/proc/self/uid_map", format!("{u} {u} 1\n"))?;
    std::fs::write("/proc/self/gid_map", format!("{g} {g} 1\n"))
}

/// In the init of a new PID and mount namespace: mounts made here stay
/// here, and /proc shows this namespace's PIDs (the preflight, the
/// restorer and later dumps read it).
fn mount_own_proc() -> rustix::io::Result<()> {
    use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
    mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )?;
    mount(
        "proc",
        "/proc",
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
}

/// For a caller other than root, an `execve` drops every capability (file
/// capabilities of `crac`, `setcap cap_checkpoint_restore+ep`, or those of
/// a user namespace): raise the permitted ones into the ambient set, so
/// the restorer keeps what it needs (`PR_SET_MM_MAP`, `clone3` with
/// `set_tid` for threads) until it gives the process the image's
/// credentials.
pub(crate) fn keep_capabilities_across_exec() -> rustix::io::Result<()> {
    use rustix::thread::{self, CapabilitySet, CapabilitySets};
    let all = thread::capabilities(None)?.permitted;
    thread::set_capabilities(
        None,
        CapabilitySets {
            effective: all,
            permitted: all,
            inheritable: all,
        },
    )?;
    for bit in 0..64 {
        let cap = CapabilitySet::from_bits_retain(1 << bit);
        if all.contains(cap) {
            thread::configure_capability_in_ambient_set(cap, true)?;
        }
    }
    Ok(())
}

/// Forks the init of a new PID, mount and time namespace (see the module
/// docs). Call it while the process has one thread, before the restore.
pub fn enter(image_dir: &Path) -> Result<Side, RestoreError> {
    // The clocks at the checkpoint, from the image the preflight (in the
    // init) checks in full.
    let image = crac_image::Image::read(image_dir).map_err(|e| RestoreError::Setup {
        what: "read the image's clocks",
        source: io::Error::other(e.to_string()),
    })?;
    let (then_mono, then_boot) = (image.process.monotonic_ns, image.process.boottime_ns);
    let (uid, gid) = (rustix::process::geteuid(), rustix::process::getegid());
    if !uid.is_root() {
        // Rootless: a user namespace where this user is itself (the only
        // id it may map) and holds the capabilities the namespaces and the
        // restore need, over what it owns.
        fork::unshare_user_namespace().map_err(|e| setup("create a user namespace")(e.into()))?;
        map_user(uid.as_raw(), gid.as_raw())
            .map_err(setup("map the user into its user namespace"))?;
    }
    fork::unshare_time_namespace().map_err(|e| setup("create a time namespace")(e.into()))?;
    let (mono, boot) = (
        offset(then_mono, crac_sys::sys::clock_ns(1)),
        offset(then_boot, crac_sys::sys::clock_ns(7)),
    );
    std::fs::write(
        "/proc/self/timens_offsets",
        format!(
            "monotonic {} {}\nboottime {} {}\n",
            mono.0, mono.1, boot.0, boot.1
        ),
    )
    .map_err(setup("set the time namespace's clocks"))?;
    let (reader, writer) = std::io::pipe().map_err(setup("create a pipe for the init"))?;
    match fork::fork_into_namespaces(fork::CLONE_NEWPID | fork::CLONE_NEWNS)
        .map_err(|e| setup("create a PID namespace")(e.into()))?
    {
        Fork::Parent { pid, .. } => {
            drop(writer);
            Ok(Side::Outside(Outside {
                init: pid as u32,
                report: reader,
            }))
        }
        Fork::Child => {
            drop(reader);
            mount_own_proc().map_err(|e| setup("mount /proc for the PID namespace")(e.into()))?;
            if !uid.is_root() {
                keep_capabilities_across_exec().map_err(|e| {
                    setup("keep the user namespace's capabilities for the restorer")(e.into())
                })?;
            }
            Ok(Side::Init(Init { report: writer }))
        }
    }
}

/// Whether `crac restore --pidns` can work for the caller here: in a child
/// (this process keeps its namespaces), the steps [`enter`] takes and the
/// restore's `clone3` with `set_tid` inside the new namespace, each for
/// real. `Ok(what it used)` or `Err(the step that failed)`.
pub fn probe() -> Result<String, String> {
    const STEPS: [&str; 8] = [
        "",
        "create a user namespace (kernel.unprivileged_userns_clone, user.max_user_namespaces or an LSM may forbid it)",
        "map the user into its user namespace",
        "create a time namespace",
        "set the time namespace's clocks",
        "create a PID and mount namespace",
        "mount /proc for the PID namespace",
        "create a process with a chosen PID in the namespace",
    ];
    let root = rustix::process::geteuid().is_root();
    let pid = match fork::fork_into_namespaces(0) {
        Err(e) => return Err(format!("cannot fork a process for the probe: {e}")),
        Ok(Fork::Child) => crac_sys::sys::exit_group(match probe_steps(root) {
            Ok(()) => 0,
            Err(step) => step,
        }),
        Ok(Fork::Parent { pid, .. }) => pid,
    };
    let status = rustix::process::Pid::from_raw(pid)
        .ok_or_else(|| "the probe has no PID".to_string())
        .and_then(|p| {
            rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty())
                .map_err(|e| format!("cannot wait for the probe: {e}"))
        })?
        .map(|(_, st)| st);
    match status.and_then(|st| st.exit_status()) {
        Some(0) => Ok(format!(
            "{}PID, mount and time namespaces; a process with a chosen PID in them",
            if root { "" } else { "a user namespace, " }
        )),
        Some(step) => Err(format!(
            "cannot {}",
            STEPS.get(step as usize).copied().unwrap_or("run the probe")
        )),
        None => Err("the probe was killed".to_string()),
    }
}

/// The probe's steps, in the child: `Err(step)` numbers the one that
/// failed (see [`probe`]).
fn probe_steps(root: bool) -> Result<(), i32> {
    let (u, g) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    if !root {
        fork::unshare_user_namespace().map_err(|_| 1)?;
        map_user(u, g).map_err(|_| 2)?;
    }
    fork::unshare_time_namespace().map_err(|_| 3)?;
    std::fs::write("/proc/self/timens_offsets", "monotonic 1 0\nboottime 1 0\n").map_err(|_| 4)?;
    match fork::fork_into_namespaces(fork::CLONE_NEWPID | fork::CLONE_NEWNS).map_err(|_| 5)? {
        Fork::Parent { pid, .. } => {
            let p = rustix::process::Pid::from_raw(pid).ok_or(5)?;
            match rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty()) {
                Ok(Some((_, st))) => match st.exit_status() {
                    Some(0) => Ok(()),
                    Some(step) => Err(step),
                    None => Err(7),
                },
                _ => Err(7),
            }
        }
        Fork::Child => {
            let code = if mount_own_proc().is_err() {
                6
            } else if chosen_pid_child(4242) {
                0
            } else {
                7
            };
            crac_sys::sys::exit_group(code)
        }
    }
}

/// Creates a child with PID `pid` that exits at once (its exec fails on
/// purpose), as the restore creates the restored process.
fn chosen_pid_child(pid: i32) -> bool {
    let Ok(devnull) = std::fs::File::options().write(true).open("/dev/null") else {
        return false;
    };
    let child = crac_sys::raw::ExecChild {
        fds: &[],
        close_from: 3,
        exec_fd: -1,
        argv: &[c"crac-probe"],
        envp: &[],
        fail_fd: std::os::fd::AsRawFd::as_raw_fd(&devnull),
        fail_record: &[0; 16],
        fail_errno_at: 0,
        fail_step_at: 8,
        new_session: false,
    };
    match crac_sys::raw::spawn_exec_with_pid(pid, &child) {
        Ok(got) => {
            if let Some(p) = rustix::process::Pid::from_raw(got) {
                let _ = rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
            }
            got == pid
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::offset;

    #[test]
    fn offsets_carry_the_clock_back_or_forward() {
        assert_eq!(offset(5_000_000_000, 2_000_000_000), (3, 0));
        assert_eq!(offset(2_000_000_000, 5_000_000_001), (-4, 999_999_999));
        assert_eq!(offset(1_500_000_000, 1_000_000_000), (0, 500_000_000));
    }
}
