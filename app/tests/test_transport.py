"""The ownership transport's scripts and channel against a real Redis, with no worker: kombu consumers on channels of
celery_runtime.transport, in a Redis database of these tests' own (emptied before each). Liveness and stalls are
set up by writing Redis's clock into the owners' entries, so nothing here waits for time to pass."""

import contextlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from kombu import Connection, Consumer, Message, Producer, Queue

from celery_runtime.transport import Channel, NotReplicated, SentinelChannel, SentinelTransport, Transport

QUEUE = "transport-test"
LIVENESS = 10.0


@pytest.fixture
def url() -> str:
    return settings.CELERY_BROKER_URL.rsplit("/", 1)[0] + "/11"


@pytest.fixture
def broker(url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(url, decode_responses=True)
    client.flushdb()
    yield client
    client.flushdb()


def now(broker: redis.Redis) -> float:
    seconds, microseconds = broker.time()
    return seconds + microseconds / 1_000_000


class Worker:
    """One consumer channel on a connection of its own, as a worker process has; what it received is kept unacked."""

    def __init__(
        self, url: str, *, prefetch: int = 10, no_ack: bool = False, options: dict[str, Any] | None = None
    ) -> None:
        self.connection = Connection(
            url, transport=Transport, transport_options={"worker_liveness_timeout": LIVENESS, **(options or {})}
        )
        self.received: list[Message] = []
        self.consumer = Consumer(
            self.connection,
            [Queue(QUEUE)],
            callbacks=[self._on_message],
            accept=["json"],
            prefetch_count=prefetch,
            no_ack=no_ack,
        )
        self.consumer.consume()

    @property
    def channel(self) -> Channel:
        return self.consumer.channel  # type: ignore[return-value]

    def _on_message(self, body: Any, message: Message) -> None:
        self.received.append(message)

    def drain(self, *, until: int, rounds: int = 20) -> list[Any]:
        """Reads until `until` messages in all have arrived, or `rounds` reads found none."""
        for _ in range(rounds):
            if len(self.received) >= until:
                break
            with contextlib.suppress(TimeoutError):
                self.connection.drain_events(timeout=0.2)
        return [message.payload for message in self.received]

    def close(self) -> None:
        self.connection.release()


@pytest.fixture
def workers(url: str, broker: redis.Redis) -> Iterator[list[Worker]]:
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.close()


def publish(url: str, *bodies: Any, headers: dict[str, Any] | None = None) -> None:
    with Connection(url, transport=Transport) as connection:
        producer = Producer(connection)
        for body in bodies:
            producer.publish(body, routing_key=QUEUE, declare=[Queue(QUEUE)], serializer="json", headers=headers)


def last_beat(broker: redis.Redis, owner: str) -> float:
    score = broker.zscore(Channel.unacked_owners_key, owner)
    assert score is not None, f"{owner} is not among the owners"
    return float(score)


def silence(broker: redis.Redis, owner: str, *, seconds: float) -> None:
    """As though `owner` last beat `seconds` ago, while Redis served everyone else (the clock fresh)."""
    current = now(broker)
    broker.zadd(Channel.unacked_owners_key, {owner: current - seconds})
    broker.set(Channel.clock_key, f"{current:.6f}")


def test_a_silent_owners_messages_come_back_marked_redelivered(url: str, broker: redis.Redis, workers: list) -> None:
    publish(url, {"n": 1}, {"n": 2})
    dead, sweeper = Worker(url), Worker(url)
    workers += [dead, sweeper]
    assert sorted(body["n"] for body in dead.drain(until=2)) == [1, 2]
    assert [message.delivery_info.get("redelivered") for message in dead.received] == [None, None]
    silence(broker, dead.channel.owner, seconds=LIVENESS + 1)

    assert sweeper.channel.qos.restore_dead_owners() == 2
    assert broker.llen(QUEUE) == 2
    assert sorted(body["n"] for body in sweeper.drain(until=2)) == [1, 2]
    assert [message.delivery_info["redelivered"] for message in sweeper.received] == [True, True]
    headers: list[dict[str, Any]] = [dict(message.headers) for message in sweeper.received]
    assert [header["redelivered"] for header in headers] == [True, True]


def test_a_message_given_back_by_a_reject_arrives_redelivered(url: str, broker: redis.Redis, workers: list) -> None:
    publish(url, {"n": 1})
    worker = Worker(url)
    workers.append(worker)
    worker.drain(until=1)
    worker.received[0].reject(requeue=True)
    worker.received.clear()
    worker.drain(until=1)
    assert worker.received[0].delivery_info["redelivered"] is True
    worker.received[0].ack()
    worker.channel.qos.forget_acknowledged()
    assert broker.hlen(Channel.unacked_deaths_key) == 0, "the mark outlived the message"


def test_a_stall_that_silenced_every_owner_is_no_ones_death(url: str, broker: redis.Redis, workers: list) -> None:
    """Redis paused (or a fork, an fsync stall, a failover) for longer than the liveness: when it answers again,
    every owner's last beat is old, and the first sweep must not take them for dead."""
    publish(url, {"n": 1}, {"n": 2})
    holder, sweeper = Worker(url, prefetch=1), Worker(url, prefetch=1)
    workers += [holder, sweeper]
    holder.drain(until=1)
    sweeper.drain(until=1)
    stalled_at = now(broker) - 3 * LIVENESS  # the last beats and sweeps before Redis stopped answering
    broker.zadd(Channel.unacked_owners_key, {holder.channel.owner: stalled_at, sweeper.channel.owner: stalled_at - 1})
    broker.set(Channel.clock_key, f"{stalled_at:.6f}")

    assert sweeper.channel.qos.restore_dead_owners() == 0
    assert broker.llen(QUEUE) == 0
    assert broker.zcard(Channel.unacked_owners_key) == 2
    scores = [last_beat(broker, owner) for owner in (holder.channel.owner, sweeper.channel.owner)]
    assert all(score > now(broker) - 2 for score in scores), "the stall still counts toward their silence"

    # Once Redis serves again, silence counts: an owner that does not beat is taken for dead after the liveness.
    silence(broker, holder.channel.owner, seconds=LIVENESS + 1)
    assert sweeper.channel.qos.restore_dead_owners() == 1


def test_a_stall_found_by_a_heartbeat_is_no_ones_death_either(url: str, broker: redis.Redis, workers: list) -> None:
    publish(url, {"n": 1})
    holder, beating = Worker(url), Worker(url)
    workers += [holder, beating]
    holder.drain(until=1)
    stalled_at = now(broker) - 3 * LIVENESS
    broker.zadd(Channel.unacked_owners_key, {holder.channel.owner: stalled_at})
    broker.set(Channel.clock_key, f"{stalled_at:.6f}")

    client = redis.Redis.from_url(url)
    assert beating.channel.qos.heartbeat(client) is True  # the first to reach Redis after the stall: a beat
    assert beating.channel.qos.restore_dead_owners() == 0
    assert last_beat(broker, holder.channel.owner) > now(broker) - 2


def test_a_dead_owners_messages_still_come_back_when_the_clock_has_been_silent(
    url: str, broker: redis.Redis, workers: list
) -> None:
    """An owner silent long before a stall is dead all the same: the stall moves its last beat on by the stall only."""
    publish(url, {"n": 1})
    dead, sweeper = Worker(url), Worker(url)
    workers += [dead, sweeper]
    dead.drain(until=1)
    current = now(broker)
    stall = 3 * LIVENESS
    broker.zadd(Channel.unacked_owners_key, {dead.channel.owner: current - stall - 2 * LIVENESS})
    broker.set(Channel.clock_key, f"{current - stall:.6f}")
    assert sweeper.channel.qos.restore_dead_owners() == 1


def set_suspect(broker: redis.Redis, tag: str) -> None:
    broker.hset(Channel.unacked_deaths_key, tag, Channel.delivery_limit - 1)


def tags_in_queue(broker: redis.Redis) -> list[str]:
    return [json.loads(item)["properties"]["delivery_tag"] for item in broker.lrange(QUEUE, 0, -1)]


def test_a_suspect_stands_in_no_ones_way(url: str, broker: redis.Redis, workers: list) -> None:
    """A message one death from the limit at the head of the queue: a channel that holds something takes the
    messages behind it, and the suspect waits aside until a channel holding nothing takes it alone."""
    publish(url, {"n": 0})
    busy = Worker(url)
    workers.append(busy)
    busy.drain(until=1)  # holds one
    publish(url, *({"n": n} for n in range(1, 6)))
    suspect_tag = tags_in_queue(broker)[-1]  # the head: taken first
    set_suspect(broker, suspect_tag)

    bodies = busy.drain(until=6)
    assert sorted(body["n"] for body in bodies) == [0, 2, 3, 4, 5], "the suspect stood in the way, or was taken"
    assert broker.hkeys(Channel.suspects_key) == [suspect_tag]

    idle = Worker(url)
    workers.append(idle)
    assert [body["n"] for body in idle.drain(until=1)] == [1]
    assert idle.received[0].delivery_info["redelivered"] is True
    assert broker.hlen(Channel.suspects_key) == 0
    assert idle.channel.qos.suspects == {suspect_tag}


def test_a_suspect_claimed_by_a_busy_channel_is_taken_once_it_holds_nothing(
    url: str, broker: redis.Redis, workers: list
) -> None:
    publish(url, {"n": 0})
    busy = Worker(url)
    workers.append(busy)
    busy.drain(until=1)
    publish(url, {"n": 1}, {"n": 2})
    set_suspect(broker, tags_in_queue(broker)[-1])
    assert sorted(body["n"] for body in busy.drain(until=2)) == [0, 2]
    busy.drain(until=3, rounds=3)  # claims the suspect, and takes nothing more while it holds something
    assert len(busy.received) == 2
    (entry,) = broker.hvals(Channel.suspects_key)
    assert json.loads(entry)["c"] == busy.channel.owner
    for message in busy.received:
        message.ack()
    assert [body["n"] for body in busy.drain(until=3)][2:] == [1]
    assert busy.received[2].delivery_info["redelivered"] is True


def test_held_countdown_tasks_do_not_keep_a_suspect_waiting(url: str, broker: redis.Redis, workers: list) -> None:
    publish(url, {"n": 0}, headers={"eta": "2999-01-01T00:00:00+00:00"})
    holder = Worker(url)
    workers.append(holder)
    holder.drain(until=1)
    assert holder.channel.qos.waiting_for_eta
    publish(url, {"n": 1})
    set_suspect(broker, tags_in_queue(broker)[-1])
    assert [body["n"] for body in holder.drain(until=2)] == [0, 1]
    assert broker.hlen(Channel.suspects_key) == 0


def break_give_backs(monkeypatch: pytest.MonkeyPatch, channel: Channel) -> None:
    """Every give-back of this channel meets a broken connection, as with Redis restarting."""

    def broken(*args: Any, **kwargs: Any) -> int:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(channel.qos, "_give_back", broken)


def test_a_requeue_that_meets_a_broken_connection_is_given_back_later_with_no_death(
    url: str, broker: redis.Redis, workers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The requeue fails: the message stays recorded as this live owner's, which beats on. Left so, it came back only
    when the channel closed and the sweep found it silent, with a death counted though it ended in none."""
    publish(url, {"n": 1})
    worker = Worker(url)
    workers.append(worker)
    worker.drain(until=1)
    break_give_backs(monkeypatch, worker.channel)
    with pytest.raises(redis.ConnectionError):
        worker.received[0].reject(requeue=True)
    assert broker.llen(QUEUE) == 0
    monkeypatch.undo()

    assert worker.channel.qos.retry_give_backs() == 1
    assert broker.llen(QUEUE) == 1
    (tag,) = tags_in_queue(broker)
    assert broker.hget(Channel.unacked_deaths_key, tag) == "0", "a death was counted"
    assert worker.channel.qos.retry_give_backs() == 0


def take_with_the_reply_lost(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A take that Redis runs and whose reply the connection loses: its messages are this owner's, never delivered."""
    client = worker.channel.client

    def lost(*args: Any, **kwargs: Any) -> Any:
        raise redis.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(client, "parse_response", lost)
    with pytest.raises(redis.ConnectionError):
        worker.connection.drain_events(timeout=2)
    monkeypatch.undo()
    assert worker.received == []


def test_a_take_whose_reply_was_lost_is_given_back_at_close_with_no_death(
    url: str, broker: redis.Redis, workers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Left to the sweep, the messages came back once the closed owner was silent for the liveness, each with a death
    counted though it was never delivered."""
    publish(url, {"n": 1}, {"n": 2})
    worker = Worker(url)
    owner = worker.channel.owner
    take_with_the_reply_lost(worker, monkeypatch)
    assert broker.hlen(worker.channel.owned_key) == 2
    assert broker.llen(QUEUE) == 0
    worker.close()

    assert broker.llen(QUEUE) == 2
    assert all(broker.hget(Channel.unacked_deaths_key, tag) == "0" for tag in tags_in_queue(broker))
    assert broker.zscore(Channel.unacked_owners_key, owner) is None
    assert broker.exists(Channel.owned_key_prefix + owner) == 0


def test_a_closed_owner_that_could_not_leave_is_released_by_the_live_channel(
    url: str, broker: redis.Redis, workers: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(url, {"n": 1}, {"n": 2})
    closing, live = Worker(url), Worker(url)
    workers.append(live)
    take_with_the_reply_lost(closing, monkeypatch)

    def broken(*args: Any, **kwargs: Any) -> int:
        raise redis.ConnectionError("Redis went away")

    monkeypatch.setattr(closing.channel.qos, "_release", broken)
    closing.close()
    assert broker.llen(QUEUE) == 0
    monkeypatch.undo()

    assert live.channel.qos.retry_give_backs() == 2
    assert broker.llen(QUEUE) == 2
    assert all(broker.hget(Channel.unacked_deaths_key, tag) == "0" for tag in tags_in_queue(broker))
    assert live.channel.qos.retry_give_backs() == 0


def test_one_message_wakes_one_waiting_channel(url: str, broker: redis.Redis, workers: list) -> None:
    """Idle channels of one queue: a message wakes one of them, not all (each woken one would take nothing, and with
    a fleet waiting every message cost Redis a command per waiter: docs/performance.md, make bench-fleet)."""
    waiting = [Worker(url) for _ in range(3)]
    workers += waiting
    for worker in waiting:
        worker.drain(until=1, rounds=1)  # an empty take: the channel waits next
        if worker.channel._in_poll is None:
            worker.channel._brpop_start()
        assert worker.channel._sent != "EVAL", "the channel did not wait"
    publish(url, {"n": 1})
    time.sleep(0.3)  # well within the wait's 1 s timeout
    woken = [worker for worker in waiting if worker.channel.client.connection.can_read(timeout=0)]
    assert len(woken) == 1, f"{len(woken)} of 3 waiting channels woke for one message"


def test_the_bell_of_a_queue_read_without_acknowledgement_does_not_grow(
    url: str, broker: redis.Redis, workers: list
) -> None:
    """Gossip's event queues are read without acknowledgement, and nothing waits on their bells: found empty, a
    queue's bell is silenced all the same, or it grew by one with every event of every worker."""
    reader = Worker(url, no_ack=True)
    workers.append(reader)
    publish(url, *({"n": n} for n in range(5)))
    assert broker.llen(Channel.bell_key_prefix + QUEUE) == 5
    reader.drain(until=5)
    reader.drain(until=6, rounds=3)  # a take that finds the queue empty
    assert broker.exists(Channel.bell_key_prefix + QUEUE) == 0


def test_a_late_ack_from_an_owner_taken_for_dead_leaves_the_next_owners_record(
    url: str, broker: redis.Redis, workers: list
) -> None:
    """The sweep gave a silent owner's message to another worker, and the first one's task ends after all: its ack
    must not remove the record the next owner holds the message by, or that owner's death would lose it."""
    publish(url, {"n": 1})
    first, second = Worker(url), Worker(url)
    workers += [first, second]
    first.drain(until=1)
    silence(broker, first.channel.owner, seconds=LIVENESS + 1)
    assert second.channel.qos.restore_dead_owners() == 1
    second.drain(until=1)
    (tag,) = broker.hkeys(second.channel.owned_key)
    first.received[0].ack()
    first.channel.qos.forget_acknowledged()
    assert broker.hexists(Channel.unacked_key, tag), "the next owner's record went with the late ack"
    assert broker.hexists(second.channel.owned_key, tag)


def test_a_bell_is_bounded_and_expires(url: str, broker: redis.Redis) -> None:
    publish(url, *({"n": n} for n in range(100)))
    bell = Channel.bell_key_prefix + QUEUE
    assert broker.llen(bell) == 64
    assert 0 < int(broker.pttl(bell)) <= 10_000


# A Redis with no replica: what must reach one (wait_for_replicas, as SentinelChannel asks) does not, in 50 ms.
UNREPLICATED = {"wait_for_replicas": 1, "replica_wait_timeout": 0.05}


def test_a_sentinel_channel_waits_for_a_replica_and_keeps_the_channels_options() -> None:
    assert SentinelChannel.wait_for_replicas == 1
    for option in ("master_name", "worker_liveness_timeout", "delivery_limit", "wait_for_replicas"):
        assert option in SentinelChannel.from_transport_options
    assert len(set(SentinelChannel.from_transport_options)) == len(SentinelChannel.from_transport_options)


def test_the_next_sentinel_that_kombu_switches_to_keeps_this_transport() -> None:
    """After a connection error kombu switches to the next URL, whose scheme names the transport."""
    connection = Connection("sentinel://s1:26379/0;sentinel://s2:26379/0", transport=SentinelTransport)
    connection.maybe_switch_next()
    assert connection.hostname == "s2"
    assert connection.get_transport_cls() is SentinelTransport


def test_a_publish_that_no_replica_acknowledges_is_refused_and_not_sent_again(url: str, broker: redis.Redis) -> None:
    with Connection(url, transport=Transport, transport_options=UNREPLICATED) as connection:
        producer = Producer(connection)
        with pytest.raises(NotReplicated, match="0 of 1 replica"):
            producer.publish({"n": 1}, routing_key=QUEUE, declare=[Queue(QUEUE)], serializer="json", retry=True)
    # Left in its queue (it may reach a replica yet), once: a publish sent again would run it twice.
    assert broker.llen(QUEUE) == 1


def test_a_take_that_no_replica_acknowledges_is_given_back_not_delivered(
    url: str, broker: redis.Redis, workers: list
) -> None:
    publish(url, {"n": 1}, {"n": 2})
    worker = Worker(url, options=UNREPLICATED)
    workers.append(worker)
    assert worker.drain(until=1, rounds=3) == []
    assert broker.llen(QUEUE) == 2
    assert broker.hlen(worker.channel.owned_key) == 0
    assert all(int(deaths) == 0 for deaths in broker.hvals(Channel.unacked_deaths_key))  # no death counted

    worker.channel.wait_for_replicas = 0  # a replica answers again
    assert sorted(body["n"] for body in worker.drain(until=2)) == [1, 2]


def test_acks_that_no_replica_acknowledges_are_sent_again(url: str, broker: redis.Redis, workers: list) -> None:
    publish(url, {"n": 1})
    worker = Worker(url)
    workers.append(worker)
    worker.drain(until=1)
    tag = worker.received[0].delivery_tag
    worker.channel.wait_for_replicas, worker.channel.replica_wait_timeout = 1, 0.05
    worker.received[0].ack()
    worker.channel.qos.forget_acknowledged()
    assert worker.channel.qos.take_acknowledged() == [tag]
