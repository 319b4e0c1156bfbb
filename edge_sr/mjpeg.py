"""The MJPEG page, stream, snapshot, /metrics and /stats over HTTP: an asyncio server (one event
loop in one thread) with h11 for HTTP/1.1 parsing.

Why not ``http.server.ThreadingHTTPServer``: it spends a thread and a file descriptor per
connection with no cap and only a per-``recv`` timeout, so a client sending one byte a second holds
both forever (slowloris). Here an idle connection costs a coroutine, and the server enforces:

- a connection cap (``max_connections``): at the cap, the oldest connection that has not yet sent
  a complete request head is closed to make room; when every connection is busy, the new one is;
- a deadline for the whole request head (``header_timeout_s``, like Go's ReadHeaderTimeout), and
  the same deadline for an idle keep-alive connection;
- a deadline per sent frame (``send_timeout_s``): a viewer that does not take a frame within it
  loses its slot (of ``max_viewers``);
- JPEG encoding in a small thread pool, once per frame, only while someone watches.

Access: bound to loopback, the Host header must name loopback (a DNS-rebinding guard). With a
``token``, every request needs it: ``?token=`` (the page then sets a cookie), a cookie,
``Authorization: Bearer`` or HTTP basic auth with the token as password (any user name).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hmac
import html
import ipaddress
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable
from urllib.parse import parse_qs, urlsplit

import numpy as np

from .errors import EdgeSRError
from .sinks import Sink

log = logging.getLogger("edge_sr.sinks")

COOKIE = "edge_sr_token"


def _cv2():
    from .lazy import require

    return require("cv2", "the MJPEG output")


def _h11():
    from .lazy import require

    return require("h11", "the HTTP output (--http)")


class FrameHub:
    """The newest frame, shared by all viewers. ``publish`` never blocks for long (a lock and a
    notify); the JPEG of a frame is made at most once, by the first viewer that needs it.
    ``transform`` (e.g. a bicubic resize) runs on the frame just before encoding."""

    def __init__(self, jpeg_quality: int = 80, transform: Callable[[np.ndarray], np.ndarray] | None = None):
        self.jpeg_quality = int(jpeg_quality)
        self.transform = transform
        self._cond = threading.Condition()
        self._seq = 0
        self._frame: np.ndarray | None = None
        self._enc_lock = threading.Lock()
        self._jpeg_seq = -1
        self._jpeg = b""
        self.closed = False
        self.encoded = 0
        self.viewer_dropped = 0
        self.listeners: list[Callable[[], None]] = []

    def publish(self, frame_bgr_u8: np.ndarray) -> None:
        with self._cond:
            self._frame = frame_bgr_u8
            self._seq += 1
            self._cond.notify_all()
        for cb in self.listeners:
            cb()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        for cb in self.listeners:
            cb()

    def latest(self) -> tuple[int, np.ndarray | None]:
        with self._cond:
            return self._seq, self._frame

    def next_jpeg(self, last_seq: int, timeout_s: float = 1.0) -> tuple[int, bytes] | None:
        """The newest frame after ``last_seq`` as JPEG, or None on timeout / close (blocking form)."""
        with self._cond:
            self._cond.wait_for(lambda: self.closed or (self._seq != last_seq and self._frame is not None), timeout_s)
            if self.closed or self._seq == last_seq or self._frame is None:
                return None
            seq, frame = self._seq, self._frame
        self.count_skipped(last_seq, seq)
        return seq, self.encode(seq, frame)

    def count_skipped(self, last_seq: int, seq: int) -> None:
        if last_seq and seq > last_seq + 1:
            self.viewer_dropped += seq - last_seq - 1  # approximate under races; a statistic only

    def encode(self, seq: int, frame: np.ndarray) -> bytes:
        with self._enc_lock:
            if self._jpeg_seq != seq:
                cv2 = _cv2()
                if self.transform is not None:
                    frame = self.transform(frame)
                ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
                if not ok:
                    raise EdgeSRError("JPEG encoding failed")
                self._jpeg, self._jpeg_seq = buf.tobytes(), seq
                self.encoded += 1
            return self._jpeg


INDEX_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>edge-sr stream</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{background:#111;color:#ddd;font-family:sans-serif;margin:1em}}img{{max-width:100%;
image-rendering:pixelated;border:1px solid #444}}a{{color:#8cf}}button{{background:#333;color:#ddd;
border:1px solid #666;padding:.3em .8em}}button.on{{background:#8cf;color:#111}}#fps{{font-weight:bold}}</style></head>
<body><h3>edge-sr: {title}</h3>
<p><button id="v-edge-sr" class="on" data-view="edge-sr">edge-sr</button><button id="v-bicubic"
data-view="bicubic">bicubic</button> &nbsp; output <span id="fps">&ndash;</span> FPS
<span id="viewers"></span></p>
<img id="live" src="/stream.mjpg" alt="edge-sr live stream">
<p><a href="/snapshot.jpg">snapshot</a> | <a href="/stats">stats (JSON)</a> | <a href="/metrics">metrics
(Prometheus)</a></p>
<script>
"use strict";
const img = document.getElementById("live");
for (const b of document.querySelectorAll("button[data-view]")) {{
  b.addEventListener("click", () => {{
    for (const o of document.querySelectorAll("button[data-view]")) o.classList.toggle("on", o === b);
    img.src = "/stream.mjpg?view=" + encodeURIComponent(b.dataset.view) + "&t=" + Date.now();
  }});
}}
let prev = null;
async function tick() {{
  try {{
    const r = await fetch("/stats", {{cache: "no-store"}});
    const s = await r.json();
    const now = performance.now(), n = s.totals.output;
    if (prev !== null && now > prev[0]) {{
      document.getElementById("fps").textContent = ((n - prev[1]) * 1000 / (now - prev[0])).toFixed(1);
    }}
    prev = [now, n];
    if (s.viewers !== undefined) document.getElementById("viewers").textContent = "(" + s.viewers + " watching)";
  }} catch (e) {{ document.getElementById("fps").textContent = "?"; }}
}}
tick(); setInterval(tick, 1000);
</script></body></html>
"""


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def host_header_name(value: str) -> str:
    """'Host: [::1]:8080' -> '::1'; 'example.com:80' -> 'example.com'."""
    v = value.strip()
    if v.startswith("["):
        return v[1:v.find("]")] if "]" in v else v
    return v.rsplit(":", 1)[0] if v.count(":") == 1 else v


