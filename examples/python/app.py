"""crac's Python example: a warm dict of N entries kept across restores.

Run: crac run --checkpoint-to DIR -- python3 app.py [N] [fail|fail-after]
then: crac restore DIR   (as many times as wanted)

`fail`: two resources raise in before_checkpoint, so no checkpoint is made;
`fail-after`: two after-restore hooks raise in the restored process.
"""
import os
import sys
import time
import zlib

import crac

n = int(sys.argv[1]) if len(sys.argv) > 1 else 2_000_000
mode = sys.argv[2] if len(sys.argv) > 2 else ""


def checksum(d):
    return zlib.crc32(repr(sorted(d.items())[:: max(1, len(d) // 1000)]).encode()) ^ len(d)


@crac.register_before_snapshot
def first_before():
    print("before first", flush=True)


@crac.register_before_snapshot
def second_before():
    print("before second", flush=True)


@crac.register_after_restore
def first_after():
    print("after first", flush=True)


@crac.register_after_restore
def second_after():
    print("after second", flush=True)


class Failing(crac.Resource):
    def before_checkpoint(self, context):
        raise ValueError("cannot checkpoint: busy")


class Quiet(crac.Resource):
    def before_checkpoint(self, context):
        raise RuntimeError("also broken")


class Reconnect(crac.Resource):
    def after_restore(self, context):
        print("after Reconnect", flush=True)
        raise ConnectionError("database unreachable")


def third_after():
    print("after third", flush=True)
    raise KeyError("session")


t0 = time.monotonic()
data = {f"key{i}": i * 7 for i in range(n)}
start = time.monotonic() - t0
total = checksum(data)
print(f"built {n} entries in {start:.3f} s, checksum {total}, runtime {crac.runtime()}", flush=True)

if mode == "fail":
    crac.get_global_context().register(Failing())
    crac.get_global_context().register(Quiet())
    try:
        crac.checkpoint_restore()
        print("no error", flush=True)
    except crac.CheckpointError as e:
        print(f"CheckpointError: {e}", flush=True)
    print(f"goes on, PID {os.getpid()}", flush=True)
    sys.exit(0)

if mode == "fail-after":
    # Registered after the decorated hooks: they run after them, in order.
    crac.get_global_context().register(Reconnect())
    crac.register_after_restore(third_after)
    print(f"pre-checkpoint PID {os.getpid()}", flush=True)
    try:
        crac.checkpoint_restore()
        print("no error", flush=True)
    except (crac.CheckpointError, crac.RestoreError) as e:
        print(f"{type(e).__name__}: {e}", flush=True)
    info = crac.restore_info()
    ok = "intact" if checksum(data) == total else "CHANGED"
    print(f"goes on, PID {os.getpid()}, restores {info.restore_count}, dict {ok}", flush=True)
    sys.exit(0)

print(f"pre-checkpoint PID {os.getpid()}", flush=True)
crac.checkpoint_restore()
info = crac.restore_info()
# Seconds from `crac restore` starting to the process running again, and to
# here (after the after_restore hooks).
resumed = info.restore_time - info.restore_started
here = time.time() - info.restore_started
print(f"start {start:.3f} s, restore {resumed:.3f} s, restore to after hooks {here:.3f} s, {start / here:.0f}x faster", flush=True)
ok = "intact" if checksum(data) == total else "CHANGED"
print(f"restored PID {os.getpid()}, restores {info.restore_count}, dict {ok}, checksum {checksum(data)}", flush=True)
