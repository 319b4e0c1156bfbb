#!/usr/bin/env python3
"""Does a browser play this video? Opens VIDEO in headless Chromium in a <video> element, plays it
for a second of real time, seeks to half a second before the end and plays to the end, then prints what the
browser saw as one JSON object (duration, size, decoded audio/video bytes, how far it played).

    python scripts/video_in_browser.py out.mp4 [--expect-duration 10] [--expect-audio]

Exit code 0 when the browser played it (and the expectations hold), 1 when not, 2 when no
Chromium is installed. Standard library only; the page reports back with a POST to a port on
127.0.0.1 (no DevTools protocol needed).
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

PAGE = """<!doctype html><html><body>
<video id="v" muted playsinline preload="auto"></video>
<script>
const v = document.getElementById('v');
const r = {events: []};
let sent = false;
function report(why) {
  if (sent) return; sent = true;
  Object.assign(r, {why: why, currentTime: v.currentTime, duration: v.duration, videoWidth: v.videoWidth,
    videoHeight: v.videoHeight, error: v.error ? (v.error.code + ' ' + v.error.message) : null,
    audioBytes: v.webkitAudioDecodedByteCount, videoBytes: v.webkitVideoDecodedByteCount,
    framesDecoded: v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : null});
  fetch('http://127.0.0.1:__PORT__/result', {method: 'POST', mode: 'no-cors', body: JSON.stringify(r)});
}
v.addEventListener('error', () => report('error'));
v.addEventListener('loadedmetadata', () => {
  r.events.push('loadedmetadata');
  v.play().catch(e => { r.playError = String(e); report('play refused'); });
});
v.addEventListener('timeupdate', () => {
  if (r.playedTo === undefined && v.currentTime >= 1.0) {  // one second of real playback
    r.playedTo = v.currentTime;
    v.pause();
    v.currentTime = Math.max(0, v.duration - 0.5);
  }
});
v.addEventListener('seeked', () => {
  r.events.push('seeked');
  r.seekedTo = v.currentTime;
  r.framesAtSeek = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality().totalVideoFrames : null;
  v.play();  // and play the last half second to the end
});
v.addEventListener('ended', () => { r.events.push('ended'); report('done'); });
setTimeout(() => report('timeout'), __TIMEOUT_MS__);
v.src = '__VIDEO__';
</script></body></html>
"""


def find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def play_in_browser(video: Path, timeout_s: float = 30.0, browser: str | None = None) -> dict:
    """What headless Chromium saw when playing ``video`` (see the module's docstring)."""
    browser = browser or find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium (Debian package chromium)")
    got: dict = {}
    done = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802 - http.server's API
            body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
            try:
                got.update(json.loads(body or b"{}"))
            except ValueError:
                got["bad_report"] = body[:200].decode("utf-8", "replace")
            self.send_response(204)
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            done.set()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory(prefix="edge-sr-browser-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(PAGE.replace("__PORT__", str(server.server_address[1]))
                        .replace("__TIMEOUT_MS__", str(int(timeout_s * 1000 * 0.8)))
                        .replace("__VIDEO__", video.resolve().as_uri()))
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--autoplay-policy=no-user-gesture-required", "--allow-file-access-from-files",
               f"--user-data-dir={Path(tmp) / 'profile'}", page.as_uri()]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            done.wait(timeout_s)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                _, err = proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
            server.shutdown()
            server.server_close()
    if not got:
        got = {"why": "no report from the browser", "stderr": err.decode("utf-8", "replace")[-1500:]}
    return got


def verdict(r: dict, expect_duration: float | None = None, expect_audio: bool = False,
            tolerance_s: float = 0.25) -> list[str]:
    """Reasons the video did not play as expected (empty: it did)."""
    bad = []
    if r.get("error") or r.get("why") != "done":
        bad.append(f"not played to the end of the check ({r.get('why')}; error {r.get('error')})")
    if not (r.get("videoWidth") or 0) > 0:
        bad.append("no video size: the browser did not decode the video")
    if (r.get("playedTo") or 0) < 1.0:
        bad.append("currentTime did not advance to 1 s")
    dur = r.get("duration")
    if expect_duration is not None and (not isinstance(dur, (int, float)) or abs(dur - expect_duration) > tolerance_s):
        bad.append(f"duration {dur} s, expected {expect_duration} s")
    if "ended" not in r.get("events", []):
        bad.append(f"did not play from {r.get('seekedTo')} s to the end ({dur} s)")
    if expect_audio and not (r.get("audioBytes") or 0) > 0:
        bad.append("no audio decoded")
    return bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("video", type=Path)
    ap.add_argument("--expect-duration", type=float, default=None, metavar="S")
    ap.add_argument("--expect-audio", action="store_true")
    ap.add_argument("--timeout", type=float, default=40.0)
    args = ap.parse_args(argv)
    if not args.video.is_file():
        print(f"video_in_browser: no such file: {args.video}", file=sys.stderr)
        return 1
    try:
        r = play_in_browser(args.video, args.timeout)
    except FileNotFoundError as exc:
        print(f"video_in_browser: {exc}", file=sys.stderr)
        return 2
    bad = verdict(r, args.expect_duration, args.expect_audio)
    r["ok"] = not bad
    r["problems"] = bad
    print(json.dumps(r))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