def interface_addresses() -> list[str]:
    """This machine's addresses other than loopback and IPv6 link-local (Linux: ioctl and
    /proc/net/if_inet6; elsewhere what the host name resolves to)."""
    out: list[str] = []
    try:
        import fcntl
        import struct

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _idx, name in socket.if_nameindex():
                try:
                    packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name[:15].encode()))  # SIOCGIFADDR
                except OSError:
                    continue  # no IPv4 address on this interface
                addr = socket.inet_ntoa(packed[20:24])
                if not ipaddress.ip_address(addr).is_loopback and addr not in out:
                    out.append(addr)
    except (ImportError, OSError, AttributeError):
        pass
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                hexaddr = line.split()[0]
                addr = ipaddress.ip_address(bytes.fromhex(hexaddr))
                if not (addr.is_loopback or addr.is_link_local) and str(addr) not in out:
                    out.append(str(addr))
    except (OSError, ValueError, IndexError):
        pass
    if not out:
        try:
            for info in socket.getaddrinfo(socket.gethostname(), None):
                a = info[4][0]
                if not is_loopback(a) and a not in out:
                    out.append(a)
        except OSError:
            pass
    return out


def url_for(host: str, port: int, path: str = "/") -> str:
    h = f"[{host}]" if ":" in host else host
    return f"http://{h}:{port}{path}"


class _Conn:
    __slots__ = ("writer", "t0", "state")

    def __init__(self, writer):
        self.writer = writer
        self.t0 = time.monotonic()
        self.state = "head"  # head (waiting for a request head), busy, viewer


class _Closed(Exception):
    pass


