"""The shipped reverse-proxy config (deploy/nginx/personaflow.conf) with Debian's nginx in front of a
running API: what the API asserts (token, Host, Origin) holds through it, and the edge limits (slow
headers, slow bodies, body size, connections per client) are nginx's.

The file is used as shipped except for its two addresses and, to keep the test short, its timeouts and
connection limit (each asserted present first). nginx runs in the foreground on a free loopback port
with its pid, logs and temp files in the test's folder, and is stopped by the test.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from personaflow.core.settings import REPO_ROOT
from tests._serving_setup import free_port, running_server

SHIPPED = REPO_ROOT / "deploy" / "nginx" / "personaflow.conf"
TEST_VALUES = {
    "client_header_timeout": "2s", "client_body_timeout": "2s", "limit_conn personaflow_per_client": "4",
}  # fmt: skip
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render(api_port: int, port: int) -> str:
    text = SHIPPED.read_text()
    for directive, value in TEST_VALUES.items():
        pattern = rf"^(\s*{re.escape(directive)}) \S+;"
        assert re.search(pattern, text, re.M), f"{directive} missing from {SHIPPED}"
        text = re.sub(pattern, rf"\1 {value};", text, flags=re.M)
    for directive in ("client_max_body_size", "limit_conn_status", "proxy_request_buffering"):
        assert re.search(rf"^\s*{directive} ", text, re.M), f"{directive} missing from {SHIPPED}"
    text = text.replace("server 127.0.0.1:3000;", f"server 127.0.0.1:{api_port};")
    return text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};")


def main_conf(root: Path) -> str:
    """nginx's main file around the shipped one: pid, logs and temp files under `root`."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{k}_temp_path {root / k};" for k in kinds)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the test's 0700 folder
    return (
        f"{user}worker_processes 1;\npid {root / 'nginx.pid'};\nerror_log {root / 'error.log'};\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; {temp} include {root / 'personaflow.conf'}; }}\n"
    )


