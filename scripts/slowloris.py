"""Slowloris against the stream's HTTP server, on 127.0.0.1 only: N connections that send a request
head one byte every few seconds (and reopen when closed) while a probe times /metrics and / once a
second, and the telemetry log is watched. Prints one JSON line with the result.

    python scripts/slowloris.py --connections 150 --seconds 60            # starts its own edge-sr stream
    python scripts/slowloris.py --port 8080 --connections 150 --seconds 60  # against a running one

Done when (issue 11): every probe answers within 1 s and telemetry keeps logging.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request

HEAD = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slowloris\r\nX-a: " + b"b" * 4000


def attacker(port: int, stop: threading.Event, interval_s: float, stats: dict) -> None:
    s = None
    i = 0
    while not stop.is_set():
        if s is None:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                stats["opened"] += 1
                i = 0
            except OSError:
                stats["connect_failed"] += 1
                stop.wait(0.5)
                continue
        try:
            s.send(HEAD[i % len(HEAD):i % len(HEAD) + 1])
            i += 1
        except OSError:
            stats["closed_by_server"] += 1
            s.close()
            s = None
            continue
        stop.wait(interval_s)
    if s is not None:
        s.close()


def probe(url: str, timeout_s: float = 5.0) -> tuple[float | None, int | None]:
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as r:
            r.read()
            return time.perf_counter() - t0, r.status
    except Exception:  # noqa: BLE001 - a failed probe is the measurement
        return None, None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=None, help="a running server on 127.0.0.1 (default: start one)")
    ap.add_argument("--connections", type=int, default=150)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--byte-interval", type=float, default=1.0, help="seconds between bytes per connection")
    ap.add_argument("--log-interval", type=float, default=1.0)
    a = ap.parse_args(argv)
    proc = None
    stats_lines = []
    port = a.port
    if port is None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()
        proc = subprocess.Popen([sys.executable, "-m", "edge_sr", "stream", "--source", "demo", "--width", "160",
                                 "--height", "120", "--fps", "15", "--http", str(port), "--log-interval",
                                 str(a.log_interval)], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)

        def read_log():
            for line in proc.stderr:
                if '"event": "stats"' in line:
                    stats_lines.append((time.monotonic(), line))

        threading.Thread(target=read_log, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and probe(f"http://127.0.0.1:{port}/healthz", 1.0)[0] is None:
            time.sleep(0.2)
    stop = threading.Event()
    counters = {"opened": 0, "connect_failed": 0, "closed_by_server": 0}
    threads = [threading.Thread(target=attacker, args=(port, stop, a.byte_interval, counters), daemon=True)
               for _ in range(a.connections)]
    for t in threads:
        t.start()
    t_start = time.monotonic()
    lat = {"/metrics": [], "/": []}
    failed = {"/metrics": 0, "/": 0}
    time.sleep(min(2.0, a.seconds / 4))  # let the attack build up
    while time.monotonic() - t_start < a.seconds:
        for path in lat:
            dt, status = probe(f"http://127.0.0.1:{port}{path}")
            if dt is None or status != 200:
                failed[path] += 1
            else:
                lat[path].append(dt)
        time.sleep(1.0)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    logs_during = [t for t, _ in stats_lines if t >= t_start]
    if proc is not None:
        proc.terminate()
        proc.wait(timeout=30)
    res = {"connections": a.connections, "seconds": a.seconds, "byte_interval_s": a.byte_interval,
           **{f"attacker_{k}": v for k, v in counters.items()}}
    for path, xs in lat.items():
        res[f"{path}_probes"] = len(xs) + failed[path]
        res[f"{path}_failed"] = failed[path]
        res[f"{path}_max_s"] = round(max(xs), 3) if xs else None
        res[f"{path}_median_s"] = round(sorted(xs)[len(xs) // 2], 4) if xs else None
    if proc is not None:
        res["telemetry_lines_during_attack"] = len(logs_during)
        res["telemetry_expected_about"] = int(a.seconds / a.log_interval)
    ok = all(failed[p] == 0 and lat[p] and max(lat[p]) < 1.0 for p in lat) and \
        (proc is None or len(logs_during) >= 0.8 * a.seconds / a.log_interval - 1)
    res["ok"] = ok
    print(json.dumps(res))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
