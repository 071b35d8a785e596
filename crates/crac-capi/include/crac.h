/*
 * crac.h: Coordinated Restore at Checkpoint for C and other native programs.
 *
 * The C ABI of libcrac.so, built with crac (`cargo build --release
 * --workspace` puts it next to the crac executable, in target/release).
 * Link with `-I crates/crac-capi/include -L target/release -lcrac`.
 *
 * The model is OpenJDK CRaC's: a program registers resources whose
 * callbacks release what cannot survive a checkpoint (files, sockets) and
 * take it back after the restore, then calls crac_checkpoint_restore(),
 * which returns in the restored process. Configuration comes from the
 * environment, as for the Rust crate: CRAC_CHECKPOINT_TO=DIR (the image
 * directory; also opens the control channel for `crac checkpoint PID`),
 * CRAC_ENGINE (native, simulate, pause), CRAC_RESOURCE_POLICIES.
 *
 * A restored program must find every file it had mapped, libcrac.so
 * included, unchanged at the same path.
 */
#ifndef CRAC_H
#define CRAC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. */

/* Success: the process was checkpointed and this is the restored process
 * (or the engine kept it running). */
#define CRAC_OK (0)
/* No checkpoint was made (a callback failed, a file is open, the engine
 * failed, checkpoints are not configured, ...); every resource got its
 * after callback and the process goes on. */
#define CRAC_ERR_CHECKPOINT (1)
/* The checkpoint was made and this is the restored process, but after
 * callbacks failed. */
#define CRAC_ERR_RESTORE (2)
/* An argument was invalid (a NULL pointer where one is required). */
#define CRAC_ERR_INVALID (-1)

/*
 * Initialises crac: records the file descriptors open now as inherited
 * (they pass the checkpoint's open-file check; those open when the library
 * was loaded are recorded already) and, if CRAC_CHECKPOINT_TO is set, opens
 * the control channel. Call it first thing in main. Calling it again does
 * nothing. If CRAC_RESTORE_FROM names an image, it does not return: it
 * restores that image instead and exits with its status.
 *
 * Returns CRAC_OK.
 */
int crac_init(void);

/*
 * Registers a resource in the global context. At a checkpoint, every
 * resource's `before` is called in reverse registration order; after the
 * restore, or after a failed checkpoint, every resource's `after` is called
 * in registration order. Every resource is called even when one fails.
 *
 * name:   names the resource in error texts; copied.
 * before: called before the checkpoint; NULL for nothing.
 * after:  called after the restore or a failed checkpoint; NULL for nothing.
 * arg:    passed to both callbacks.
 *
 * Callbacks return 0, or an error code of the program's choice, which
 * fails the checkpoint (or the restore) and is shown in the error text as
 * "resource NAME failed in before_checkpoint: the callback returned CODE".
 * They run on the thread that checkpoints: the caller of
 * crac_checkpoint_restore(), or the control channel's thread for `crac
 * checkpoint PID`; other threads keep running meanwhile. So the callbacks
 * and `arg` must be usable from any thread, for the rest of the process's
 * life: resources cannot be unregistered.
 *
 * Returns CRAC_OK, or CRAC_ERR_INVALID if name is NULL.
 */
int crac_register(const char *name, int (*before)(void *arg), int (*after)(void *arg),
                  void *arg);

/*
 * Checkpoints the process: calls every `before`, checks that no file
 * descriptor is open that cannot be carried (stdio, descriptors inherited
 * at start and those the engine carries, such as pipes and eventfds, pass),
 * saves the process to CRAC_CHECKPOINT_TO (with the native engine the
 * original process then exits), and returns in the restored process after
 * every `after`.
 *
 * err: NULL, or a buffer of len bytes that receives the whole error text,
 *      every problem ("checkpoint failed with 2 problems: resource db
 *      failed in before_checkpoint: the callback returned 5; file
 *      descriptor 4 is open: /tmp/log (regular file); ..."), NUL-terminated
 *      and truncated to len bytes; "" on success.
 *
 * Returns CRAC_OK (restored, or kept running), CRAC_ERR_CHECKPOINT (no
 * checkpoint; the process goes on) or CRAC_ERR_RESTORE (restored, but
 * `after` callbacks failed). Concurrent calls are serialised; a call from
 * a callback fails with CRAC_ERR_CHECKPOINT.
 */
int crac_checkpoint_restore(char *err, size_t len);

/* Facts about this process's restores (CRaC's CRaCMXBean). */
struct crac_restore_info {
    /* How many times this process was restored. */
    uint32_t restore_count;
    /* 1 if it was restored at least once, else 0. */
    int32_t restored;
    /* When it resumed after the latest restore: wall-clock nanoseconds
     * since the Unix epoch; -1 if never restored. */
    int64_t restore_time_ns;
    /* When the latest restore began (`crac restore` started): wall-clock
     * nanoseconds since the Unix epoch; -1 if never restored. */
    int64_t restore_started_ns;
    /* Time since the latest restore, on the monotonic clock, in
     * nanoseconds; -1 if never restored. */
    int64_t uptime_since_restore_ns;
};

/*
 * Fills *info with the facts about this process's restores.
 *
 * Returns CRAC_OK, or CRAC_ERR_INVALID if info is NULL.
 */
int crac_restore_info(struct crac_restore_info *info);

#ifdef __cplusplus
}
#endif

#endif /* CRAC_H */
