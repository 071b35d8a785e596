//! Restores an image and waits for it: `restore_image DIR` (a development
//! aid; users run `crac restore DIR`).
fn main() {
    let dir = std::env::args().nth(1).expect("usage: restore_image DIR");
    match crac_engine::restore::restore(&dir, Default::default()) {
        Ok(r) => {
            eprintln!(
                "restored pid {} ({} threads) in {:?}",
                r.pid, r.threads, r.elapsed
            );
            let status = crac_engine::restore::wait_and_forward(r.pid);
            eprintln!("exited: {status:?}");
        }
        Err(e) => {
            eprintln!("error: {e}");
            let mut s = std::error::Error::source(&e);
            while let Some(c) = s {
                eprintln!("  caused by: {c}");
                s = c.source();
            }
            std::process::exit(1);
        }
    }
}
