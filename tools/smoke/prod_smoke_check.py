"""Checks the production stack through the proxy's published ports, as a client would (make prod-smoke).

Connects to SMOKE_ADDRESS (default 127.0.0.1, the host: the smoke service uses the host's network) on
HTTP_PORT and HTTPS_PORT, with DOMAIN as the TLS server name and Host, so the certificate and the routing are
those a browser gets. SMOKE_CA_FILE is the CA to trust (Caddy's local root for `tls internal`); without it
the system's CAs. DJANGO_API_WRITE_TOKEN, when set, goes with every POST to the example endpoints, as production
requires once they are switched on. Standard library only. Each check prints one line; the first failure exits 1.

    prod_smoke_check.py               every check
    prod_smoke_check.py health        the site answers /health/ over HTTPS
    prod_smoke_check.py post-log TEXT POST /logs/, wait until the worker wrote it, print its request_id
    prod_smoke_check.py examples-off  POST /logs/ is a 404: the example endpoints are off, as by default
    prod_smoke_check.py flower-workers print the workers Flower lists with their stats, one a line
    prod_smoke_check.py load STOP_FILE [RATE]
                                      POST /logs/ at RATE a second (default 10) until STOP_FILE exists, then
                                      check that every accepted row was written; prints the figures as JSON
                                      and exits 1 on any non-2xx answer, failed request or unwritten row
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import socket
import ssl
import sys
import time
import uuid
from collections import Counter
from typing import Any

from checks import check, eventually

DOMAIN = os.environ["DOMAIN"]
ADDRESS = os.environ.get("SMOKE_ADDRESS", "127.0.0.1")
HTTP_PORT = int(os.environ.get("HTTP_PORT", "80"))
HTTPS_PORT = int(os.environ.get("HTTPS_PORT", "443"))
HTTPS_ORIGIN = f"https://{DOMAIN}" + ("" if HTTPS_PORT == 443 else f":{HTTPS_PORT}")
FLOWER_CREDENTIALS = f"{os.environ['FLOWER_USER']}:{os.environ['FLOWER_PASSWORD']}"
FLOWER_AUTH = "Basic " + base64.b64encode(FLOWER_CREDENTIALS.encode()).decode()
TLS = ssl.create_default_context(cafile=os.environ.get("SMOKE_CA_FILE") or None)


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __repr__(self) -> str:
        return f"<{self.status} {self.body[:200]!r}>"


class _HTTPConnection(http.client.HTTPConnection):
    """Plain HTTP to ADDRESS, whatever DOMAIN resolves to."""

    def connect(self) -> None:
        self.sock = socket.create_connection((ADDRESS, self.port), self.timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to ADDRESS, with DOMAIN as the server name the certificate is verified against."""

    def connect(self) -> None:
        raw = socket.create_connection((ADDRESS, self.port), self.timeout)
        self.sock = TLS.wrap_socket(raw, server_hostname=self.host)


