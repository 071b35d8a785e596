//! A counter that checkpoints itself halfway and keeps counting after the
//! restore. Its log file is closed before the checkpoint and reopened after.
//!
//! ```text
//! CRAC_ENGINE=simulate CRAC_CHECKPOINT_TO=/tmp/counter-%p \
//!     cargo run -p crac --example counter
//! ```
//!
//! With `CRAC_ENGINE=pause` the process waits after "checkpointing"; wake it
//! with `crac restore /tmp/counter-PID` from another terminal.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crac::{BoxError, Context, Resource};

/// Appends lines to a log file that must not stay open across a checkpoint.
struct Log {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Log {
    fn open(path: PathBuf) -> std::io::Result<Self> {
        let file = File::options().create(true).append(true).open(&path)?;
        Ok(Log {
            path,
            file: Mutex::new(Some(file)),
        })
    }

    fn line(&self, text: &str) {
        if let Some(file) = self.file.lock().unwrap().as_mut() {
            let _ = writeln!(file, "{text}");
        }
    }
}

impl Resource for Log {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        println!("closing {}", self.path.display());
        self.file.lock().unwrap().take();
        Ok(())
    }

    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        println!("reopening {}", self.path.display());
        let file = File::options().append(true).open(&self.path)?;
        *self.file.lock().unwrap() = Some(file);
        Ok(())
    }
}

fn main() {
    crac::init();
    let log = match Log::open(std::env::temp_dir().join("crac-counter.log")) {
        Ok(log) => Arc::new(log),
        Err(e) => {
            eprintln!("cannot open the log: {e}");
            std::process::exit(1);
        }
    };
    crac::global_context().register(log.clone());
    crac::global_context().register_fn(
        |_| {
            println!("checkpointing");
            Ok(())
        },
        |_| {
            println!("restored");
            Ok(())
        },
    );

    for i in 0..10 {
        println!("count {i}");
        log.line(&format!("count {i}"));
        if i == 4 {
            if let Err(e) = crac::checkpoint_restore() {
                eprintln!("{e:#}");
            }
            let info = crac::restore_info();
            println!(
                "restored: {}, restores: {}, since restore: {:?}",
                info.restored, info.restore_count, info.uptime_since_restore
            );
        }
    }
}