class MjpegServer(Sink):
    """An HTTP server in its own thread: ``/`` page, ``/stream.mjpg[?view=bicubic]``,
    ``/snapshot.jpg``, ``/metrics``, ``/stats``. A stream output (``write``/``write_pair``/``close``)."""

    name = "http"

    def __init__(self, host: str = "127.0.0.1", port: int = 8080, jpeg_quality: int = 80, max_viewers: int = 16,
                 metrics: Callable[[], str] | None = None, stats: Callable[[], str] | None = None,
                 title: str = "live stream", *, token: str | None = None, max_connections: int = 128,
                 header_timeout_s: float = 10.0, send_timeout_s: float = 10.0):
        h11 = _h11()
        self._h11 = h11
        self.hub = FrameHub(jpeg_quality)
        self._sr_size: tuple[int, int] | None = None
        self.hub_bicubic = FrameHub(jpeg_quality, transform=self._bicubic)
        self.max_viewers = int(max_viewers)
        self.max_connections = int(max_connections)
        self.header_timeout_s = float(header_timeout_s)
        self.send_timeout_s = float(send_timeout_s)
        self.viewers = 0
        self.viewers_served = 0  # viewer sessions started (a counter)
        self.viewers_cut = 0  # viewers dropped for not taking a frame within send_timeout_s
        self.evicted = 0  # connections closed to make room (they had not sent a request head)
        self.refused = 0
        self.header_timeouts = 0
        self._metrics = metrics or (lambda: "")
        self._stats = stats or (lambda: "{}")
        self._title = html.escape(str(title))
        self._token = token
        self.host = host
        self._loopback_only = is_loopback(host)
        self._conns: dict[int, _Conn] = {}
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(2, thread_name_prefix="mjpeg-encode")
        self._wake_event: asyncio.Event | None = None
        try:
            self._server = self._loop.run_until_complete(self._start(host, int(port)))
        except OSError as exc:
            self._loop.close()
            self._pool.shutdown(wait=False)
            raise _bind_error(host, port, exc) from None
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = url_for(host, self.port)
        self.name = f"http {self.url}"
        for hub in (self.hub, self.hub_bicubic):
            hub.listeners.append(self._notify)
        self._thread = threading.Thread(target=self._loop.run_forever, name="mjpeg-http", daemon=True)
        self._thread.start()
        log.info("MJPEG stream on %s", self.url)

    # -- what the stream calls -------------------------------------------------------------

    def write(self, frame_bgr_u8: np.ndarray) -> None:
        self._sr_size = (frame_bgr_u8.shape[1], frame_bgr_u8.shape[0])
        self.hub.publish(frame_bgr_u8)

    def write_pair(self, frame_lr_bgr_u8: np.ndarray, frame_out_bgr_u8: np.ndarray) -> None:
        self.write(frame_out_bgr_u8)
        self.hub_bicubic.publish(frame_lr_bgr_u8)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.hub.close()
        self.hub_bicubic.close()

        async def stop():
            self._server.close()
            for c in list(self._conns.values()):
                c.writer.transport.abort()
            await asyncio.sleep(0)

        try:
            asyncio.run_coroutine_threadsafe(stop(), self._loop).result(timeout=2.0)
        except Exception:  # noqa: BLE001 - closing anyway
            log.debug("http server stop", exc_info=True)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self._loop.close()
        self._pool.shutdown(wait=False)

    def abort(self) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------

    def _bicubic(self, frame_lr: np.ndarray) -> np.ndarray:
        cv2 = _cv2()
        size = self._sr_size or (frame_lr.shape[1], frame_lr.shape[0])
        if (frame_lr.shape[1], frame_lr.shape[0]) == size:
            return frame_lr
        return cv2.resize(frame_lr, size, interpolation=cv2.INTER_CUBIC)

    async def _start(self, host: str, port: int):
        self._wake_event = asyncio.Event()
        return await asyncio.start_server(self._client, host or None, port, backlog=256, reuse_address=True,
                                          limit=65536)

    def _notify(self) -> None:
        if not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._wake)
            except RuntimeError:  # loop closed meanwhile
                pass

    def _wake(self) -> None:
        ev, self._wake_event = self._wake_event, asyncio.Event()
        ev.set()

    def _make_room(self) -> bool:
        if len(self._conns) < self.max_connections:
            return True
        waiting = [c for c in self._conns.values() if c.state == "head"]
        if not waiting:
            return False
        victim = min(waiting, key=lambda c: c.t0)
        victim.writer.transport.abort()
        self._conns = {k: c for k, c in self._conns.items() if c is not victim}
        self.evicted += 1
        return True

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        h11 = self._h11
        if not self._make_room():
            self.refused += 1
            writer.transport.abort()
            return
        conn = _Conn(writer)
        key = id(conn)
        self._conns[key] = conn
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=16 * 1024)
        try:
            while True:
                conn.state, conn.t0 = "head", time.monotonic()
                try:
                    req = await asyncio.wait_for(self._read_request(h, reader), self.header_timeout_s)
                except asyncio.TimeoutError:
                    self.header_timeouts += 1
                    return
                except h11.RemoteProtocolError:
                    await self._reply(h, writer, 400, b"bad request\n", close=True, safe=True)
                    return
                if req is None:
                    return
                conn.state = "busy"
                keep = await self._handle(h, writer, req, conn)
                if not keep or h.our_state is h11.MUST_CLOSE or h.their_state is not h11.DONE:
                    return
                h.start_next_cycle()
        except (_Closed, ConnectionError, asyncio.TimeoutError, OSError) as exc:
            log.debug("http client went away: %s", exc)
        except Exception:  # noqa: BLE001 - one client's trouble must not reach the server
            log.warning("http: request failed", exc_info=True)
        finally:
            self._conns.pop(key, None)
            writer.transport.abort()

    async def _read_request(self, h, reader):
        """The next request (its head and an empty body), or None when the client closed."""
        h11 = self._h11
        req = None
        while True:
            ev = h.next_event()
            if ev is h11.NEED_DATA:
                data = await reader.read(8192)
                h.receive_data(data)
                continue
            if isinstance(ev, h11.ConnectionClosed):
                return None
            if isinstance(ev, h11.Request):
                req = ev
            elif isinstance(ev, h11.Data):
                raise h11.RemoteProtocolError("requests with a body are not served")
            elif isinstance(ev, h11.EndOfMessage):
                return req

    async def _send(self, writer, data: bytes) -> None:
        writer.write(data)
        try:
            await asyncio.wait_for(writer.drain(), self.send_timeout_s)
        except asyncio.TimeoutError:
            raise _Closed("send deadline passed") from None

    async def _reply(self, h, writer, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8",
                     headers: list | None = None, close: bool = False, head: bool = False, safe: bool = False) -> None:
        h11 = self._h11
        hs = [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Cache-Control", "no-cache"),
              ("X-Content-Type-Options", "nosniff"), ("Server", "edge-sr")] + (headers or [])
        if close:
            hs.append(("Connection", "close"))
        try:
            data = h.send(h11.Response(status_code=status, headers=hs))
            if body and not head:
                data += h.send(h11.Data(data=body))
            data += h.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            if safe:
                return
            raise
        await self._send(writer, data)

    def _authorised(self, headers: dict[str, str], query: dict) -> tuple[bool, bool]:
        """(allowed, set the cookie)."""
        if not self._token:
            return True, False
        tok = self._token.encode()
        q = (query.get("token") or [""])[0].encode()
        if q and hmac.compare_digest(q, tok):
            return True, True
        for part in headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and hmac.compare_digest(v.encode(), tok):
                return True, False
        auth = headers.get("authorization", "")
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(cred.strip().encode(), tok):
            return True, False
        if scheme.lower() == "basic":
            try:
                pw = base64.b64decode(cred.strip(), validate=True).decode().partition(":")[2]
            except (ValueError, UnicodeDecodeError):
                pw = ""
            if pw and hmac.compare_digest(pw.encode(), tok):
                return True, False
        return False, False

    async def _handle(self, h, writer, req, conn: _Conn) -> bool:
        """Serve one request; False when the connection should close."""
        method = req.method.decode("ascii", "replace").upper()
        target = req.target.decode("ascii", "replace")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in req.headers}
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._reply(h, writer, 405, b"only GET and HEAD\n", headers=[("Allow", "GET, HEAD")])
            return True
        if self._loopback_only and not is_loopback(host_header_name(headers.get("host", ""))):
            # a page on another site that resolves its name to 127.0.0.1 (DNS rebinding) must not read us
            await self._reply(h, writer, 403, b"this server answers to localhost / 127.0.0.1 / [::1] only\n")
            return True
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query)
        ok, set_cookie = self._authorised(headers, query)
        if not ok:
            await self._reply(h, writer, 401, b"access token needed: open the URL with ?token=... (printed at start)"
                              b" or use HTTP basic auth with the token as password\n",
                              headers=[("WWW-Authenticate", 'Basic realm="edge-sr", charset="UTF-8"')])
            return True
        extra = [("Set-Cookie", f"{COOKIE}={self._token}; HttpOnly; SameSite=Strict; Path=/")] if set_cookie else []
        if path in ("/", "/index.html"):
            await self._reply(h, writer, 200, INDEX_HTML.format(title=self._title).encode(),
                              "text/html; charset=utf-8", headers=extra, head=head)
        elif path == "/stream.mjpg":
            view = (query.get("view") or ["edge-sr"])[0]
            hub = self.hub_bicubic if view == "bicubic" else self.hub
            return await self._stream(h, writer, hub, conn, head)
        elif path == "/snapshot.jpg":
            got = await self._next_jpeg(self.hub, 0, 5.0)
            if got is None:
                await self._reply(h, writer, 503, b"no frame yet\n", head=head)
            else:
                await self._reply(h, writer, 200, got[1], "image/jpeg", head=head)
        elif path == "/metrics":
            from prometheus_client.exposition import CONTENT_TYPE_LATEST

            body = self._metrics().encode()
            await self._reply(h, writer, 200, body, CONTENT_TYPE_LATEST, head=head)
        elif path == "/stats":
            d = json.loads(self._stats())
            d.update(viewers=self.viewers, viewers_served=self.viewers_served)
            await self._reply(h, writer, 200, json.dumps(d).encode(), "application/json", head=head)
        elif path == "/healthz":
            await self._reply(h, writer, 200, b"ok\n", head=head)
        else:
            await self._reply(h, writer, 404, b"not found\n", head=head)
        return True

    async def _next_jpeg(self, hub: FrameHub, last_seq: int, timeout_s: float) -> tuple[int, bytes] | None:
        deadline = self._loop.time() + timeout_s
        while True:
            seq, frame = hub.latest()
            if hub.closed:
                return None
            if frame is not None and seq != last_seq:
                break
            ev = self._wake_event
            left = deadline - self._loop.time()
            if left <= 0:
                return None
            try:
                await asyncio.wait_for(ev.wait(), left)
            except asyncio.TimeoutError:
                return None
        hub.count_skipped(last_seq, seq)
        jpeg = await self._loop.run_in_executor(self._pool, hub.encode, seq, frame)
        return seq, jpeg

    async def _stream(self, h, writer, hub: FrameHub, conn: _Conn, head: bool) -> bool:
        h11 = self._h11
        if self.viewers >= self.max_viewers:
            await self._reply(h, writer, 503, b"too many viewers\n", headers=[("Retry-After", "10")])
            return True
        self.viewers += 1
        self.viewers_served += 1
        conn.state = "viewer"
        try:
            hs = [("Content-Type", "multipart/x-mixed-replace; boundary=frame"), ("Cache-Control", "no-cache, private"),
                  ("Pragma", "no-cache"), ("X-Content-Type-Options", "nosniff"), ("Server", "edge-sr")]
            await self._send(writer, h.send(h11.Response(status_code=200, headers=hs)))
            if head:
                await self._send(writer, h.send(h11.EndOfMessage()))
                return True
            seq = 0
            while not hub.closed:
                got = await self._next_jpeg(hub, seq, 1.0)
                if got is None:
                    continue
                seq, jpeg = got
                part = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n%s\r\n" % (len(jpeg), jpeg)
                try:
                    await self._send(writer, h.send(h11.Data(data=part)))
                except _Closed:
                    self.viewers_cut += 1
                    log.info("http: a viewer took no frame for %.0f s; dropped", self.send_timeout_s)
                    raise
            return False
        finally:
            self.viewers -= 1


def _bind_error(host: str, port, exc: OSError) -> EdgeSRError:
    where = f"{url_for(host, port)}"
    if exc.errno == errno.EADDRINUSE:
        return EdgeSRError(f"cannot serve MJPEG on {host}:{port}: the port is in use (another edge-sr or web "
                           "server?); pick another with --http PORT")
    if isinstance(exc, socket.gaierror) or exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        return EdgeSRError(f"cannot serve MJPEG on {where}: no such address on this machine (check --listen; "
                           "0.0.0.0 or :: for every interface)")
    if exc.errno == errno.EACCES:
        return EdgeSRError(f"cannot serve MJPEG on {host}:{port}: permission denied (ports below 1024 need "
                           "privileges; use a port above 1024)")
    return EdgeSRError(f"cannot serve MJPEG on {host}:{port}: {exc.strerror or exc}")
