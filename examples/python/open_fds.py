"""crac's Python example: descriptors that cannot cross a checkpoint.

A deleted file and a connected TCP socket are open: crac.checkpoint_restore()
raises one crac.CheckpointError naming both, and the program goes on. Once
they are closed (a before_checkpoint hook is the usual place), the
checkpoint succeeds.

Run: crac run --checkpoint-to DIR -- python3 open_fds.py PORT FILE
(PORT: a TCP port listening on 127.0.0.1; FILE: a path to create and delete)
then: crac restore DIR
"""
import os
import socket
import sys

import crac

port = int(sys.argv[1])
path = sys.argv[2]

scratch = open(path, "w+b")
scratch.write(b"scratch data")
os.unlink(path)
conn = socket.create_connection(("127.0.0.1", port))
local = conn.getsockname()[1]
print(
    f"runtime {crac.runtime()}, file fd {scratch.fileno()}, "
    f"socket fd {conn.fileno()}, local port {local}",
    flush=True,
)

try:
    crac.checkpoint_restore()
    print("no error", flush=True)
except crac.CheckpointError as e:
    print(f"CheckpointError: {e}", flush=True)
print(f"goes on, PID {os.getpid()}", flush=True)

scratch.close()
conn.close()
crac.checkpoint_restore()
print(f"restored PID {os.getpid()}, restores {crac.restore_info().restore_count}", flush=True)
