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
            use rustix::mount::{mount, mount_change, MountFlags, MountPropagationFlags};
            // Mounts made here stay here; /proc shows this namespace's
            // PIDs (the preflight, the restorer and later dumps read it).
            let r = mount_change(
                "/",
                MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
            )
            .and_then(|()| {
                mount(
                    "proc",
                    "/proc",
                    "proc",
                    MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
                    None,
                )
            });
            r.map_err(|e| setup("mount /proc for the PID namespace")(e.into()))?;
            Ok(Side::Init(Init { report: writer }))
        }
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
