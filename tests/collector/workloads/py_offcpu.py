"""Python threads blocked in known functions for known wall time: nap() in time.sleep(0.1) loops,
wait_data() in socket.recv on a socketpair a feeder writes to every 10 ms, and key_callback()
burning CPU under sorted(key=...) (Python -> C -> Python). Usage: py_offcpu.py SECONDS."""

import socket
import sys
import threading
import time


def nap(end: float) -> None:
    while time.monotonic() < end:
        time.sleep(0.1)


def wait_data(sock: socket.socket, end: float) -> None:
    while time.monotonic() < end:
        sock.recv(1)


def feed(sock: socket.socket, end: float) -> None:
    while time.monotonic() < end + 0.05:
        sock.send(b"x")
        time.sleep(0.01)


def key_callback(x: int) -> int:
    y = 0
    for i in range(200):
        y += i * x
    return y


def sort_with_callbacks(end: float) -> None:
    while time.monotonic() < end:
        sorted(range(200), key=key_callback)


def main(seconds: float) -> None:
    end = time.monotonic() + seconds
    a, b = socket.socketpair()
    threads = [threading.Thread(target=nap, args=(end,), name="napper"),
               threading.Thread(target=wait_data, args=(b, end), name="reader"),
               threading.Thread(target=feed, args=(a, end), name="feeder"),
               threading.Thread(target=sort_with_callbacks, args=(end,), name="sorter")]
    for t in threads:
        t.start()
    print("started", flush=True)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
