//! The API's semantics with the `simulate` engine: CRaC's ContextOrderTest,
//! FailedResourceTest, RecursiveCheckpointTest and DryRunTest, plus
//! registration forms, configuration errors and restore facts.

mod common;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use common::{
    checkpoint_error, configure, lock, problem_messages, scoped_context, take, Log, Recorder,
};
use crac::{
    CheckpointProblem, CheckpointRestoreError, ConfigError, Context, Phase, Resource,
    RestoreProblem,
};

fn simulate() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    configure("simulate", &dir.path().join("image"));
    dir
}

fn weak(r: &Arc<impl Resource + 'static>) -> Weak<dyn Resource> {
    Arc::downgrade(r) as Weak<dyn Resource>
}

#[test]
fn global_context_notifies_in_reverse_then_in_order() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let (r1, r2, r3) = (
        Recorder::new("r1", &log),
        Recorder::new("r2", &log),
        Recorder::new("r3", &log),
    );
    for r in [&r1, &r2, &r3] {
        crac::global_context().register_weak(weak(r));
    }
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        take(&log),
        [
            "r3-before",
            "r2-before",
            "r1-before",
            "r1-after",
            "r2-after",
            "r3-after"
        ]
    );
}

#[test]
fn nested_contexts_keep_the_order_inside() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    let inner = Arc::new(Context::new());
    ctx.register(Recorder::new("r1", &log));
    ctx.register(inner.clone());
    inner.register(Recorder::new("c1", &log));
    inner.register(Recorder::new("c2", &log));
    ctx.register(Recorder::new("r2", &log));
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        take(&log),
        [
            "r2-before",
            "c2-before",
            "c1-before",
            "r1-before",
            "r1-after",
            "c1-after",
            "c2-after",
            "r2-after"
        ]
    );
}

/// FailedResourceTest: one failing resource, one problem, after_restore
/// still runs, no RestoreError, the process goes on.
#[test]
fn failed_resource_aborts_and_still_gets_after_restore() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    ctx.register(Recorder::failing("bad", &log, true, false));
    let before = crac::restore_info().restore_count;
    let e = checkpoint_error();
    assert_eq!(
        e.to_string(),
        "checkpoint failed: resource bad failed in before_checkpoint: bad refused"
    );
    let [CheckpointProblem::Hook(h)] = &e.into_problems()[..] else {
        panic!("expected one hook failure");
    };
    assert_eq!((h.resource(), h.phase()), ("bad", Phase::BeforeCheckpoint));
    assert_eq!(take(&log), ["bad-before", "bad-after"]);
    assert_eq!(
        crac::restore_info().restore_count,
        before,
        "no restore happened"
    );
}

/// ContextOrderTest.testThrowing + DryRunTest: everyone is notified, all
/// failures (nested ones flattened, open descriptors, after_restore of the
/// rollback) come in one CheckpointError.
#[test]
fn every_problem_is_reported_at_once() {
    let _g = lock();
    let dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    let nested = Arc::new(Context::new());
    ctx.register(Recorder::new("a", &log));
    ctx.register(Recorder::failing("b", &log, true, false));
    ctx.register(nested.clone());
    nested.register(Recorder::failing("c", &log, true, true));
    ctx.register(Recorder::failing("d", &log, false, true));
    let path = std::fs::canonicalize(dir.path()).unwrap().join("out.txt");
    let file = File::create(&path).unwrap();

    let e = checkpoint_error();
    assert_eq!(
        take(&log),
        [
            "d-before", "c-before", "b-before", "a-before", "a-after", "b-after", "c-after",
            "d-after"
        ]
    );
    let fd = file.as_raw_fd();
    assert_eq!(
        problem_messages(&e),
        [
            "resource c failed in before_checkpoint: c refused".to_owned(),
            "resource b failed in before_checkpoint: b refused".to_owned(),
            format!(
                "file descriptor {fd} is open: {} (regular file); close it in \
                 before_checkpoint or add a resource policy (type: file, action: close)",
                path.display()
            ),
            "resource c failed in after_restore: c after failed".to_owned(),
            "resource d failed in after_restore: d after failed".to_owned(),
        ]
    );
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint failed with 5 problems: resource c failed in before_checkpoint: \
             c refused; resource b failed in before_checkpoint: b refused; file descriptor \
             {fd} is open: {} (regular file); close it in before_checkpoint or add a resource \
             policy (type: file, action: close); resource c failed in after_restore: c after \
             failed; resource d failed in after_restore: d after failed",
            path.display()
        )
    );
    assert!(matches!(
        e.problems().nth(2),
        Some(CheckpointProblem::OpenFd(info)) if info.fd() == fd
    ));

    // The process goes on, and once the file is closed the checkpoint works.
    drop(file);
    drop(ctx);
    crac::checkpoint_restore().unwrap();
}

