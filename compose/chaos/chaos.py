"""The in-network half of `make chaos` (compose/chaos/chaos drives the faults from the host).

  burst SCENARIO          POST /logs/ from 10 clients while the host injects a fault; records every answer
  unavailable SCENARIO DEPENDENCY
                          while DEPENDENCY is down: every endpoint answers 503 JSON with Retry-After, in time
  verify SCENARIO FAULT_ENDED_AT WORKING_AT [beat]
                          waits (bounded) until every accepted request's row is written, then counts
                          lost rows and duplicated effects; for database faults, also that beat schedules again
  report                  prints the table of every scenario; exits 1 on any loss, duplicate, 500 or hang

Results go to /chaos-results/<scenario>.json, one file per scenario, merged by each step.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WEB = os.environ.get("CHAOS_WEB_URL", "http://web:8000")
RESULTS = Path("/chaos-results")
CLIENTS = 10
BURST_REQUESTS = int(os.environ.get("CHAOS_BURST_REQUESTS", "400"))
BURST_RATE = 100.0  # requests/s over all clients: the fault lands one second into a burst of about four
BURST_SECONDS = 6.0  # no new request after this; one in flight still has the client timeout
CLIENT_TIMEOUT = 10.0  # a request that takes longer is a hang
REFUSAL_SECONDS = 6.0  # a dependency that is down must be answered with a 503 within this
WRITE_TIMEOUT = float(os.environ.get("CHAOS_WRITE_TIMEOUT", "90"))


def load(scenario: str) -> dict[str, Any]:
    path = RESULTS / f"{scenario}.json"
    return json.loads(path.read_text()) if path.exists() else {"scenario": scenario}


def save(scenario: str, **fields: Any) -> None:
    result = load(scenario) | fields
    (RESULTS / f"{scenario}.json").write_text(json.dumps(result, indent=1))


def call(method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request: its status, JSON body (None if not JSON), Retry-After and seconds taken; status 0 is a hang."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if body is not None else {}
    req = urllib.request.Request(f"{WEB}{path}", data=data, method=method, headers=headers)  # noqa: S310
    started = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=CLIENT_TIMEOUT) as response:  # noqa: S310 - our own web
            status, raw, retry_after = response.status, response.read(), response.headers.get("Retry-After")
    except urllib.error.HTTPError as error:
        status, raw, retry_after = error.code, error.read(), error.headers.get("Retry-After")
    except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
        return {
            "status": 0,
            "json": None,
            "retry_after": None,
            "seconds": time.monotonic() - started,
            "error": repr(error),
        }
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return {"status": status, "json": parsed, "retry_after": retry_after, "seconds": time.monotonic() - started}


def is_clear_refusal(answer: dict[str, Any]) -> bool:
    body = answer["json"]
    return (
        answer["status"] == 503
        and isinstance(body, dict)
        and bool(body.get("error"))
        and (answer["retry_after"] or "").isdigit()
        and answer["seconds"] <= REFUSAL_SECONDS
    )


def burst(scenario: str) -> None:
    started = time.monotonic()
    (RESULTS / f"{scenario}.started").write_text(str(time.time()))
    answers: list[dict[str, Any]] = []
    lock = threading.Lock()

    def send(index: int) -> None:
        # Paced, so that the burst lasts about four seconds and the fault lands inside it.
        delay = started + index / BURST_RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        if time.monotonic() - started > BURST_SECONDS:
            return
        text = f"chaos {scenario} {index} {uuid.uuid4().hex[:8]}"
        answer = call("POST", "/logs/", {"text": text})
        answer["text"] = text
        with lock:
            answers.append(answer)

    with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
        list(pool.map(send, range(BURST_REQUESTS)))
    accepted = [a for a in answers if a["status"] == 202]
    refused = [a for a in answers if is_clear_refusal(a)]
    failed = [a for a in answers if a["status"] != 202 and not is_clear_refusal(a)]
    save(
        scenario,
        sent=len(answers),
        accepted=[{"request_id": a["json"]["request_id"], "text": a["text"]} for a in accepted],
        refused=len(refused),
        failed=Counter(str(a["status"]) for a in failed),
        failed_example=failed[0] if failed else None,
    )


# What each endpoint needs: while one of these is down it must refuse clearly, and work while it is not.
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("GET", "/health/", None, {"database", "broker"}),
    ("POST", "/logs/", {"text": "sent while a dependency is down"}, {"database", "broker"}),
    ("GET", "/logs/", None, {"database"}),
    ("GET", f"/tasks/{uuid.uuid4()}/", None, {"database"}),
    ("POST", "/tasks/add/", {"x": 1, "y": 2}, {"database", "broker"}),
    ("GET", "/heartbeats/", None, {"database"}),
]


def unavailable(scenario: str, dependency: str) -> None:
    """While `dependency` is down: what needs it answers a clear 503, what does not answers 2xx."""
    wrong = []
    slowest = 0.0
    for method, path, body, needs in ENDPOINTS:
        answer = call(method, path, body)
        slowest = max(slowest, answer["seconds"])
        found = f"{answer['status']} in {answer['seconds']:.1f}s: {answer['json'] or answer.get('error')}"
        if dependency not in needs:
            if not 200 <= answer["status"] < 300:
                wrong.append(f"{method} {path} needs no {dependency} but answered {found}")
        elif not is_clear_refusal(answer):
            wrong.append(f"{method} {path}: {found}")
        elif path == "/health/" and dependency not in answer["json"].get("unavailable", []):
            wrong.append(f"{method} {path} does not name the {dependency}: {answer['json']}")
    save(scenario, refusals_checked=len(ENDPOINTS), refusals_wrong=wrong, refusal_slowest_s=round(slowest, 2))


def verify(scenario: str, fault_ended_at: float, working_at: str, *, check_beat: bool) -> None:
    import django

    django.setup()
    from heartbeat.models import Heartbeat
    from logs.models import Log

    result = load(scenario)
    accepted = {item["request_id"]: item["text"] for item in result.get("accepted", [])}
    beat_after = datetime.fromtimestamp(fault_ended_at, tz=UTC)
    deadline = time.monotonic() + WRITE_TIMEOUT
    written: set[str] = set()
    rows_at = beat_at = None
    while time.monotonic() < deadline:
        missing = [request_id for request_id in accepted if request_id not in written]
        for start in range(0, len(missing), 500):
            found = Log.objects.filter(request_id__in=missing[start : start + 500]).values_list("request_id", flat=True)
            written.update(str(request_id) for request_id in found)
        if rows_at is None and len(written) == len(accepted):
            rows_at = time.time()
        if (
            check_beat
            and beat_at is None
            and Heartbeat.objects.filter(name="beat", last_run_at__gt=beat_after).exists()
        ):
            beat_at = time.time()
        if rows_at is not None and (beat_at is not None or not check_beat):
            break
        time.sleep(0.5)
    texts = Counter(Log.objects.filter(text__in=list(accepted.values())).values_list("text", flat=True))
    save(
        scenario,
        written=len(written),
        lost=len(accepted) - len(written),
        duplicated=sum(count - 1 for count in texts.values() if count > 1),
        rows_recovered_s=round(rows_at - fault_ended_at, 1) if rows_at else None,
        beat_recovered_s=round(beat_at - fault_ended_at, 1) if beat_at else None,
        beat_check=check_beat,
        healthy_s=round(float(working_at) - fault_ended_at, 1) if working_at != "never" else None,
        stack_problems=[] if working_at != "never" else ["web, worker and beat not all working again within 60s"],
    )


def report() -> None:
    rows = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"), key=lambda p: p.stat().st_mtime)]
    columns = ("accepted", 9), ("written", 9), ("lost", 6), ("dup", 5), ("refused", 9), ("500/hang", 10)
    print(f"{'scenario':<28}" + "".join(f"{title:>{width}}" for title, width in columns) + f"{'recover s':>11}")
    problems = []
    for row in rows:
        name = row["scenario"]
        failed = sum(row.get("failed", {}).values())
        times = [row.get(key) for key in ("rows_recovered_s", "beat_recovered_s", "healthy_s")]
        recover = max((t for t in times if t is not None), default=None)
        print(
            f"{name:<28}{len(row.get('accepted', [])):>9}{row.get('written', 0):>9}{row.get('lost', 0):>6}"
            f"{row.get('duplicated', 0):>5}{row.get('refused', 0):>9}{failed:>10}"
            f"{(f'{recover:.1f}' if recover is not None else '-'):>11}"
        )
        if row.get("lost"):
            problems.append(f"{name}: {row['lost']} accepted requests never written")
        if row.get("duplicated"):
            problems.append(f"{name}: {row['duplicated']} effects duplicated")
        if failed:
            problems.append(
                f"{name}: answers other than 202 or a clear 503: {row['failed']}, e.g. {row['failed_example']}"
            )
        if not row.get("accepted"):
            problems.append(f"{name}: no request was accepted, so nothing was tested")
        if row.get("beat_check") and row.get("beat_recovered_s") is None:
            problems.append(f"{name}: beat did not schedule its task after the database came back")
        problems += [f"{name}: {wrong}" for wrong in row.get("refusals_wrong", [])]
        problems += [f"{name}: {problem}" for problem in row.get("stack_problems", [])]
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print("chaos: every accepted request written exactly once; every refusal a 503 with Retry-After")


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "burst":
        burst(arguments[0])
    elif command == "unavailable":
        unavailable(arguments[0], arguments[1])
    elif command == "verify":
        verify(arguments[0], float(arguments[1]), arguments[2], check_beat="beat" in arguments[3:])
    elif command == "report":
        report()
    else:
        sys.exit(__doc__)
