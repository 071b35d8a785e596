//! `crac check`: probe this machine for the kernel features the engine
//! uses, like `criu check`.

use std::fs;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::ExitCode;

use crac_sys::raw::{spawn_exec_with_pid, Errno, ExecChild};

use crate::output::Reporter;

/// Why `crac check` failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Something the engine needs is missing.
    #[error("this machine lacks what the engine needs: {}", missing.join(", "))]
    Missing {
        /// The names of the missing features.
        missing: Vec<&'static str>,
    },
}

/// One probe's outcome.
struct Probe {
    name: &'static str,
    /// Whether checkpoints or restores cannot work without it.
    required: bool,
    /// What depends on it.
    affects: &'static str,
    /// `Ok(detail)` if present, `Err(why not)` otherwise.
    result: Result<String, String>,
}

const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_RESOURCE: u32 = 24;
const CAP_CHECKPOINT_RESTORE: u32 = 40;

/// The effective capability set of this process (`CapEff`).
fn effective_caps() -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn has_cap(caps: Option<u64>, cap: u32) -> bool {
    caps.is_some_and(|c| c >> cap & 1 == 1)
}

fn read_number(path: &str) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Creates a short-lived child with a chosen free PID through `clone3`'s
/// `set_tid`, the way a restore recreates a process with its PID. The child
/// fails its exec on purpose (an invalid descriptor) and exits at once.
fn probe_clone3_set_tid() -> Result<String, String> {
    let pid_max = read_number("/proc/sys/kernel/pid_max").unwrap_or(32_768);
    let last = read_number("/proc/sys/kernel/ns_last_pid").unwrap_or(300);
    let devnull = fs::File::options()
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("cannot open /dev/null: {e}"))?;
    let mut last_error = Errno::EEXIST;
    for step in 1..=20u32 {
        let mut pid = last.saturating_add(1000 + step * 37);
        if pid >= pid_max {
            pid = 300 + step * 97;
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let child = ExecChild {
            fds: &[],
            close_from: 3,
            exec_fd: -1,
            argv: &[c"crac-check"],
            envp: &[],
            fail_fd: devnull.as_raw_fd(),
            fail_record: &[0; 16],
            fail_errno_at: 0,
            fail_step_at: 8,
            new_session: false,
        };
        match spawn_exec_with_pid(i32::try_from(pid).unwrap_or(i32::MAX), &child) {
            Ok(got) => {
                if let Some(p) = rustix::process::Pid::from_raw(got) {
                    let _ =
                        rustix::process::waitpid(Some(p), rustix::process::WaitOptions::empty());
                }
                return if u32::try_from(got) == Ok(pid) {
                    Ok(format!("created a process with the chosen PID {pid}"))
                } else {
                    Err(format!("asked for PID {pid}, got {got}"))
                };
            }
            Err(Errno::EEXIST) => last_error = Errno::EEXIST,
            Err(e) => {
                return Err(match e.0 {
                    1 => "clone3 with set_tid was refused (EPERM): it needs \
                          CAP_CHECKPOINT_RESTORE or CAP_SYS_ADMIN"
                        .to_owned(),
                    38 => {
                        "this kernel has no clone3 (ENOSYS; Linux 5.5 or newer needed)".to_owned()
                    }
                    22 => "this kernel's clone3 has no set_tid (EINVAL; Linux 5.5 or newer needed)"
                        .to_owned(),
                    _ => format!("clone3 with set_tid failed: {e}"),
                })
            }
        }
    }
    Err(format!("no free PID found to try ({last_error})"))
}

fn probe_restore_caps(caps: Option<u64>) -> Result<String, String> {
    match (
        has_cap(caps, CAP_CHECKPOINT_RESTORE),
        has_cap(caps, CAP_SYS_ADMIN),
    ) {
        (true, true) => Ok("CAP_CHECKPOINT_RESTORE and CAP_SYS_ADMIN effective".to_owned()),
        (true, false) => Ok("CAP_CHECKPOINT_RESTORE effective".to_owned()),
        (false, true) => Ok("CAP_SYS_ADMIN effective".to_owned()),
        (false, false) => Err(
            "neither CAP_CHECKPOINT_RESTORE nor CAP_SYS_ADMIN is effective \
                               (run as root, or grant CAP_CHECKPOINT_RESTORE)"
                .to_owned(),
        ),
    }
}

