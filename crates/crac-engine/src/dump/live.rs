//! The live dump: a copy-on-write copy writes the image.
//!
//! With `leave_running`, once everything that must be read while the
//! threads are stopped has been read (carried descriptors, the memory map,
//! the clocks), the dumping thread forks. The copy's memory is the process
//! as it was at that moment, and stays so while the original runs on: the
//! copy writes the page file, the metadata and commits the image, while the
//! original releases its threads at once. The pause the program sees is the
//! stop plus the page-table copy, whatever the memory size or the disk. The
//! checkpoint still reports success only once the copy has made the image
//! durable.
//!
//! Areas a fork does not copy as they are (`MADV_DONTFORK`,
//! `MADV_WIPEONFORK`) would be missing or zero in the copy: a process with
//! such areas is dumped in place, with its threads stopped throughout.
#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd};

use crac_sys::fork::{self, Exit, Fork, SharedPage};
use crac_sys::{sys, Errno};

use super::SnapFailure;

/// The copy writing the image, seen from the original process.
pub(super) struct Writer {
    pid: i32,
    pidfd: i32,
    /// Where the copy leaves its failure, if any.
    report: SharedPage,
}

/// Why the copy did not make the image.
pub(super) enum WriterFailure {
    /// A step failed; the copy said which.
    Snap(SnapFailure),
    /// The copy ended without saying why (killed, or an unknown status).
    Died { pid: i32, exit: Exit },
    /// Waiting for it failed.
    Wait(Errno),
}

// The report page holds one `Option<SnapFailure>`.
const _: () = assert!(std::mem::size_of::<Option<SnapFailure>>() <= SharedPage::LEN);

/// Forks (see the module docs). In the copy, runs `write` and ends with its
/// outcome; never returns there. In the original, returns the copy to wait
/// for, or `None` if no copy could be made (the caller dumps in place).
///
/// Called while every other thread is stopped: allocates nothing.
pub(super) fn fork_writer(write: impl FnOnce() -> Result<(), SnapFailure>) -> Option<Writer> {
    let report = SharedPage::new().ok()?;
    // SAFETY: the page is fresh, page-aligned, writable and large enough
    // (asserted above); nothing else refers to it yet.
    unsafe { std::ptr::write(report.addr() as *mut Option<SnapFailure>, None) };
    match fork::fork_cow() {
        Err(_) => None,
        Ok(Fork::Parent { pid, pidfd }) => Some(Writer { pid, pidfd, report }),
        Ok(Fork::Child) => {
            let code = match write() {
                Ok(()) => 0,
                Err(f) => {
                    // SAFETY: as above; the page is shared with the original,
                    // which reads it only after this process has ended.
                    unsafe { std::ptr::write(report.addr() as *mut Option<SnapFailure>, Some(f)) };
                    1
                }
            };
            sys::exit_group(code)
        }
    }
}

impl Writer {
    /// Waits until the copy has committed the image (or failed) and reaps
    /// it. Called once the threads run again.
    pub(super) fn wait(self) -> Result<(), WriterFailure> {
        // SAFETY: `pidfd` came from clone3 for this copy and nothing else
        // owns it.
        let pidfd = unsafe { OwnedFd::from_raw_fd(self.pidfd) };
        let exit = fork::wait_pidfd(std::os::fd::AsRawFd::as_raw_fd(&pidfd))
            .map_err(WriterFailure::Wait)?;
        match exit {
            Exit::Code(0) => Ok(()),
            Exit::Code(1) => {
                // The copy has ended: nothing writes the page any more. A
                // `SnapFailure` holds numbers and `&'static str`s into this
                // same program (the copy ran its code at the same addresses).
                // SAFETY: the page holds a valid `Option<SnapFailure>`.
                let f = unsafe { std::ptr::read(self.report.addr() as *const Option<SnapFailure>) };
                Err(f.map_or(
                    WriterFailure::Died {
                        pid: self.pid,
                        exit,
                    },
                    WriterFailure::Snap,
                ))
            }
            _ => Err(WriterFailure::Died {
                pid: self.pid,
                exit,
            }),
        }
    }
}
