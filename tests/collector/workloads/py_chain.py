"""A Python process parked in a known call chain (tests/collector/python): main -> Outer.method
-> callback (called back from C by sorted's key=) -> leaf, which prints "ready" and then sleeps
in a loop on a known line. A second thread parks in worker -> time.sleep."""

import sys
import threading
import time


def worker(ready: threading.Event) -> None:
    ready.set()
    while True:
        time.sleep(0.05)  # WORKER_LINE


def leaf() -> int:
    sys.stdout.write(f"ready {threading.get_native_id()}\n")
    sys.stdout.flush()
    while True:
        time.sleep(0.05)  # LEAF_LINE


class Outer:
    def method(self) -> list[int]:
        return sorted([2, 1], key=self.callback)

    def callback(self, x: int) -> int:
        return leaf() if x == 1 else x


def main() -> None:
    ready = threading.Event()
    threading.Thread(target=worker, args=(ready,), name="worker", daemon=True).start()
    ready.wait()
    Outer().method()


if __name__ == "__main__":
    main()