@pytest.fixture(scope="module")
def proxied(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("nginx-api")) as srv:
        root = tmp_path_factory.mktemp("nginx")
        port = free_port()
        (root / "personaflow.conf").write_text(render(int(srv["base"].rsplit(":", 1)[1]), port))
        (root / "nginx.conf").write_text(main_conf(root))
        proc = subprocess.Popen(
            [NGINX, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(100):
                try:
                    httpx.get(base + "/livez", timeout=1)
                    break
                except httpx.TransportError:
                    assert proc.poll() is None, proc.stderr.read().decode()
                    time.sleep(0.1)
            yield {**srv, "proxy": base, "port": port, "root": root}
        finally:
            proc.terminate()  # SIGTERM: nginx's fast shutdown, workers included
            proc.wait(timeout=10)
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_the_api_answers_through_nginx_with_its_own_checks(proxied):
    base, user = proxied["proxy"], proxied["users"][0]
    recs = httpx.post(base + "/recommend", json={"user_id": user, "k": 2}, timeout=10)
    assert recs.status_code == 200 and len(recs.json()["items"]) == 2
    assert recs.headers["server"].startswith("nginx")
    event = {"user_id": user, "item_id": proxied["items"][2], "event_type": "view", "session_id": "s-nginx"}
    refused = httpx.post(base + "/events", json=event, timeout=10)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert httpx.post(base + "/events", json=event, headers=proxied["auth"], timeout=10).status_code == 200
    foreign = httpx.post(base + "/recommend", json={"user_id": user}, headers={"host": "evil.example"})
    assert foreign.status_code == 403 and foreign.json()["error"].startswith("host")
    other_site = httpx.post(
        base + "/recommend", json={"user_id": user}, headers={"origin": "http://evil.example"}, timeout=10
    )
    assert other_site.status_code == 403 and other_site.json()["error"].startswith("origin")
    same_site = httpx.post(base + "/recommend", json={"user_id": user}, headers={"origin": base}, timeout=10)
    assert same_site.status_code == 200  # the client's Host (with its port) reaches the API


def test_a_body_over_the_limit_is_refused_by_nginx(proxied):
    resp = httpx.post(
        proxied["proxy"] + "/events", content=b'{"user_id": "' + b"x" * 20_000 + b'"}',
        headers={**proxied["auth"], "content-type": "application/json"}, timeout=10,
    )  # fmt: skip
    assert resp.status_code == 413 and resp.headers["server"].startswith("nginx")


def _slow(port: int, body_sent: bytes | None) -> socket.socket:
    """A connection that sent part of its headers (body_sent None) or all headers and part of a body."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = f"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
    if body_sent is None:
        sock.sendall(head.encode())  # no blank line: the headers never finish
    else:
        sock.sendall(f"{head}Content-Length: 200\r\n\r\n".encode() + body_sent)
    return sock


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """(closed by the server within `seconds`, whatever it sent before closing)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
        return True, data
    except TimeoutError:
        return False, data
    finally:
        sock.close()


def test_slow_headers_and_slow_bodies_are_cut_by_nginx(proxied):
    headers, body = _slow(proxied["port"], None), _slow(proxied["port"], b'{"user_id": ')
    started = time.monotonic()
    closed, _ = _closed_within(headers, 6)
    assert closed and time.monotonic() - started < 5  # client_header_timeout 2s
    closed, answer = _closed_within(body, 6)
    assert closed and time.monotonic() - started < 6  # client_body_timeout 2s
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408")


def test_connections_per_client_are_limited_by_nginx_and_freed_after(proxied):
    holding = [_slow(proxied["port"], b'{"user_id": ') for _ in range(4)]  # limit_conn 4 (test value)
    try:
        time.sleep(0.3)  # nginx has read each one's headers
        resp = httpx.post(proxied["proxy"] + "/recommend", json={"user_id": proxied["users"][0]}, timeout=10)
        assert resp.status_code == 429 and resp.headers["server"].startswith("nginx")
        # The API itself is untouched: the slow uploads never reached it (nginx buffers bodies).
        direct = httpx.post(proxied["base"] + "/recommend", json={"user_id": proxied["users"][0]}, timeout=10)
        assert direct.status_code == 200
    finally:
        for sock in holding:
            sock.close()
    time.sleep(0.3)
    again = httpx.post(proxied["proxy"] + "/recommend", json={"user_id": proxied["users"][0]}, timeout=10)
    assert again.status_code == 200


def test_the_shipped_file_is_valid_nginx(tmp_path):
    (tmp_path / "personaflow.conf").write_text(SHIPPED.read_text())
    (tmp_path / "nginx.conf").write_text(main_conf(tmp_path))
    out = subprocess.run(
        [NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert out.returncode == 0 and "syntax is ok" in out.stderr, out.stderr
    assert Path(SHIPPED).read_text().count("limit_conn ") == 1


def test_slow_clients_cannot_starve_real_requests_behind_nginx(proxied):
    """The slow-client limits left the API process (no header or body timeout, no per-address count in
    uvicorn): behind the shipped proxy, slow bodies and slow headers hold nginx's connections, not the
    API's, real requests are answered at once, and the slow ones are cut within nginx's timeouts."""
    port = proxied["port"]

    def connect(source: str) -> socket.socket:
        return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))

    slow, crowd, half_headers = [], [], []
    head = (f"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n{").encode()  # fmt: skip
    try:
        for n in range(40):  # 4 slow bodies from each of 10 addresses: at the limit (4, test value)
            sock = connect(f"127.0.0.{10 + n % 10}")
            sock.sendall(head)
            slow.append(sock)
        time.sleep(0.3)  # nginx has read each one's headers
        for _ in range(6):  # past the limit from one of those addresses: 429 from nginx at once
            sock = connect("127.0.0.10")
            sock.sendall(head)
            crowd.append(sock)
        for n in range(30):  # headers never finished, or nothing sent at all
            sock = connect("127.0.0.3")
            if n % 3:
                sock.sendall(b"POST /recommend HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")
            half_headers.append(sock)
        opened = time.monotonic()
        codes, slowest = [], 0.0
        with httpx.Client(base_url=proxied["proxy"], headers=proxied["auth"], timeout=5) as client:
            for n in range(40):
                t0 = time.monotonic()
                resp = client.post("/recommend", json={"user_id": proxied["users"][n % 10], "k": 3})
                slowest = max(slowest, time.monotonic() - t0)
                codes.append(resp.status_code)
        assert codes.count(200) >= 36, codes
        assert slowest < 2.0, f"slowest real request took {slowest:.2f}s"
        for sock in crowd:
            sock.settimeout(3)
            assert sock.recv(12) == b"HTTP/1.1 429"
        for sock in slow:  # client_body_timeout 2s (test value): closed, with no answer or a 408
            closed, answer = _closed_within(sock, 6)
            assert closed and (answer == b"" or answer.startswith(b"HTTP/1.1 408")), answer[:40]
        assert time.monotonic() - opened < 2 + 6
        for sock in half_headers:  # client_header_timeout 2s (test value)
            assert _closed_within(sock, 6) == (True, b"")
        assert time.monotonic() - opened < 2 + 8
    finally:
        for sock in slow + crowd + half_headers:
            sock.close()
    again = httpx.post(proxied["proxy"] + "/recommend", json={"user_id": proxied["users"][0]}, timeout=10)
    assert again.status_code == 200