fn probe_prctl_mm_map() -> Result<String, String> {
    match crac_sys::probe::prctl_mm_map_size() {
        Ok(size) => Ok(format!("struct prctl_mm_map is {size} bytes")),
        Err(e) => Err(format!(
            "prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE) failed: {e} (kernel without \
             CONFIG_CHECKPOINT_RESTORE?)"
        )),
    }
}

/// `[vvar]`, `[vvar_vclock]` (if any) and `[vdso]` must form one block.
fn probe_vdso() -> Result<String, String> {
    let maps = fs::read_to_string("/proc/self/maps")
        .map_err(|e| format!("cannot read /proc/self/maps: {e}"))?;
    let mut parts: Vec<(&str, u64, u64)> = Vec::new();
    for line in maps.lines() {
        let Some(name @ ("[vvar]" | "[vvar_vclock]" | "[vdso]")) = line.split_whitespace().nth(5)
        else {
            continue;
        };
        let range = line.split(' ').next().unwrap_or("");
        let (a, b) = range.split_once('-').unwrap_or(("0", "0"));
        let a = u64::from_str_radix(a, 16).unwrap_or(0);
        let b = u64::from_str_radix(b, 16).unwrap_or(0);
        parts.push((name, a, b));
    }
    if !parts.iter().any(|p| p.0 == "[vdso]") {
        return Err("this process has no [vdso] mapping".to_owned());
    }
    parts.sort_by_key(|p| p.1);
    let contiguous = parts.windows(2).all(|w| w[0].2 == w[1].1);
    let layout = parts
        .iter()
        .map(|(n, a, b)| format!("{n} {}", crate::output::bytes(b - a)))
        .collect::<Vec<_>>()
        .join(" + ");
    if contiguous {
        Ok(format!("{layout}, contiguous"))
    } else {
        Err(format!("{layout} are not contiguous"))
    }
}

/// Whether `/proc/self/pagemap` shows page frame numbers.
fn probe_pagemap_pfns() -> Result<String, String> {
    let page = vec![1u8; 8192];
    let addr = page.as_ptr() as u64;
    let index = (addr / 4096 + 1) * 8;
    let mut file = fs::File::open("/proc/self/pagemap")
        .map_err(|e| format!("cannot open /proc/self/pagemap: {e}"))?;
    let mut entry = [0u8; 8];
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(index))
        .and_then(|_| file.read_exact(&mut entry))
        .map_err(|e| format!("cannot read /proc/self/pagemap: {e}"))?;
    std::hint::black_box(&page);
    let e = u64::from_le_bytes(entry);
    let pfn = e & ((1 << 55) - 1);
    if e >> 63 == 1 && pfn != 0 {
        Ok("page frame numbers are visible".to_owned())
    } else {
        Err("page frame numbers read as 0 (needs CAP_SYS_ADMIN)".to_owned())
    }
}

fn probe_userfaultfd() -> Result<String, String> {
    let device = Path::new("/dev/userfaultfd").exists();
    match crac_sys::probe::userfaultfd() {
        Ok(()) => Ok(format!(
            "userfaultfd(2) with fork, remap, remove and unmap events works{}",
            if device {
                "; /dev/userfaultfd exists"
            } else {
                ""
            }
        )),
        Err(e) => Err(format!(
            "userfaultfd(2) failed: {e}{}",
            if device {
                "; /dev/userfaultfd exists"
            } else {
                ""
            }
        )),
    }
}

