"""A known CPU split for Python profilers: run_round() spends 50/30/20 % of its CPU in alpha, beta
and gamma (identical loop bodies run 5000/3000/2000 times a round). Usage: py_split.py SECONDS."""

import sys
import time


def alpha() -> int:
    x = 0
    for i in range(5000):
        x += i
    return x


def beta() -> int:
    x = 0
    for i in range(3000):
        x += i
    return x


def gamma() -> int:
    x = 0
    for i in range(2000):
        x += i
    return x


def run_round() -> None:
    alpha()
    beta()
    gamma()


def main(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        run_round()


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
