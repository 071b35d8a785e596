//! Who a restored process runs as: `creds FILE` starts a second thread,
//! prints its credentials (`pre KEY: ...`), checkpoints itself, and after
//! restore prints them as `/proc` shows them for the main thread and for
//! the other thread, then
//! tries to open FILE for writing. Lines:
//! `main Uid: ...`, `main Gid: ...`, `main Groups: ...`, `main CapEff: ...`,
//! `main CapPrm: ...`, `main NoNewPrivs: ...`, the same with `thread`,
//! `dumpable: N`, then `write FILE: ok` or `write FILE: denied (errno N)`,
//! then (`creds FILE MAPPED`) `mapped: ` and the first line of MAPPED,
//! which it maps read-only before the checkpoint, then `CREDS DONE`.

use std::sync::mpsc;

const KEYS: [&str; 9] = [
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
];

fn status_lines(who: &str, path: &str) -> Vec<String> {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| {
        println!("FAILED: reading {path}: {e}");
        std::process::exit(1)
    });
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            KEYS.contains(&k).then(|| {
                format!(
                    "{who} {k}: {}",
                    v.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            })
        })
        .collect()
}

fn main() {
    crac::init();
    let file = std::env::args().nth(1).unwrap_or_else(|| {
        println!("FAILED: usage: creds FILE");
        std::process::exit(2)
    });
    // `creds FILE MAPPED`: MAPPED mapped privately, read-only; its first
    // line is printed after the restore.
    let mapped = std::env::args().nth(2).map(|p| map_file(&p));
    // A second thread that reports its own credentials once asked to, after
    // the restore: credentials are per thread.
    let (ask_tx, ask_rx) = mpsc::channel::<()>();
    let (tell_tx, tell_rx) = mpsc::channel::<Vec<String>>();
    let worker = std::thread::spawn(move || {
        if ask_rx.recv().is_ok() {
            let _ = tell_tx.send(status_lines("thread", "/proc/thread-self/status"));
        }
    });
    for l in status_lines("pre", "/proc/thread-self/status") {
        println!("{l}");
    }
    println!("pre-checkpoint PID: {}", std::process::id());
    if let Err(e) = crac::checkpoint_restore() {
        println!("FAILED: checkpoint: {e}");
        std::process::exit(1);
    }
    println!("post-restore PID: {}", std::process::id());
    for l in status_lines("main", "/proc/thread-self/status") {
        println!("{l}");
    }
    ask_tx.send(()).expect("worker alive");
    for l in tell_rx.recv().expect("worker answers") {
        println!("{l}");
    }
    worker.join().expect("worker ends");
    // SAFETY: PR_GET_DUMPABLE takes no pointers.
    #[allow(unsafe_code)]
    let dumpable = unsafe { libc::prctl(libc::PR_GET_DUMPABLE) };
    println!("dumpable: {dumpable}");
    match std::fs::OpenOptions::new().append(true).open(&file) {
        Ok(_) => println!("write {file}: ok"),
        Err(e) => println!(
            "write {file}: denied (errno {})",
            e.raw_os_error().unwrap_or(0)
        ),
    }
    if let Some(m) = mapped {
        let line = m.split(|&b| b == b'\n').next().unwrap_or_default();
        println!("mapped: {}", String::from_utf8_lossy(line));
    }
    println!("CREDS DONE");
}

/// Maps `path` privately, read-only, for the rest of the program.
fn map_file(path: &str) -> &'static [u8] {
    let data = std::fs::read(path).unwrap_or_else(|e| {
        println!("FAILED: reading {path}: {e}");
        std::process::exit(1)
    });
    let f = std::fs::File::open(path).expect("open");
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh private read-only mapping of the whole file.
    #[allow(unsafe_code)]
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            data.len(),
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED, "mmap {path}");
    // SAFETY: the mapping is never unmapped, so the slice stays valid.
    #[allow(unsafe_code)]
    unsafe {
        std::slice::from_raw_parts(p as *const u8, data.len())
    }
}