fn probe_time_namespace() -> Result<String, String> {
    match fs::read_link("/proc/self/ns/time") {
        Ok(ns) => Ok(format!("{}", ns.display())),
        Err(e) => Err(format!(
            "/proc/self/ns/time: {e} (kernel without CONFIG_TIME_NS?)"
        )),
    }
}

fn probe_cap(caps: Option<u64>, cap: u32, name: &str) -> Result<String, String> {
    if has_cap(caps, cap) {
        Ok(format!("{name} effective"))
    } else {
        Err(format!("{name} is not effective"))
    }
}

/// Runs every probe.
fn probes() -> Vec<Probe> {
    let caps = effective_caps();
    vec![
        Probe {
            name: "clone3 set_tid",
            required: true,
            affects:
                "restore: the restored process and its threads get their original PID and TIDs",
            result: probe_clone3_set_tid(),
        },
        Probe {
            name: "capabilities",
            required: true,
            affects: "restore: choosing PIDs and setting the memory layout",
            result: probe_restore_caps(caps),
        },
        Probe {
            name: "PR_SET_MM_MAP",
            required: true,
            affects:
                "restore: the memory layout fields (code, data, brk, stack, argv, env, auxv, exe)",
            result: probe_prctl_mm_map(),
        },
        Probe {
            name: "vDSO layout",
            required: true,
            affects: "restore: the vDSO block is moved to where the image had it",
            result: probe_vdso(),
        },
        Probe {
            name: "pagemap PFNs",
            required: false,
            affects: "checkpoint: zero pages are recognised and left out (without: larger images)",
            result: probe_pagemap_pfns(),
        },
        Probe {
            name: "CAP_SYS_RESOURCE",
            required: false,
            affects:
                "restore: hard resource limits above the restoring process's cannot be restored",
            result: probe_cap(caps, CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE"),
        },
        Probe {
            name: "CAP_SYS_PTRACE",
            required: false,
            affects: "restore: lazy loading (a userfaultfd that also takes the kernel's own accesses and reports forks; unless vm.unprivileged_userfaultfd is 1)",
            result: probe_cap(caps, CAP_SYS_PTRACE, "CAP_SYS_PTRACE"),
        },
        Probe {
            name: "userfaultfd",
            required: false,
            affects: "restore: lazy loading of memory (restores are eager without it)",
            result: probe_userfaultfd(),
        },
        Probe {
            name: "time namespaces",
            required: false,
            affects: "restore --pidns: monotonic clocks continue from the checkpoint",
            result: probe_time_namespace(),
        },
        Probe {
            name: "restore --pidns",
            required: false,
            affects: "restore --pidns: copies with the image's PID in namespaces of their own (for a user other than root, the only way to restore without capabilities)",
            result: crac_engine::restore::pidns::probe(),
        },
    ]
}

/// Runs `crac check`.
pub fn check(out: Reporter) -> Result<ExitCode, CheckError> {
    let probes = probes();
    let width = probes.iter().map(|p| p.name.len()).max().unwrap_or(0);
    let mut missing = Vec::new();
    for p in &probes {
        match &p.result {
            Ok(detail) => println!("{:<8} {:<width$}  {detail}", "OK", p.name),
            Err(why) => {
                let label = if p.required { "MISSING" } else { "absent" };
                println!("{label:<8} {:<width$}  {why}", p.name);
                println!("{:<8} {:<width$}  affects {}", "", "", p.affects);
                if p.required {
                    missing.push(p.name);
                }
            }
        }
    }
    let pidns = probes
        .iter()
        .any(|p| p.name == "restore --pidns" && p.result.is_ok());
    if missing.is_empty() {
        out.status("everything the engine needs is here");
        Ok(ExitCode::SUCCESS)
    } else if pidns {
        out.status(format!(
            "restores in place need root or CAP_CHECKPOINT_RESTORE here (missing: {}); \
             `crac restore --pidns` works for this user",
            missing.join(", ")
        ));
        Ok(ExitCode::SUCCESS)
    } else {
        Err(CheckError::Missing { missing })
    }
}
