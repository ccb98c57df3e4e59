"""Checks a running development stack from inside its compose network (make smoke).

Standard library only. Each check prints one line; the first failure exits 1 with what was expected.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

from checks import check, eventually

WEB = os.environ.get("SMOKE_WEB_URL", "http://web:8000")
FLOWER = os.environ.get("SMOKE_FLOWER_URL", "http://flower:5555")
FLOWER_CREDENTIALS = f"{os.environ['FLOWER_USER']}:{os.environ['FLOWER_PASSWORD']}"
RUNTIME_REPORT = "diagnostics.tasks.runtime_report_task"
DJANGO_TASK_MODULE, DJANGO_TASK = "diagnostics.tasks", "django_runtime_report_task"
FLOWER_AUTH = "Basic " + base64.b64encode(FLOWER_CREDENTIALS.encode()).decode()


def request(method: str, url: str, body: Any = None, *, form: bool = False, auth: str | None = None) -> tuple[int, Any]:
    headers = {"Authorization": auth} if auth else {}
    data = None
    if body is not None:
        if form:
            data = "&".join(f"{key}={value}" for key, value in body.items()).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - our own http URLs
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310 - our own http URLs
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def django_shell(code: str) -> str:
    """The last line `code` prints, run by `manage.py shell` in this container (the development image)."""
    completed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd="/app", capture_output=True, text=True, timeout=60
    )
    if completed.returncode != 0:
        raise AssertionError(f"manage.py shell failed: {completed.stderr[-2000:]}")
    return completed.stdout.strip().splitlines()[-1]


def main() -> None:
    status, body = request("GET", f"{WEB}/health/")
    check("web /health/ reports database and broker ok", status == 200 and body.get("status") == "ok", body)
    status, body = request("GET", f"{FLOWER}/healthcheck")
    check("flower /healthcheck", status == 200, body)
    # The landing page: what `make up` tells a newcomer to open first.
    page = eventually(
        lambda: (r := request("GET", f"{WEB}/"))[0] == 200 and "Everything is up" in r[1] and r[1],
        timeout=20,
        what="the landing page saying everything is up",
    )
    check(
        "GET / is the landing page: everything up, links to the admin and Flower",
        'href="/admin/"' in page and ">Flower</a>" in page and "pool gevent" in page,
        page[:300],
    )

    status, _ = request("GET", f"{FLOWER}/api/workers")
    check("Flower without credentials answers 401", status == 401, status)
    workers = eventually(
        lambda: request("GET", f"{FLOWER}/api/workers?refresh=1", auth=FLOWER_AUTH)[1],
        timeout=15,
        what="flower workers",
    )
    # Each worker against its own configuration (Celery's `inspect conf`: the settings its process started with,
    # from its container's environment), not this container's: `CELERY_WORKER_CONCURRENCY=7 make up` passes too.
    answered = {name: info for name, info in workers.items() if info.get("stats") and info.get("conf")}
    pools = {
        name: (info["stats"]["pool"]["implementation"], info["stats"]["pool"]["max-concurrency"])
        for name, info in answered.items()
    }
    # The settings as Django holds them (config_from_object with the CELERY namespace): CELERY_WORKER_CONCURRENCY.
    configured = {name: info["conf"].get("CELERY_WORKER_CONCURRENCY") for name, info in answered.items()}
    check(
        "Flower lists the worker on the gevent pool, at the concurrency it was configured with",
        bool(pools)
        and all(
            implementation.endswith("gevent:TaskPool") and concurrency == configured[name]
            for name, (implementation, concurrency) in pools.items()
        ),
        {"pools": pools, "configured": configured},
    )
    # A task sent through Flower's API (authenticated), run by the worker, its result read back from Postgres.
    status, body = request("POST", f"{FLOWER}/api/task/async-apply/{RUNTIME_REPORT}", {}, auth=FLOWER_AUTH)
    check("Flower sends a task to the worker", status == 200 and "task-id" in body, (status, body))
    task_id = body["task-id"]
    report = eventually(
        lambda: (
            (r := request("GET", f"{FLOWER}/api/task/result/{task_id}", auth=FLOWER_AUTH)[1]).get("state") == "SUCCESS"
            and r["result"]
        ),
        timeout=15,
        what="the worker's runtime report",
    )
    check(
        "the worker ran it on gevent, with psycopg2 cooperative and a connection per greenlet",
        report["gevent_patched"] and report["connections_greenlet_local"] and report["psycopg2_wait_callback"],
        report,
    )
    task = eventually(
        lambda: (
            (t := request("GET", f"{FLOWER}/api/task/info/{task_id}", auth=FLOWER_AUTH))[0] == 200
            and t[1].get("state") == "SUCCESS"
            and t[1]
        ),
        timeout=15,
        what="flower task info",
    )
    check("Flower shows the task succeeded", task["state"] == "SUCCESS", task)

    # A django.tasks task (celery_runtime.django_tasks), enqueued with Django's API in this container's Django
    # (the stack's settings, database and broker), run by the worker, read back by Django and shown by Flower.
    result_id = django_shell(f"from {DJANGO_TASK_MODULE} import {DJANGO_TASK}; print({DJANGO_TASK}.enqueue().id)")
    read_back = f"from {DJANGO_TASK_MODULE} import {DJANGO_TASK}; r = {DJANGO_TASK}.get_result({result_id!r})"
    status_of = f"{read_back}; print(r.status, r.attempts, r.return_value['gevent_patched'] if r.is_finished else '')"
    outcome = eventually(
        lambda: (o := django_shell(status_of)).startswith(("SUCCESSFUL", "FAILED")) and o,
        timeout=15,
        what="the django.tasks task's result",
    )
    check(
        "a django.tasks task ran on the gevent worker, once, its result read back",
        outcome == "SUCCESSFUL 1 True",
        outcome,
    )
    info = eventually(
        lambda: (t := request("GET", f"{FLOWER}/api/task/info/{result_id}", auth=FLOWER_AUTH))[0] == 200 and t[1],
        timeout=15,
        what="flower task info of the django.tasks task",
    )
    name = f"{DJANGO_TASK_MODULE}.{DJANGO_TASK}"
    check("Flower shows it by the function's module path", info.get("name") == name, info)

    # >>> example apps
    status, body = request("POST", f"{WEB}/logs/", {"text": "smoke test"}, form=True)
    check("POST /logs/ is accepted (202)", status == 202, (status, body))
    url = body["url"]
    row = eventually(lambda: (r := request("GET", f"{WEB}{url}"))[0] == 200 and r[1], timeout=15, what="log row")
    check("the worker wrote the log row", row["text"] == "smoke test", row)
    status, body = request("GET", f"{WEB}/logs/")
    check("GET /logs/ lists it", any(log["request_id"] == row["request_id"] for log in body["logs"]), body)
    # The same log summarized by the example's django.tasks task, its result read back with Django's get_result.
    status, body = request("POST", f"{WEB}/logs/{row['request_id']}/summary/")
    check("POST /logs/<id>/summary/ (a django.tasks task) is accepted", status == 202, (status, body))
    summary_url = body["url"]
    summary = eventually(
        lambda: (r := request("GET", f"{WEB}{summary_url}")[1]).get("status") == "SUCCESSFUL" and r,
        timeout=15,
        what="the log's summary",
    )
    check("the worker summarized it", summary["summary"]["words"] == 2, summary)

    for payload in ({}, {"text": ""}, {"text": "x" * 256}, {"text": 5}):
        status, body = request("POST", f"{WEB}/logs/", payload)
        rejected = status == 400 and bool(body.get("error"))
        check(f"POST /logs/ {json.dumps(payload)[:30]} is a 400 with a reason", rejected, body)

    status, body = request("POST", f"{WEB}/tasks/add/", {"x": 20, "y": 22})
    check("POST /tasks/add/ is accepted", status == 202, body)
    task_id, task_url = body["task_id"], body["url"]
    result = eventually(lambda: (r := request("GET", f"{WEB}{task_url}")[1])["ready"] and r, timeout=15, what="add")
    check("the add result is read back by task id", result["state"] == "SUCCESS" and result["result"] == 42, result)

    beats = eventually(lambda: request("GET", f"{WEB}/heartbeats/")[1]["heartbeats"], timeout=60, what="beat's run")
    check("beat's periodic task has run", beats[0]["runs"] >= 1, beats)
    # <<< example apps
    print("smoke: all checks passed")


if __name__ == "__main__":
    try:
        main()
    except (AssertionError, OSError, KeyError) as failure:
        print(f"FAIL {failure}", file=sys.stderr)
        sys.exit(1)