def request(
    method: str,
    path: str,
    *,
    https: bool = True,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    connection: http.client.HTTPConnection
    if https:
        connection = _HTTPSConnection(DOMAIN, HTTPS_PORT, timeout=15, context=TLS)
    else:
        connection = _HTTPConnection(DOMAIN, HTTP_PORT, timeout=15)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return Response(response.status, response.headers, response.read())
    finally:
        connection.close()


def post_json(path: str, payload: Any) -> Response:
    """With the write token that production requires of the example endpoints' writes, when there is one."""
    headers = {"Content-Type": "application/json"}
    if os.environ.get("DJANGO_API_WRITE_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['DJANGO_API_WRITE_TOKEN']}"
    return request("POST", path, body=json.dumps(payload).encode(), headers=headers)


def check_health() -> None:
    response = request("GET", "/health/")
    body = response.json() or {}
    check(f"GET {HTTPS_ORIGIN}/health/ (certificate verified for {DOMAIN})", body.get("status") == "ok", response)
    hsts = response.headers.get("Strict-Transport-Security", "")
    check("HTTPS responses carry HSTS", "max-age=" in hsts, hsts or "no Strict-Transport-Security header")


# >>> example apps
def post_log(text: str) -> str:
    response = post_json("/logs/", {"text": text})
    check("POST /logs/ over HTTPS is accepted (202)", response.status == 202, response)
    url = response.json()["url"]
    written = eventually(
        lambda: (r := request("GET", url)).status == 200 and r.json(), timeout=30, what=f"the worker writing {url}"
    )
    check("the worker wrote the row, read back over HTTPS", written["text"] == text, written)
    return str(written["request_id"])


# <<< example apps


def check_redirect() -> None:
    response = request("GET", "/health/?from=http", https=False)
    location = response.headers.get("Location", "")
    expected = f"{HTTPS_ORIGIN}/health/?from=http"
    check(
        f"HTTP redirects to HTTPS ({expected})",
        response.status in (301, 308) and location == expected,
        (response.status, location),
    )


def check_static_files() -> None:
    page = request("GET", "/admin/login/")
    check("GET /admin/login/ (the admin, through the proxy)", page.status == 200, page)
    cookies = page.headers.get_all("Set-Cookie") or []
    csrf = [cookie for cookie in cookies if cookie.startswith("csrftoken=")]
    check("the CSRF cookie is Secure", bool(csrf) and "secure" in csrf[0].lower(), cookies)
    match = re.search(rb"/static/admin/css/[\w.-]+\.[0-9a-f]{12}\.css", page.body)
    check("the admin links its CSS by a hashed name (collectstatic's manifest)", match is not None, page.body[:300])
    assert match is not None
    path = match.group().decode()
    css = request("GET", path, headers={"Accept-Encoding": "gzip"})
    check(f"GET {path}", css.status == 200 and css.headers.get("Content-Type", "").startswith("text/css"), css)
    check(
        "... compressed and cached for good (WhiteNoise)",
        css.headers.get("Content-Encoding") == "gzip" and "immutable" in css.headers.get("Cache-Control", ""),
        dict(css.headers),
    )


def answer_to_upload(path: str, size: int, *, chunked: bool = False) -> tuple[int | None, bytes]:
    """POSTs `size` bytes (with a Content-Length, or chunked without one), and returns the status and the body
    the server answers, even when it answers before the body is all sent and closes the connection
    (what a proxy enforcing a limit may do); (None, b"") if it never does."""
    raw = socket.create_connection((ADDRESS, HTTPS_PORT), 30)
    with TLS.wrap_socket(raw, server_hostname=DOMAIN) as tls:
        length = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        head = f"POST {path} HTTP/1.1\r\nHost: {DOMAIN}\r\nContent-Type: text/plain\r\n{length}\r\n\r\n"
        chunk = b"x" * 65536
        framed = b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk
        try:
            tls.sendall(head.encode())
            for _ in range(size // len(chunk)):
                tls.sendall(framed)
            if chunked:
                tls.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server stopped reading; its answer may be waiting
        try:
            answer = _read_answer(tls)
        except OSError:
            return None, b""
    match = re.match(rb"HTTP/1\.[01] (\d{3})", answer)
    return (int(match.group(1)) if match else None), answer.partition(b"\r\n\r\n")[2]


def _read_answer(tls: ssl.SSLSocket) -> bytes:
    """The status line, headers and body of one response (the body as long as its Content-Length says)."""
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = tls.recv(4096)
        if not data:
            return answer
        answer += data
    head, _, body = answer.partition(b"\r\n\r\n")
    declared = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while declared and len(body) < int(declared.group(1)):
        data = tls.recv(4096)
        if not data:
            break
        body += data
    return head + b"\r\n\r\n" + body


def check_body_limit() -> None:
    # Flower reads a whole body before it checks credentials: an 11 MB body that got through would be
    # answered 401. The proxy's limit (10 MB, deploy/caddy/Caddyfile) stops it on the way.
    status, body = answer_to_upload("/flower/api/workers", 11 * 1024 * 1024)
    check(
        "an 11 MB request body is refused at the proxy with 413 and the reason",
        status == 413 and b"request body too large" in body,
        (status, body[:200]),
    )
    # Sent chunked, its size is not known before it is read: Caddy cuts it at the limit (413, or 502 before
    # Caddy 2.7).
    status, body = answer_to_upload("/flower/api/workers", 11 * 1024 * 1024, chunked=True)
    check("... and sent chunked, it is cut at the limit", status in (413, 502), (status, body[:200]))


def check_flower() -> None:
    response = request("GET", "/flower/")
    check("Flower without credentials answers 401", response.status == 401, response)
    response = request("GET", "/flower/", headers={"Authorization": FLOWER_AUTH})
    check("Flower with the credentials answers at /flower/", response.status == 200, response)
    workers = eventually(
        lambda: request("GET", "/flower/api/workers?refresh=1", headers={"Authorization": FLOWER_AUTH}).json(),
        timeout=20,
        what="Flower's worker list",
    )
    pools = [info["stats"]["pool"]["implementation"] for info in workers.values() if info.get("stats")]
    check("Flower lists the worker, on the gevent pool", any(p.endswith("gevent:TaskPool") for p in pools), pools)
    for path in ("/flower/metrics", "/flower/healthcheck", "/flower/metrics/", "/flower//metrics", "/FLOWER/Metrics"):
        for auth in ({}, {"Authorization": FLOWER_AUTH}):
            response = request("GET", path, headers=auth)
            leaked = b"flower_" in response.body or b"celery" in response.body.lower() or response.body == b"OK"
            check(
                f"{path} is not public ({response.status}{', with credentials' if auth else ''})",
                response.status == 404 and not leaked,
                response,
            )


def flower_workers() -> list[str]:
    """The workers Flower lists with their stats (refresh=1). Flower keeps the last stats of a worker that has
    stopped, so a caller matches these names against the workers it knows are running."""
    response = request("GET", "/flower/api/workers?refresh=1", headers={"Authorization": FLOWER_AUTH})
    if response.status != 200:
        raise AssertionError(f"Flower's worker list: {response}")
    return sorted(name for name, info in (response.json() or {}).items() if info.get("stats"))


# >>> example apps
def load(stop_file: str, rate: float) -> bool:
    """A steady stream of POST /logs/ while something (a rolling update) happens, until stop_file exists; then
    every accepted row is read back. True when every request got a 2xx and every accepted row was written."""
    statuses: Counter[str] = Counter()
    accepted: dict[str, str] = {}  # url -> text
    refusals: list[str] = []
    started = time.monotonic()
    while not os.path.exists(stop_file):
        sent_at = time.monotonic()
        text = f"load {uuid.uuid4()}"
        try:
            response = post_json("/logs/", {"text": text})
            statuses[str(response.status)] += 1
            if response.status == 202:
                accepted[response.json()["url"]] = text
            else:
                refusals.append(f"{response.status} {response.body[:120]!r}")
        except OSError as error:
            statuses["no answer"] += 1
            refusals.append(f"no answer: {error}")
        time.sleep(max(0.0, 1 / rate - (time.monotonic() - sent_at)))
    duration = time.monotonic() - started
    unwritten = dict(accepted)
    deadline = time.monotonic() + 120
    while unwritten and time.monotonic() < deadline:
        for url, text in list(unwritten.items()):
            response = request("GET", url)
            if response.status == 200 and (response.json() or {}).get("text") == text:
                del unwritten[url]
        if unwritten:
            time.sleep(1)
    requests = sum(statuses.values())
    non_2xx = requests - sum(count for status, count in statuses.items() if status.startswith("2"))
    figures = {
        "seconds": round(duration, 1),
        "requests": requests,
        "non_2xx": non_2xx,
        "statuses": dict(statuses),
        "accepted": len(accepted),
        "written": len(accepted) - len(unwritten),
        "refusals": refusals[:10],
        "unwritten": list(unwritten)[:10],
    }
    print(json.dumps(figures))
    return requests > 0 and non_2xx == 0 and not unwritten


# <<< example apps


def main(argv: list[str]) -> None:
    if argv[:1] == ["health"]:
        check_health()
        return
    # >>> example apps
    if argv == ["examples-off"]:
        response = post_json("/logs/", {"text": "a default production stack serves no example endpoint"})
        check(
            "POST /logs/ on a default production stack is a 404 (DJANGO_EXAMPLE_ENDPOINTS)",
            response.status == 404,
            response,
        )
        return
    if argv[:1] == ["post-log"] and len(argv) == 2:
        print(post_log(argv[1]))
        return
    # <<< example apps
    if argv == ["flower-workers"]:
        print("\n".join(flower_workers()))
        return
    # >>> example apps
    if argv[:1] == ["load"] and len(argv) in (2, 3):
        if not load(argv[1], float(argv[2]) if len(argv) == 3 else 10.0):
            sys.exit(1)
        return
    # <<< example apps
    if argv:
        raise SystemExit(__doc__)
    check_health()
    response = request("GET", "/")
    check("the landing page is off in production (/ is a 404; DJANGO_LANDING_PAGE)", response.status == 404, response)
    check_redirect()
    check_static_files()
    # >>> example apps
    post_log(f"prod smoke {uuid.uuid4()}")
    # <<< example apps
    check_body_limit()
    check_flower()
    print("prod smoke (HTTP): all checks passed")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (AssertionError, OSError, KeyError, ValueError) as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        sys.exit(1)