#[test]
fn failing_after_restore_after_a_checkpoint_is_a_restore_error() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    ctx.register(Recorder::failing("x", &log, false, true));
    ctx.register(Recorder::failing("y", &log, false, true));
    let before = crac::restore_info().restore_count;
    let err = crac::checkpoint_restore().unwrap_err();
    let CheckpointRestoreError::Restore(e) = err else {
        panic!("expected a restore error, got {err:?}");
    };
    assert_eq!(
        e.to_string(),
        "restore failed with 2 problems: resource x failed in after_restore: x after failed; \
         resource y failed in after_restore: y after failed"
    );
    let RestoreProblem::Hook(h) = e.problems().next().unwrap() else {
        unreachable!()
    };
    assert_eq!(h.phase(), Phase::AfterRestore);
    assert_eq!(take(&log), ["y-before", "x-before", "x-after", "y-after"]);
    assert_eq!(
        crac::restore_info().restore_count,
        before + 1,
        "it was restored"
    );
}

#[test]
fn weakly_registered_resources_are_skipped_once_dropped() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    let kept = Recorder::new("kept", &log);
    let dropped = Recorder::new("dropped", &log);
    ctx.register_weak(weak(&kept));
    ctx.register_weak(weak(&dropped));
    assert_eq!(ctx.len(), 2);
    drop(dropped);
    assert_eq!(ctx.len(), 1);
    crac::checkpoint_restore().unwrap();
    assert_eq!(take(&log), ["kept-before", "kept-after"]);
}

#[test]
fn strongly_registered_resources_are_kept_alive() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    ctx.register(Recorder::new("owned", &log));
    crac::checkpoint_restore().unwrap();
    assert_eq!(take(&log), ["owned-before", "owned-after"]);
}

#[test]
fn closures_are_resources() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    let (l1, l2) = (log.clone(), log.clone());
    ctx.register_fn(
        move |_| {
            l1.lock().unwrap().push("fn-before".into());
            Ok(())
        },
        move |_| {
            l2.lock().unwrap().push("fn-after".into());
            Err(std::io::Error::other("no luck").into())
        },
    );
    let line = line!() - 10;
    let err = crac::checkpoint_restore().unwrap_err();
    assert_eq!(take(&log), ["fn-before", "fn-after"]);
    assert_eq!(
        err.to_string(),
        format!(
            "restore failed: resource closure registered at crates/crac/tests/api.rs:{line}:9 \
             failed in after_restore: no luck"
        )
    );
}

/// ContextOrderTest.testOrder: a registration during a notification counts
/// from the next checkpoint, except into a context that has not run yet.
#[test]
fn registration_during_notification() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    let later = Arc::new(Context::new());
    ctx.register(later.clone()); // registered first, so notified last
    let round = Arc::new(AtomicUsize::new(0));
    let (ctx_w, later_w, log_b, log_a) = (
        Arc::downgrade(&ctx),
        Arc::downgrade(&later),
        log.clone(),
        log.clone(),
    );
    let (round_b, round_a) = (round.clone(), round.clone());
    ctx.register_fn(
        move |_| {
            log_b.lock().unwrap().push("reg-before".into());
            if round_b.load(Ordering::SeqCst) == 0 {
                let ctx = ctx_w.upgrade().unwrap();
                ctx.register(Recorder::new("next", &log_b));
                later_w
                    .upgrade()
                    .unwrap()
                    .register(Recorder::new("late", &log_b));
            }
            Ok(())
        },
        move |c| {
            log_a.lock().unwrap().push("reg-after".into());
            if round_a.fetch_add(1, Ordering::SeqCst) == 0 {
                c.register(Recorder::new("from-after", &log_a));
            }
            Ok(())
        },
    );

    crac::checkpoint_restore().unwrap();
    assert_eq!(
        take(&log),
        ["reg-before", "late-before", "late-after", "reg-after"]
    );
    crac::checkpoint_restore().unwrap();
    assert_eq!(
        take(&log),
        [
            "from-after-before",
            "next-before",
            "reg-before",
            "late-before",
            "late-after",
            "reg-after",
            "next-after",
            "from-after-after"
        ]
    );
}

/// RecursiveCheckpointTest, concurrent part: ten threads, one checkpoint at
/// a time.
#[test]
fn concurrent_checkpoints_are_serialised() {
    let _g = lock();
    let _dir = simulate();
    let ctx = scoped_context();
    let active = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let rounds = Arc::new(AtomicUsize::new(0));
    let (a1, a2, m, r) = (active.clone(), active.clone(), max.clone(), rounds.clone());
    ctx.register_fn(
        move |_| {
            let now = a1.fetch_add(1, Ordering::SeqCst) + 1;
            m.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(2));
            Ok(())
        },
        move |_| {
            std::thread::sleep(Duration::from_millis(2));
            a2.fetch_sub(1, Ordering::SeqCst);
            r.fetch_add(1, Ordering::SeqCst);
            Ok(())
        },
    );
    let threads: Vec<_> = (0..10)
        .map(|_| std::thread::spawn(crac::checkpoint_restore))
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    assert_eq!(rounds.load(Ordering::SeqCst), 10);
    assert_eq!(max.load(Ordering::SeqCst), 1, "two checkpoints overlapped");
}

