"""Starts one more sleeping thread each time a line arrives on stdin; prints each new thread's id."""

import sys
import threading
import time


def sleeper() -> None:
    while True:
        time.sleep(0.05)


print(threading.get_native_id(), flush=True)
for _ in sys.stdin:
    started = threading.Event()

    def run(started: threading.Event = started) -> None:
        print(threading.get_native_id(), flush=True)
        started.set()
        sleeper()

    threading.Thread(target=run, daemon=True).start()
    started.wait()
