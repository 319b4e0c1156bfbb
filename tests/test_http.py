"""The stream's HTTP server as a hostile client or a careless network would meet it: access token
(URL, cookie, bearer, basic), Host check on loopback (DNS rebinding), an escaped page, IPv6, a
connection cap and deadlines that slow clients cannot outlast, /metrics through prometheus_client's
parser. Real sockets on 127.0.0.1 / ::1 only."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time

import numpy as np
import pytest

from edge_sr.mjpeg import MjpegServer, host_header_name, interface_addresses, is_loopback
from edge_sr.telemetry.report import Telemetry

TOKEN = "t0k3n-abcdefghijklmnop"


def get(port, path, headers=None, host="127.0.0.1", timeout=5):
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    c.request("GET", path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r, body


@pytest.fixture
def publishing():
    servers = []

    def make(**kw):
        s = MjpegServer(kw.pop("host", "127.0.0.1"), 0, **kw)
        stop = threading.Event()

        def pub():
            f = np.zeros((24, 32, 3), np.uint8)
            while not stop.is_set():
                s.write_pair(f[:12, :16], f)
                stop.wait(0.02)
        threading.Thread(target=pub, daemon=True).start()
        servers.append((s, stop))
        return s
    yield make
    for s, stop in servers:
        stop.set()
        s.close()


def test_token_in_url_cookie_bearer_or_basic(publishing):
    s = publishing(token=TOKEN)
    r, _ = get(s.port, "/")
    assert r.status == 401 and r.getheader("WWW-Authenticate").startswith("Basic")
    for path in ("/metrics", "/stats", "/snapshot.jpg", "/stream.mjpg", "/?token=wrong"):
        assert get(s.port, path)[0].status == 401, path
    r, body = get(s.port, f"/?token={TOKEN}")
    assert r.status == 200 and b"edge-sr" in body
    cookie = r.getheader("Set-Cookie")
    assert TOKEN in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert get(s.port, "/stats", {"Cookie": cookie.split(";")[0]})[0].status == 200
    assert get(s.port, "/metrics", {"Authorization": f"Bearer {TOKEN}"})[0].status == 200
    basic = base64.b64encode(f"anyone:{TOKEN}".encode()).decode()
    assert get(s.port, "/snapshot.jpg", {"Authorization": f"Basic {basic}"})[0].status == 200
    wrong = base64.b64encode(b"anyone:nope").decode()
    assert get(s.port, "/", {"Authorization": f"Basic {wrong}"})[0].status == 401


def test_loopback_server_checks_the_host_header(publishing):
    """DNS rebinding: a page on evil.example whose name resolves to 127.0.0.1 must not read the stream."""
    s = publishing()
    assert get(s.port, "/stats", {"Host": "evil.example:%d" % s.port})[0].status == 403
    for host in (f"127.0.0.1:{s.port}", f"localhost:{s.port}", "localhost", f"[::1]:{s.port}", "127.0.0.2"):
        assert get(s.port, "/stats", {"Host": host})[0].status == 200, host
    assert host_header_name("[::1]:8080") == "::1" and host_header_name("example.com:80") == "example.com"
    assert is_loopback("::1") and is_loopback("localhost") and not is_loopback("192.168.1.2")


def test_page_escapes_the_title_and_has_live_fps_and_the_toggle(publishing):
    s = publishing(title='<script>alert("x")</script> cam')
    r, body = get(s.port, "/")
    assert b"<script>alert" not in body and b"&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; cam" in body
    assert b'data-view="bicubic"' in body and b'data-view="edge-sr"' in body and b'id="fps"' in body
    assert b'fetch("/stats"' in body
    stats = json.loads(get(s.port, "/stats")[1])
    assert "viewers" in stats
    # the bicubic view serves the source frame at the output size
    import cv2
    r, jpg = get(s.port, "/snapshot.jpg")
    assert cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR).shape == (24, 32, 3)


def test_ipv6_loopback(publishing):
    try:
        socket.socket(socket.AF_INET6).close()
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    s = publishing(host="::1")
    assert s.url == f"http://[::1]:{s.port}/"
    r, _ = get(s.port, "/stats", host="::1")
    assert r.status == 200


def test_interface_addresses_are_real_and_not_loopback():
    addrs = interface_addresses()
    for a in addrs:
        assert not is_loopback(a)
        socket.getaddrinfo(a, None)  # a literal address


def _slow_head(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.send(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    return s


def _closed(sock, wait_s) -> bool:
    sock.settimeout(wait_s)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def test_connection_cap_evicts_the_oldest_unfinished_head(publishing):
    s = publishing(max_connections=8, header_timeout_s=30)
    slow = [_slow_head(s.port) for _ in range(8)]
    time.sleep(0.3)
    t0 = time.perf_counter()
    r, _ = get(s.port, "/metrics")  # the cap is full of half-sent heads: a real request still gets in
    assert r.status == 200 and time.perf_counter() - t0 < 1.0
    assert s.evicted >= 1 and _closed(slow[0], 2.0)  # the oldest made room
    for x in slow:
        x.close()


def test_request_head_deadline_closes_a_slowloris(publishing):
    s = publishing(header_timeout_s=0.5)
    sock = _slow_head(s.port)
    t0 = time.monotonic()
    for _ in range(20):  # one more header line every 0.1 s: each recv is quick, the whole head never ends
        try:
            sock.send(b"X-a: b\r\n")
        except OSError:
            break
        time.sleep(0.1)
    assert _closed(sock, 3.0) and time.monotonic() - t0 < 3.0 and s.header_timeouts == 1


def test_viewer_that_does_not_read_loses_its_slot(publishing):
    s = publishing(send_timeout_s=0.5, max_viewers=1)
    big = (np.random.default_rng(0).integers(0, 255, (480, 640, 3))).astype(np.uint8)  # noisy: large JPEGs
    stop = threading.Event()

    def pub():
        while not stop.is_set():
            s.write(big)
            stop.wait(0.01)
    threading.Thread(target=pub, daemon=True).start()
    v = socket.socket()
    v.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    v.connect(("127.0.0.1", s.port))
    v.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and then never reads
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and s.viewers_cut == 0:
            time.sleep(0.1)
        assert s.viewers_cut == 1 and s.viewers == 0  # the slot is free again
        c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=5)
        c.request("GET", "/stream.mjpg")
        assert c.getresponse().status == 200
        c.close()
    finally:
        stop.set()
        v.close()


def test_metrics_over_http_parse_with_prometheus_client():
    from prometheus_client.parser import text_string_to_metric_families

    tel = Telemetry(60.0)
    s = MjpegServer("127.0.0.1", 0, metrics=tel.prometheus_text, stats=tel.stats_json)
    try:
        tel.stage("output").record(5.0)
        r, body = get(s.port, "/metrics")
        assert r.status == 200 and r.getheader("Content-Type").startswith("text/plain; version=")
        fams = {f.name: f for f in text_string_to_metric_families(body.decode())}
        assert fams["edge_sr_stage_latency_seconds"].type == "histogram"
        assert fams["edge_sr_frames"].type == "counter"
    finally:
        s.close()
        tel.close()


def test_short_slowloris_metrics_and_page_answer_within_a_second(publishing):
    """The CI-sized form of scripts/slowloris.py (150 connections for 60 s, reported in docs/stream.md)."""
    s = publishing(header_timeout_s=2.0)
    stop = threading.Event()
    socks = []

    def attack():
        while not stop.is_set():
            try:
                socks.append(_slow_head(s.port))
            except OSError:
                pass
            stop.wait(0.01)
    th = threading.Thread(target=attack, daemon=True)
    th.start()
    worst = 0.0
    try:
        t_end = time.monotonic() + 4.0
        while time.monotonic() < t_end:
            for path in ("/metrics", "/"):
                t0 = time.perf_counter()
                r, _ = get(s.port, path)
                assert r.status == 200
                worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.2)
    finally:
        stop.set()
        th.join(5)
        for x in socks:
            x.close()
    assert len(socks) >= 150 and worst < 1.0
    assert s.evicted + s.header_timeouts > 0