/// RecursiveCheckpointTest: a call from a hook fails, the outer one works.
#[test]
fn recursive_checkpoint_fails_clearly() {
    let _g = lock();
    let _dir = simulate();
    let ctx = scoped_context();
    let inner: Arc<Mutex<Vec<String>>> = Arc::default();
    let (i1, i2) = (inner.clone(), inner.clone());
    ctx.register_fn(
        move |_| {
            let e = crac::checkpoint_restore().unwrap_err();
            assert!(matches!(
                e.as_checkpoint().unwrap().problems().next(),
                Some(CheckpointProblem::Recursive)
            ));
            i1.lock().unwrap().push(e.to_string());
            Ok(())
        },
        move |_| {
            i2.lock()
                .unwrap()
                .push(crac::checkpoint_restore().unwrap_err().to_string());
            Ok(())
        },
    );
    crac::checkpoint_restore().unwrap();
    let expected = "checkpoint failed: recursive checkpoint is not allowed: checkpoint_restore \
                    was called from a before_checkpoint or after_restore hook";
    assert_eq!(*inner.lock().unwrap(), [expected, expected]);
}

#[test]
fn not_configured_is_an_error_and_notifies_no_one() {
    let _g = lock();
    let _dir = simulate();
    std::env::remove_var("CRAC_CHECKPOINT_TO");
    let log = Log::default();
    let ctx = scoped_context();
    ctx.register(Recorder::new("r", &log));
    let e = checkpoint_error();
    assert!(matches!(
        e.problems().next(),
        Some(CheckpointProblem::Config(ConfigError::NotConfigured))
    ));
    assert_eq!(
        e.to_string(),
        "checkpoint failed: checkpoints are not configured: set CRAC_CHECKPOINT_TO to an \
         image directory"
    );
    std::env::set_var("CRAC_CHECKPOINT_TO", "");
    assert_eq!(checkpoint_error().to_string(), e.to_string());
    assert!(take(&log).is_empty());
}

#[test]
fn unknown_engine_and_option_are_errors() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    ctx.register(Recorder::new("r", &log));

    std::env::set_var("CRAC_ENGINE", "criu");
    assert_eq!(
        checkpoint_error().to_string(),
        "checkpoint failed: unknown engine \"criu\" in CRAC_ENGINE (known: native, simulate, \
         pause)"
    );
    std::env::set_var("CRAC_ENGINE", "native");
    std::env::set_var("CRAC_ENGINE_OPTIONS", "keep_running=true,turbo=on");
    assert_eq!(
        checkpoint_error().to_string(),
        "checkpoint failed: unknown option \"turbo\" for engine native in CRAC_ENGINE_OPTIONS \
         (known: keep_running, compress)"
    );
    std::env::set_var("CRAC_ENGINE_OPTIONS", "keep_running=yes");
    assert!(matches!(
        checkpoint_error().problems().next(),
        Some(CheckpointProblem::Config(ConfigError::InvalidValue { .. }))
    ));
    std::env::remove_var("CRAC_ENGINE_OPTIONS");
    assert!(take(&log).is_empty());
}

#[test]
fn image_directory_expands_the_pid() {
    let _g = lock();
    let _dir = simulate();
    std::env::set_var("CRAC_CHECKPOINT_TO", "/tmp/crac-%p/image");
    std::env::set_var("CRAC_ENGINE_OPTIONS", "keep_running=true");
    std::env::set_var("CRAC_ENGINE", "native");
    let config = crac::Config::from_env().unwrap();
    assert_eq!(
        config.checkpoint_to(),
        std::path::Path::new(&format!("/tmp/crac-{}/image", std::process::id()))
    );
    assert_eq!(config.engine(), crac::EngineKind::Native);
    assert!(config.keep_running());
    std::env::remove_var("CRAC_ENGINE_OPTIONS");
}

#[test]
fn restore_info_counts_restores() {
    let _g = lock();
    let _dir = simulate();
    let before = crac::restore_info();
    let t0 = SystemTime::now();
    crac::checkpoint_restore().unwrap();
    let info = crac::restore_info();
    assert!(info.restored);
    assert_eq!(info.restore_count, before.restore_count + 1);
    let restore_time = info.restore_time.unwrap();
    assert!(restore_time >= t0 && restore_time <= SystemTime::now());
    assert!(info.uptime_since_restore.unwrap() < Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(20));
    assert!(crac::restore_info().uptime_since_restore.unwrap() >= Duration::from_millis(20));
}

#[test]
fn panicking_hook_is_a_problem_not_a_crash() {
    let _g = lock();
    let _dir = simulate();
    let log = Log::default();
    let ctx = scoped_context();
    ctx.register(Recorder::new("calm", &log));
    ctx.register_fn(|_| panic!("hook exploded"), |_| Ok(()));
    let e = checkpoint_error();
    assert_eq!(e.problems().len(), 1);
    assert!(e
        .to_string()
        .ends_with("failed in before_checkpoint: panicked: hook exploded"));
    assert_eq!(take(&log), ["calm-before", "calm-after"]);
}
