//! CRaC's classic example: append "hello", checkpoint, append " there!\n".
//!
//! `writer FILE` closes the file in `before_checkpoint` and reopens it in
//! `after_restore`. `writer FILE --leave-open` keeps it open and deletes it
//! (an open file still at its path would be carried), so the checkpoint must
//! fail naming the file, and the program goes on.
//! Configure with CRAC_CHECKPOINT_TO (and CRAC_ENGINE).
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crac::{BoxError, Context, Resource};

struct Output {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Output {
    fn open(&self) -> std::io::Result<()> {
        let f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)?;
        *self.file.lock().unwrap() = Some(f);
        Ok(())
    }
    fn write(&self, s: &str) {
        let mut g = self.file.lock().unwrap();
        g.as_mut()
            .expect("file is open")
            .write_all(s.as_bytes())
            .unwrap();
    }
}

impl Resource for Output {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        self.file.lock().unwrap().take();
        Ok(())
    }
    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        Ok(self.open()?)
    }
}

fn main() {
    crac::init();
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().expect("usage: writer FILE [--leave-open]"));
    let leave_open = args.next().as_deref() == Some("--leave-open");
    let out = Arc::new(Output {
        path,
        file: Mutex::new(None),
    });
    out.open().unwrap();
    if leave_open {
        std::fs::remove_file(&out.path).unwrap();
    } else {
        crac::global_context().register(out.clone());
    }
    out.write("hello");
    println!("pre-checkpoint PID: {}", std::process::id());
    match crac::checkpoint_restore() {
        Ok(()) => {
            println!("post-restore PID: {}", std::process::id());
            out.write(" there!\n");
        }
        Err(e) => {
            println!("{e}");
            println!("still running: PID {}", std::process::id());
            std::process::exit(3);
        }
    }
}
