"""The in-network half of `make chaos` (tools/chaos/chaos drives the faults from the host).

  burst SCENARIO          POST /logs/ from 10 clients while the host injects a fault; records every answer
  unavailable SCENARIO DEPENDENCY
                          while DEPENDENCY is down: every endpoint answers 503 JSON with Retry-After, in time
  verify SCENARIO FAULT_ENDED_AT WORKING_AT [beat]
                          waits (bounded) until every accepted request's row is written, then counts
                          lost rows and duplicated effects; for database faults, also that beat schedules again
  tasks SCENARIO [send|verify]
                          task scenarios, sent straight to Celery (diagnostics tasks, each run counted): held-tasks
                          (countdown and long tasks past the liveness), poison, malformed, worker-sigkill-busy,
                          worker-sigkill-two-queues (send, the host kills the worker, verify), worker-cpu-bound (a
                          task holds the CPU past the liveness while its worker holds countdown tasks), redis-paused
                          (send, the host pauses Redis past the liveness, verify: no run twice, no dead letter),
                          sentinel-held (the same through a failover: the primary SIGKILLed)
  report                  prints the tables of every scenario; exits 1 on any loss, unallowed second run, 500 or hang

Every successful task run of the stack's worker is pushed to the RUNS list (DIAGNOSTICS_RUNS_TO): the "rerun"
column counts second runs of the same task id, allowed only where acks can be lost (a killed worker, Redis gone).

Results go to /chaos-results/<scenario>.json, one file per scenario, merged by each step.
"""

from __future__ import annotations

import fcntl
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
RUNS = "chaos-runs"  # the worker's DIAGNOSTICS_RUNS_TO (docker-compose.chaos.yml)
HEARTBEAT_SECONDS = 3.0  # how often each worker process beats on the defaults (a fifth of the 15 s liveness)
# Where a finished task's ack may not have reached Redis when the fault struck, so a second run is allowed
# (acks late: the task ran, its ack was lost); everywhere else a second run fails the suite.
# A failover breaks every connection to the old primary, and it may not have replicated its last acks.
RERUN_ALLOWED = ("worker-sigkill", "redis-restart", "redis-down", "sentinel-failover", "sentinel-switchover")


def broker() -> Any:
    """The broker's primary (through Sentinel on the Sentinel stack)."""
    import django

    django.setup()
    from celery_runtime.redis_client import broker_client

    return broker_client(decode_responses=True)


def reports() -> Any:
    """Where the worker reports its runs: the broker, or a Redis apart (DIAGNOSTICS_REPORTS_URL)."""
    import redis

    url = os.environ.get("DIAGNOSTICS_REPORTS_URL")
    return redis.Redis.from_url(url, decode_responses=True) if url else broker()


def reruns_since(start: int, name: str | None = None) -> int:
    """Runs in the RUNS list from `start` on that repeat a task id run before (of task `name`, or any)."""
    entries = reports().lrange(RUNS, 0, -1)
    seen: set[str] = set(entries[:start])
    reruns = 0
    for entry in entries[start:]:
        if name and not entry.startswith(f"{name} "):
            continue
        reruns += entry in seen
        seen.add(entry)
    return reruns


def owner_problems() -> list[str]:
    """Each worker process that answers a ping must have one owner beating now. Two: a connection closed at a
    reconnect kept alive by its heartbeat, so that what it held never comes back (the fault this caught lost
    requests in redis-restart). None: a process on a transport that does not own its messages (after a Sentinel
    failover, kombu's own, until the transport kept its name: sentinel-held's tasks never ran)."""
    import django

    django.setup()
    from config.celery_app import app

    client = broker()
    seconds, microseconds = client.time()
    recent = seconds + microseconds / 1e6 - 1.5 * HEARTBEAT_SECONDS
    owners = [owner for owner, at in client.zrange("unacked_owners", 0, -1, withscores=True) if at > recent]
    per_process = Counter(owner.rsplit(":", 1)[0] for owner in owners)  # owner: host:pid:connection
    problems = [
        f"worker process {process} has {count} owners beating" for process, count in per_process.items() if count > 1
    ]
    answered = [name for reply in app.control.ping(timeout=2.0) for name in reply]
    if len(per_process) < len(answered):
        problems.append(f"{len(answered)} worker processes answer a ping, {len(per_process)} have an owner beating")
    return problems


def load(scenario: str) -> dict[str, Any]:
    path = RESULTS / f"{scenario}.json"
    return json.loads(path.read_text()) if path.exists() else {"scenario": scenario}


