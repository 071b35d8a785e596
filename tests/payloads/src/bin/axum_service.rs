//! An async Rust service checkpointed unchanged: a `#[tokio::main]` axum
//! server whose only crac line is `crac::init()` (plus the optional
//! self-checkpoint route).
//!
//! `axum_service [--entries N]`
//!
//! * builds a warm table of N entries (default 2^21: about 1 s in a debug
//!   build) with a deliberately slow hash and prints `warm after X ms
//!   (checksum C)`;
//! * listens on 127.0.0.1 port 0 and prints `listening on port P`, then
//!   `serving`;
//! * a `tokio::time::interval` task ticks every 50 ms;
//! * routes (each answers with a plain-text body):
//!   - `/count`: increments the request counter and returns it;
//!   - `/state`: the checksum of the warm table, computed again from memory;
//!   - `/ticks`: how many times the interval ticked;
//!   - `/pid`: the process id;
//!   - `/checkpoint`: answers `checkpoint scheduled`, then a task checkpoints
//!     the process from `tokio::task::spawn_blocking` once the connection
//!     that asked is gone (an open connection would refuse the checkpoint)
//!     and prints `self-checkpoint: restored`, `self-checkpoint: kept
//!     running` or `self-checkpoint failed: ERROR`;
//! * on SIGINT (`tokio::signal::ctrl_c`) it stops accepting, finishes the
//!   connections it has, prints `shut down gracefully after K requests` and
//!   exits 0.
//!
//! Start it with checkpoints configured, e.g.
//! `crac run --checkpoint-to /tmp/svc -- axum_service`, then
//! `crac checkpoint PID` and `crac restore /tmp/svc`.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use payload::slow_hash;

/// What the handlers share.
struct App {
    /// The warm state: built once at start, read by `/state`.
    table: Vec<u64>,
    /// Requests to `/count`.
    count: AtomicU64,
    /// Ticks of the interval task.
    ticks: AtomicU64,
}

/// An order-dependent checksum of the table.
fn checksum(table: &[u64]) -> u64 {
    table.iter().fold(0xcbf2_9ce4_8422_2325, |h, v| {
        (h ^ v).wrapping_mul(0x100_0000_01b3)
    })
}

async fn count(State(app): State<Arc<App>>) -> String {
    (app.count.fetch_add(1, Ordering::SeqCst) + 1).to_string()
}

async fn state(State(app): State<Arc<App>>) -> String {
    format!("{:#018x}", checksum(&app.table))
}

async fn ticks(State(app): State<Arc<App>>) -> String {
    app.ticks.load(Ordering::SeqCst).to_string()
}

async fn pid() -> String {
    std::process::id().to_string()
}

/// Schedules a checkpoint of the whole process from a blocking task.
async fn checkpoint() -> &'static str {
    tokio::spawn(async {
        // Let the connection that asked close first: the client reads the
        // answer to its end (`Connection: close`), then hyper drops it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let outcome = tokio::task::spawn_blocking(|| {
            crac::checkpoint_restore().map(|()| crac::restore_info().restore_count)
        })
        .await;
        match outcome {
            Ok(Ok(0)) => println!("self-checkpoint: kept running"),
            Ok(Ok(_)) => println!("self-checkpoint: restored"),
            Ok(Err(e)) => println!("self-checkpoint failed: {e}"),
            Err(e) => println!("self-checkpoint failed: the blocking task ended: {e}"),
        }
    });
    "checkpoint scheduled"
}

fn parse_args() -> usize {
    let mut entries = 1 << 21;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--entries" => {
                entries = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--entries takes a number");
            }
            other => panic!("usage: axum_service [--entries N] (got {other:?})"),
        }
    }
    entries
}

#[tokio::main]
async fn main() {
    crac::init();
    let entries = parse_args();
    println!("PID {}", std::process::id());

    let start = Instant::now();
    let table: Vec<u64> = (0..entries as u64).map(slow_hash).collect();
    println!(
        "warm after {} ms (checksum {:#018x})",
        start.elapsed().as_millis(),
        checksum(&table)
    );
    let app = Arc::new(App {
        table,
        count: AtomicU64::new(0),
        ticks: AtomicU64::new(0),
    });

    let ticker = Arc::clone(&app);
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_millis(50));
        loop {
            interval.tick().await;
            ticker.ticks.fetch_add(1, Ordering::SeqCst);
        }
    });

    let router = Router::new()
        .route("/count", get(count))
        .route("/state", get(state))
        .route("/ticks", get(ticks))
        .route("/pid", get(pid))
        .route("/checkpoint", get(checkpoint))
        .with_state(Arc::clone(&app));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    println!("listening on port {port}");
    println!("serving");
    let shutdown = async {
        tokio::signal::ctrl_c().await.expect("wait for SIGINT");
        println!("SIGINT: shutting down");
    };
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .expect("serve");
    println!(
        "shut down gracefully after {} requests",
        app.count.load(Ordering::SeqCst)
    );
}
