"""make bench-fleet: what an idle fleet costs Redis, with the real transport code, against stock kombu's.

N consumers (FLEET_CONSUMERS, default 1,000) wait on one queue, each a kombu connection and consumer of its own as a
worker process has (no Celery around them: what Redis sees of a fleet is its consumers' commands), 250 to a gevent
process, against a Redis of its own (bench-redis: nothing else talks to it). Then, for each transport in turn:
* idle: Redis's CPU per second while every consumer waits;
* steady: one message every 20 ms (50/s) for FLEET_SECONDS, each taken and acknowledged by whichever consumer wakes;
  Redis's CPU per message (its used_cpu_sys + used_cpu_user, less the idle cost over the same time) and how many
  consumers each message woke (commands Redis served per message);
* publish: FLEET_BURST messages sent as fast as one client can, one LPUSH round trip each while the fleet waits:
  the publish rate.
Stock kombu waits with BRPOP, which pops the message for one waiter: the bar for one wake per message.
"""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["consume"]:  # a process of consumers: on gevent, as a worker process is
    from gevent import monkey

    monkey.patch_all()

import os
import subprocess
import time
from typing import Any

import redis
from kombu import Connection, Consumer, Producer, Queue

URL = os.environ.get("FLEET_REDIS_URL", "redis://bench-redis:6379/0")
CONSUMERS = int(os.environ.get("FLEET_CONSUMERS", "1000"))
SECONDS = float(os.environ.get("FLEET_SECONDS", "10"))
BURST = int(os.environ.get("FLEET_BURST", "5000"))
RATE = 50.0  # messages per second in the steady phase
QUEUE = "fleet"
TRANSPORTS = {
    "template (celery_runtime.transport)": "celery_runtime.transport:Transport",
    "stock kombu (BRPOP)": "redis",
}


def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def commands(client: redis.Redis) -> int:
    return int(client.info("stats")["total_commands_processed"])


PER_PROCESS = 250  # consumers per process: kombu's poller under gevent is select(), which stops at fd 1024


def consume(transport: str, count: int) -> None:
    """A child process: `count` consumers that wait, take, and acknowledge at once, until killed."""
    import gevent

    def on_message(body: Any, message: Any) -> None:
        message.ack()

    started = []

    def run(connection: Any) -> None:
        consumer = Consumer(connection, [Queue(QUEUE)], callbacks=[on_message], accept=["json"], prefetch_count=1)
        consumer.consume()
        started.append(connection)
        while True:
            try:
                connection.drain_events(timeout=2)
            except TimeoutError:
                continue

    greenlets = []
    for _ in range(count):
        connection = Connection(URL, transport=transport, transport_options={"max_connections": 4})
        greenlets.append(gevent.spawn(run, connection))
        gevent.sleep(0)
    while len(started) < count:  # every consumer connected and consuming
        gevent.sleep(0.1)
    print("ready", flush=True)
    gevent.joinall(greenlets, raise_error=True)


def start_fleet(transport: str) -> list[subprocess.Popen[str]]:
    children = []
    for first in range(0, CONSUMERS, PER_PROCESS):
        count = min(PER_PROCESS, CONSUMERS - first)
        command = [sys.executable, __file__, "consume", transport, str(count)]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True))
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise SystemExit(f"a consumer process of {transport} did not start")
    return children


def drained(admin: redis.Redis, deadline: float) -> bool:
    """Every message taken and its ack in Redis (both transports record what is unacknowledged in `unacked`)."""
    while time.monotonic() < deadline:
        if not admin.llen(QUEUE) and not admin.hlen("unacked"):
            return True
        time.sleep(0.05)
    return False


def measure(transport: str, admin: redis.Redis) -> dict[str, float]:
    admin.flushdb()
    children = start_fleet(transport)
    try:
        time.sleep(5)  # every consumer waiting
        cpu, count, at = redis_cpu(admin), commands(admin), time.monotonic()
        time.sleep(SECONDS)
        idle_per_second = (redis_cpu(admin) - cpu) / (time.monotonic() - at)
        idle_commands = (commands(admin) - count) / (time.monotonic() - at)

        with Connection(URL, transport=transport) as connection:
            producer = Producer(connection)
            sent = int(SECONDS * RATE)
            cpu, count, at = redis_cpu(admin), commands(admin), time.monotonic()
            for index in range(sent):
                producer.publish({"n": index}, routing_key=QUEUE, declare=[Queue(QUEUE)], serializer="json")
                time.sleep(max(0.0, at + (index + 1) / RATE - time.monotonic()))
            all_handled = drained(admin, time.monotonic() + 30)
            elapsed = time.monotonic() - at
            steady_cpu = (redis_cpu(admin) - cpu - idle_per_second * elapsed) / sent
            steady_commands = (commands(admin) - count - idle_commands * elapsed) / sent

            at = time.monotonic()
            for index in range(BURST):
                producer.publish({"n": index}, routing_key=QUEUE, declare=[Queue(QUEUE)], serializer="json")
            publish_rate = BURST / (time.monotonic() - at)
    finally:
        for child in children:
            child.kill()
            child.wait()
    return {
        "idle_cpu_ms_per_s": idle_per_second * 1000,
        "cpu_ms_per_message": steady_cpu * 1000,
        "commands_per_message": steady_commands,
        "all_handled": all_handled,
        "publish_per_s": publish_rate,
    }


def main() -> None:
    if sys.argv[1:2] == ["consume"]:
        consume(sys.argv[2], int(sys.argv[3]))
        return
    admin = redis.Redis.from_url(URL)
    results = {}
    # FLEET_COMPARE=module:Transport adds another transport, measured beside these (a change's before, say).
    transports = dict(TRANSPORTS)
    if os.environ.get("FLEET_COMPARE"):
        transports[os.environ["FLEET_COMPARE"]] = os.environ["FLEET_COMPARE"]
    for name, transport in transports.items():
        print(f"fleet: {CONSUMERS} consumers on {name} ...", flush=True)
        results[name] = measure(transport, admin)
    print()
    print(
        f"{CONSUMERS} idle consumers on one queue, one Redis; {RATE:.0f} messages/s for {SECONDS:.0f} s, then {BURST}"
    )
    print(f"{'transport':<38}{'idle CPU ms/s':>15}{'CPU ms/msg':>12}{'cmds/msg':>10}{'all acked':>11}{'publish/s':>11}")
    for name, row in results.items():
        print(
            f"{name:<38}{row['idle_cpu_ms_per_s']:>15.1f}{row['cpu_ms_per_message']:>12.3f}"
            f"{row['commands_per_message']:>10.1f}{'yes' if row['all_handled'] else 'NO':>11}"
            f"{row['publish_per_s']:>11.0f}"
        )
    template, stock = list(results.values())[:2]
    print(
        f"template / stock kombu, CPU per message: {template['cpu_ms_per_message'] / stock['cpu_ms_per_message']:.2f}"
    )
    print(f"template / stock kombu, publish rate: {template['publish_per_s'] / stock['publish_per_s']:.2f}")


if __name__ == "__main__":
    main()
