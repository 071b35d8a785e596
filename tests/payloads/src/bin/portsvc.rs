//! `portsvc`: a TCP service whose `after_restore` binds the port named in
//! its environment (`PORT`), as a service meant to be copied does: restored
//! several times with `crac restore --pidns --env PORT=...`, each copy
//! serves on its own port. Each connection gets `pid PID port PORT` and is
//! closed. Prints `ready PID` once serving at start, `serving PORT` after
//! each bind.
use std::io::Write;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crac::{BoxError, Context, Resource};

struct Service {
    listener: Mutex<Option<(TcpListener, u16)>>,
}

impl Service {
    fn bind(&self) -> Result<(), BoxError> {
        let port: u16 = std::env::var("PORT")?.parse()?;
        let l = TcpListener::bind(("127.0.0.1", port))?;
        l.set_nonblocking(true)?;
        *self.listener.lock().unwrap() = Some((l, port));
        println!("serving {port}");
        Ok(())
    }
}

impl Resource for Service {
    fn before_checkpoint(&self, _: &Context) -> Result<(), BoxError> {
        // Each copy binds its own port after the restore.
        self.listener.lock().unwrap().take();
        Ok(())
    }
    fn after_restore(&self, _: &Context) -> Result<(), BoxError> {
        self.bind()
    }
}

fn main() {
    crac::init();
    let svc = Arc::new(Service {
        listener: Mutex::new(None),
    });
    crac::global_context().register(svc.clone());
    svc.bind().expect("PORT names a free port");
    println!("ready {}", std::process::id());
    loop {
        if let Some((l, port)) = &*svc.listener.lock().unwrap() {
            if let Ok((mut c, _)) = l.accept() {
                let _ = writeln!(c, "pid {} port {port}", std::process::id());
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
