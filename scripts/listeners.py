#!/usr/bin/env python3
"""A quick listener swarm: opens N HTTP listeners to a stream URL, reads for a window, reports.

A stopgap measuring tool until the benchmark of issue #4 (agora-bench) exists. Standard library
only. Example:

    scripts/listeners.py --url http://127.0.0.1:8000/live.ogg -n 2000 --rate 500 \
        --seconds 30 --kbps 250 --pid "$(pgrep -f 'agora serve')"

Reports: listeners connected, time to first byte (p50/p99), bytes delivered, the share of
listeners that received at least 95% of the stream's real-time rate over the window, and, with
--pid, the server's CPU seconds and RSS over the window (from /proc).
"""
import argparse
import asyncio
import os
import resource
import time
from urllib.parse import urlparse


def proc_cpu_rss(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return cpu, rss


class Listener:
    def __init__(self):
        self.ttfb = None
        self.bytes = 0
        self.window_bytes = 0
        self.error = None


async def listen(host, port, path, l, started, window):
    t0 = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        while True:
            data = await reader.read(65536)
            if not data:
                l.error = "closed"
                return
            if l.ttfb is None:
                l.ttfb = time.monotonic() - t0
            l.bytes += len(data)
            now = time.monotonic()
            if window[0] is not None and window[0] <= now <= window[1]:
                l.window_bytes += len(data)
    except Exception as e:  # noqa: BLE001 - a listener's failure is a result, not a crash
        l.error = type(e).__name__


def pct(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


async def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("-n", type=int, default=100)
    ap.add_argument("--rate", type=float, default=0, help="connections per second (0: storm)")
    ap.add_argument("--seconds", type=float, default=30, help="measurement window")
    ap.add_argument("--kbps", type=float, required=True, help="the stream's bitrate")
    ap.add_argument("--pid", type=int, help="server pid, for CPU and RSS")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    u = urlparse(a.url)
    listeners = [Listener() for _ in range(a.n)]
    window = [None, None]
    started = time.monotonic()
    rss0 = proc_cpu_rss(a.pid)[1] if a.pid else None
    tasks = []
    for i, l in enumerate(listeners):
        tasks.append(asyncio.create_task(listen(u.hostname, u.port or 80, u.path, l, started, window)))
        if a.rate:
            await asyncio.sleep(max(0, started + (i + 1) / a.rate - time.monotonic()))
    # Settle: everyone has its first byte (or 10 s passed), then the window.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(l.ttfb is None and l.error is None for l in listeners):
        await asyncio.sleep(0.1)
    await asyncio.sleep(2)
    cpu0 = proc_cpu_rss(a.pid)[0] if a.pid else None
    window[0] = time.monotonic()
    window[1] = window[0] + a.seconds
    await asyncio.sleep(a.seconds)
    cpu1, rss1 = proc_cpu_rss(a.pid) if a.pid else (None, None)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    connected = [l for l in listeners if l.ttfb is not None]
    want = a.kbps * 1000 / 8 * a.seconds
    full = sum(1 for l in listeners if l.window_bytes >= 0.95 * want)
    total = sum(l.window_bytes for l in listeners)
    errors = {}
    for l in listeners:
        if l.error:
            errors[l.error] = errors.get(l.error, 0) + 1
    print(f"listeners:           {a.n} opened, {len(connected)} got bytes, errors {errors or 'none'}")
    ttfb = [l.ttfb * 1000 for l in connected]
    print(f"first byte:          p50 {pct(ttfb, 50):.1f} ms, p99 {pct(ttfb, 99):.1f} ms, max {max(ttfb, default=0):.1f} ms")
    print(f">=95% real-time:     {full}/{a.n} ({100 * full / a.n:.2f}%) over {a.seconds:.0f} s")
    print(f"delivered in window: {total / 1e6:.1f} MB ({total * 8 / a.seconds / 1e6:.1f} Mbit/s)")
    if a.pid:
        cpu = cpu1 - cpu0
        print(f"server CPU:          {cpu:.2f} s in the window ({100 * cpu / a.seconds:.1f}% of a core), "
              f"{cpu / (total / 1e9) if total else float('nan'):.2f} CPU-s/GB")
        print(f"server RSS:          {rss0} KiB before, {rss1} KiB with listeners, "
              f"{(rss1 - rss0) / max(1, len(connected)):.2f} KiB per listener")


if __name__ == "__main__":
    asyncio.run(main())
