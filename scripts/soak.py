#!/usr/bin/env python3
"""Soak test of `edge-sr stream` (not part of CI): streams for several minutes and reports memory
and frame counts, then stops it with SIGTERM and times the stop.

    scripts/quiet.sh .venv/bin/python scripts/soak.py --minutes 10 --model compact
    (any extra arguments after -- go to `edge-sr stream`)

It runs the demo source with an MJPEG server and one viewer reading the stream, samples the
process's resident memory (/proc/PID/status VmRSS) and /metrics every --every seconds, and prints a
JSON report: RSS at start / end / max, the RSS slope over the second half (MiB per minute: flat
memory is ~0), frames, drops, and how long SIGTERM took to stop the process (and its exit code).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def rss_mib(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def metric(text: str, name: str, labels: str = "") -> float | None:
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def viewer(url: str, stop: threading.Event, counter: list) -> None:
    """One browser-like viewer reading the MJPEG stream."""
    while not stop.is_set():
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                while not stop.is_set():
                    chunk = r.read(65536)
                    if not chunk:
                        break
                    counter[0] += chunk.count(b"--frame")
        except OSError:
            time.sleep(1)


def slope_per_min(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3:
        return None
    ts = [t for t, _ in samples]
    vs = [v for _, v in samples]
    mt, mv = sum(ts) / len(ts), sum(vs) / len(vs)
    den = sum((t - mt) ** 2 for t in ts)
    return 60.0 * sum((t - mt) * (v - mv) for t, v in samples) / den if den else None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--model", default="compact")
    ap.add_argument("--out", default=None, help="also write the report (JSON) here")
    ap.add_argument("stream_args", nargs=argparse.REMAINDER, help="-- extra `edge-sr stream` arguments")
    a = ap.parse_args(argv)
    extra = a.stream_args[1:] if a.stream_args[:1] == ["--"] else a.stream_args
    port = free_port()
    cmd = [sys.executable, "-m", "edge_sr", "stream", "--source", "demo", "--model", a.model, "--http", str(port),
           "--log-interval", "30", *extra]
    print("soak:", " ".join(cmd), file=sys.stderr)
    log = open(os.devnull, "w")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True)
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    seen = [0]
    samples: list[dict] = []
    t0 = time.monotonic()
    try:
        for _ in range(300):  # wait for the server
            try:
                urllib.request.urlopen(base + "/", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None:
                    print(f"soak: stream exited early with {proc.returncode}", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        th = threading.Thread(target=viewer, args=(base + "/stream.mjpg", stop, seen), daemon=True)
        th.start()
        while time.monotonic() - t0 < a.minutes * 60 and proc.poll() is None:
            time.sleep(a.every)
            try:
                text = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
            except OSError:
                text = ""
            s = {"t_s": round(time.monotonic() - t0, 1), "rss_mib": rss_mib(proc.pid),
                 "frames": metric(text, "edge_sr_frames_total", '{stage="output"}'),
                 "dropped_capture": metric(text, "edge_sr_dropped_frames_total", '{stage="capture"}'),
                 "output_fps": metric(text, "edge_sr_fps", '{stage="output"}'), "viewer_frames": seen[0]}
            samples.append(s)
            print(json.dumps(s), file=sys.stderr, flush=True)
        t_sig = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        stop_s = time.monotonic() - t_sig
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
    rss = [(s["t_s"], s["rss_mib"]) for s in samples if s["rss_mib"] is not None]
    half = [x for x in rss if x[0] >= rss[-1][0] / 2] if rss else []
    report = {
        "minutes": round((time.monotonic() - t0) / 60, 2), "samples": len(samples),
        "rss_mib_first": rss[0][1] if rss else None, "rss_mib_last": rss[-1][1] if rss else None,
        "rss_mib_max": max(v for _, v in rss) if rss else None,
        "rss_slope_mib_per_min_second_half": round(slope_per_min(half), 3) if slope_per_min(half) is not None else None,
        "frames": samples[-1]["frames"] if samples else None,
        "dropped_capture": samples[-1]["dropped_capture"] if samples else None,
        "viewer_frames": seen[0], "sigterm_to_exit_s": round(stop_s, 2), "exit_code": proc.returncode,
        "summary": out.strip().splitlines()[-1] if out.strip() else "",
    }
    print(json.dumps(report, indent=1))
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"report": report, "samples": samples}, f, indent=1)
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
