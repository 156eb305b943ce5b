#!/usr/bin/env python3
"""How the slow events of a latency pass are spread over time.

    loadgen ... --timeline target/tl
    python3 loadgen/timeline.py target/tl/*.csv [--slow-ms 2]

For each CSV that `loadgen --timeline` wrote (one per mode): the percentiles,
the share of events slower than --slow-ms, how many 10 ms windows hold half
and 90 % of them and what share of the events in those windows was slow (a
tail made of rare stalls that delay most events in flight sits in few
windows; a path that is slow throughout spreads it over many; clustering
alone does not say whose stall it was), and a line per second of the worst
latency in each 100 ms.
"""
import argparse
import collections
import csv


def analyse(path, slow_us):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append((int(r["recv_us"]), int(r["latency_us"])))
    if not rows:
        print(f"== {path}: no samples")
        return
    rows.sort()
    lat = sorted(l for _, l in rows)
    n = len(lat)

    def pct(q):
        return lat[min(n - 1, int(q * n))] / 1000

    print(
        f"== {path}: {n} samples, p50 {pct(.5):.2f} p99 {pct(.99):.2f} "
        f"p99.9 {pct(.999):.2f} max {lat[-1] / 1000:.1f} ms"
    )
    t0 = rows[0][0]
    slow = [(t, l) for t, l in rows if l > slow_us]
    print(f"  slower than {slow_us / 1000:g} ms: {len(slow)} ({100 * len(slow) / n:.2f} %)")
    if slow:
        per_window = collections.Counter((t - t0) // 10_000 for t, _ in slow)
        windows = (rows[-1][0] - t0) // 10_000 + 1
        counts = sorted(per_window.values(), reverse=True)
        held, half, ninety = 0, None, None
        for i, c in enumerate(counts, 1):
            held += c
            if half is None and held >= len(slow) / 2:
                half = i
            if ninety is None and held >= len(slow) * 0.9:
                ninety = i
        # Of all events in the windows that hold half the slow ones, how many
        # were slow: near 100 % means those windows delayed everything.
        top = {w for w, _ in per_window.most_common(half)}
        in_top = sum(1 for t, _ in rows if (t - t0) // 10_000 in top)
        slow_in_top = sum(c for w, c in per_window.items() if w in top)
        print(
            f"  10 ms windows: {windows}; with slow events {len(per_window)}; "
            f"half of them in {half}, 90 % in {ninety}; "
            f"in those {half}, {100 * slow_in_top / in_top:.0f} % of the events were slow"
        )
    worst = collections.defaultdict(int)
    for t, l in rows:
        b = (t - t0) // 100_000
        worst[b] = max(worst[b], l)
    marks = "".join(
        " " if m < 1000 else "." if m < 2000 else "o" if m < 5000 else "O" if m < 10_000 else "#"
        for m in (worst.get(b, 0) for b in range(max(worst) + 1))
    )
    print("  worst per 100 ms (blank < 1, . < 2, o < 5, O < 10, # >= 10 ms):")
    for i in range(0, len(marks), 10):
        print(f"  {i // 10:4d}s |{marks[i:i + 10]}|")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+")
    p.add_argument("--slow-ms", type=float, default=2.0)
    a = p.parse_args()
    for path in a.csv:
        analyse(path, a.slow_ms * 1000)


if __name__ == "__main__":
    main()