def save(scenario: str, **fields: Any) -> None:
    """Merges `fields` into the scenario's file, under a lock and written whole: during an outage the burst and the
    refusal check run at once, in containers of their own, and each merges into the same file (unlocked, one could
    read the other's half-written file, or write back what it read before the other's answers)."""
    with open(RESULTS / f"{scenario}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = load(scenario) | fields
        written = RESULTS / f".{scenario}.json.partial"
        written.write_text(json.dumps(result, indent=1))
        written.replace(RESULTS / f"{scenario}.json")


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
    save(scenario, runs_from=reports().llen(RUNS))
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
    # Two heartbeats after the worker worked again: a connection closed by the fault has stopped beating by then.
    if working_at != "never":
        time.sleep(max(0.0, float(working_at) + 2 * HEARTBEAT_SECONDS + 1 - time.time()))
    owners = owner_problems()
    save(
        scenario,
        written=len(written),
        lost=len(accepted) - len(written),
        duplicated=sum(count - 1 for count in texts.values() if count > 1),
        reruns=reruns_since(result["runs_from"], "logs.tasks.log_write_task"),
        rows_recovered_s=round(rows_at - fault_ended_at, 1) if rows_at else None,
        beat_recovered_s=round(beat_at - fault_ended_at, 1) if beat_at else None,
        beat_check=check_beat,
        healthy_s=round(float(working_at) - fault_ended_at, 1) if working_at != "never" else None,
        stack_problems=([] if working_at != "never" else ["web, worker and beat not all working again within 60s"])
        + owners,
    )


# Past the default liveness (15 s) and the sweep (5 s) that follows it: a held task that another worker is
# handed meanwhile shows as a second run.
HELD_SECONDS = 30
SECOND_QUEUE = "second"  # the chaos stack's worker consumes it too (docker-compose.chaos.yml)
SETTLE_SECONDS = 22  # after the last run: long enough for a wrongly given back message to run a second time
TASK_TIMEOUT = 150
# worker-cpu-bound: a task that holds the CPU twice the liveness, while its worker holds countdown tasks due later.
SPIN_SECONDS = 30
SPIN_COUNTDOWN = 45
# redis-paused: countdown tasks due after Redis is paused past the liveness (REDIS_PAUSED_SECONDS, tools/chaos/chaos);
# sentinel-held: the same, due after the primary is SIGKILLed and the Sentinels have promoted its replica.
PAUSED_COUNTDOWN = 40


def wait_until_held(client: Any, queues: list[str]) -> None:
    """Until the worker has taken every task sent (the queues are empty), for 10 s at the most."""
    deadline = time.monotonic() + 10
    while any(client.llen(queue) for queue in queues) and time.monotonic() < deadline:
        time.sleep(0.1)


def tasks(scenario: str, phase: str, fault_at: str | None = None) -> None:
    """One task scenario: `send` its tasks, or `verify` that each ran once (the poison: set aside after 3 runs)."""
    import django

    django.setup()
    from celery_runtime.dead_letters import dead_letter_drop, dead_letter_list
    from diagnostics.tasks import noop_task, poison_task, sleep_task, spin_task

    client, runs_client, report = broker(), reports(), f"chaos-{scenario}"
    if phase == "send":
        runs_client.delete(report, f"{report}-poison")
        save(scenario, tasks=True, sent_at=time.time(), dead_letters_before=client.llen("unacked_dead_letters"))
        if scenario == "held-tasks":
            for index in range(20):
                noop_task.apply_async((report, index), countdown=HELD_SECONDS)
            for index in range(20, 24):
                sleep_task.apply_async((HELD_SECONDS, report, index))
            save(scenario, count=24)
        elif scenario == "poison":
            poison = poison_task.apply_async((f"{report}-poison", 0))
            for index in range(100):
                sleep_task.apply_async((0.5, report, index))
            save(scenario, count=100, poison_id=poison.id)
        elif scenario == "malformed":
            for index in range(100):
                noop_task.apply_async((report, index))
                if index == 50:  # consumers take from the right: in the middle of one take's batch
                    client.lpush("celery", "not json", '{"properties": {"no": "delivery tag"}}')
            save(scenario, count=100)
        elif scenario.startswith("worker-sigkill-"):
            # busy: one queue; two-queues: half on each of the worker's queues, each given back to its own.
            queues = ["celery", SECOND_QUEUE] if scenario.endswith("two-queues") else ["celery"]
            for index in range(40):
                sleep_task.apply_async((3, report, index), queue=queues[index % len(queues)])
            save(scenario, count=40)
            wait_until_held(client, queues)
        elif scenario == "worker-cpu-bound":
            for index in range(20):
                noop_task.apply_async((report, index), countdown=SPIN_COUNTDOWN)
            wait_until_held(client, ["celery"])
            spin_task.apply_async((SPIN_SECONDS, report, 20))
            save(scenario, count=21)
        elif scenario in ("redis-paused", "sentinel-held"):
            for index in range(20):
                noop_task.apply_async((report, index), countdown=PAUSED_COUNTDOWN)
            save(scenario, count=20)
            wait_until_held(client, ["celery"])
        return
    result = load(scenario)
    count, started = result["count"], float(fault_at or result["sent_at"])
    poison_id = result.get("poison_id")
    deadline = time.monotonic() + TASK_TIMEOUT

    def ran() -> Counter[int]:
        return Counter(int(float(entry.split()[0])) for entry in runs_client.lrange(report, 0, -1))

    def poison_set_aside() -> bool:
        return poison_id is None or any(letter.task_id == poison_id for letter in dead_letter_list(limit=1000))

    done_at = None
    while time.monotonic() < deadline:
        if len(ran()) == count and poison_set_aside():
            done_at = time.time()
            break
        time.sleep(0.5)
    time.sleep(SETTLE_SECONDS)
    runs = ran()
    problems = owner_problems()
    if poison_id:
        poison_runs = runs_client.llen(f"{report}-poison")
        if not poison_set_aside():
            problems.append(f"the poison message was not set aside ({poison_runs} runs)")
        elif poison_runs != 3:
            problems.append(f"the poison ran {poison_runs} times, not delivery_limit (3)")
        dead_letter_drop(task_id=poison_id)
    if scenario not in ("poison", "malformed") and client.llen("unacked_dead_letters") != result["dead_letters_before"]:
        problems.append("messages were set aside as dead letters")
    if scenario == "malformed":
        added = client.llen("unacked_dead_letters") - result["dead_letters_before"]
        new = client.lrange("unacked_dead_letters", 0, max(added, 0) - 1)
        raws = sorted(json.loads(entry).get("raw", "") for entry in new)
        if raws != sorted(['{"properties": {"no": "delivery tag"}}', "not json"]):
            problems.append(f"the two malformed messages are not what the dead letters gained: {raws}")
        for entry in new:
            client.lrem("unacked_dead_letters", 1, entry)
    save(
        scenario,
        ran=len(runs),
        lost=count - len(runs),
        reruns=sum(times - 1 for times in runs.values()),
        recovered_s=round(done_at - started, 1) if done_at else None,
        task_problems=problems,
    )
    runs_client.delete(report, f"{report}-poison")


def task_report(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    columns = ("tasks", 9), ("ran", 9), ("lost", 6), ("rerun", 7)
    print()
    print(f"{'task scenario':<28}" + "".join(f"{title:>{width}}" for title, width in columns) + f"{'done s':>11}")
    problems = []
    for row in rows:
        name, recovered = row["scenario"], row.get("recovered_s")
        print(
            f"{name:<28}{row.get('count', 0):>9}{row.get('ran', 0):>9}{row.get('lost', 0):>6}{row.get('reruns', 0):>7}"
            f"{(f'{recovered:.1f}' if recovered is not None else '-'):>11}"
        )
        if row.get("lost") or "ran" not in row:
            problems.append(f"{name}: {row.get('lost', '?')} tasks never ran")
        if row.get("reruns"):
            problems.append(f"{name}: {row['reruns']} tasks ran a second time")
        problems += [f"{name}: {problem}" for problem in row.get("task_problems", [])]
    return problems


def report() -> None:
    every = [json.loads(path.read_text()) for path in sorted(RESULTS.glob("*.json"), key=lambda p: p.stat().st_mtime)]
    rows = [row for row in every if "tasks" not in row]
    columns = ("accepted", 9), ("written", 9), ("lost", 6), ("dup", 5), ("rerun", 7), ("refused", 9), ("500/hang", 10)
    if rows:
        print(f"{'scenario':<28}" + "".join(f"{title:>{width}}" for title, width in columns) + f"{'recover s':>11}")
    problems = []
    for row in rows:
        name = row["scenario"]
        failed = sum(row.get("failed", {}).values())
        times = [row.get(key) for key in ("rows_recovered_s", "beat_recovered_s", "healthy_s")]
        recover = max((t for t in times if t is not None), default=None)
        print(
            f"{name:<28}{len(row.get('accepted', [])):>9}{row.get('written', 0):>9}{row.get('lost', 0):>6}"
            f"{row.get('duplicated', 0):>5}{row.get('reruns', 0):>7}{row.get('refused', 0):>9}{failed:>10}"
            f"{(f'{recover:.1f}' if recover is not None else '-'):>11}"
        )
        if row.get("lost"):
            problems.append(f"{name}: {row['lost']} accepted requests never written")
        if row.get("duplicated"):
            problems.append(f"{name}: {row['duplicated']} effects duplicated")
        if row.get("reruns") and not name.startswith(RERUN_ALLOWED):
            problems.append(f"{name}: {row['reruns']} tasks ran a second time")
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
    problems += task_report([row for row in every if "tasks" in row])
    for problem in problems:
        print(f"FAIL {problem}")
    if problems:
        sys.exit(1)
    print(
        "chaos: every accepted request written exactly once; every refusal a 503 with Retry-After; every task "
        "ran once, but for a poison message set aside"
    )


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "burst":
        burst(arguments[0])
    elif command == "unavailable":
        unavailable(arguments[0], arguments[1])
    elif command == "verify":
        verify(arguments[0], float(arguments[1]), arguments[2], check_beat="beat" in arguments[3:])
    elif command == "tasks":
        tasks(arguments[0], arguments[1], *arguments[2:3])
    elif command == "report":
        report()
    else:
        sys.exit(__doc__)
