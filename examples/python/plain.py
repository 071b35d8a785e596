"""A Python program that knows nothing of crac: `crac run` preloads libcrac
into the interpreter, and `crac checkpoint PID` checkpoints it from outside.

It keeps a list of a million numbers; on SIGUSR1 it prints their checksum.
"""
import os
import signal
import time
import zlib

data = [i * i for i in range(1_000_000)]
ticks = 0


def check(signum, frame):
    total = zlib.crc32(repr(data).encode())
    print(f"check {os.getpid()}: ok, {len(data)} numbers, checksum {total}", flush=True)


signal.signal(signal.SIGUSR1, check)
print(f"ready PID: {os.getpid()}", flush=True)
while True:
    time.sleep(0.05)
    ticks += 1
