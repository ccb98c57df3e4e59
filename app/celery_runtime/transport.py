"""kombu's Redis transport, with a message taken off the queue and recorded as unacknowledged in one step.

kombu's consumer takes a message with BRPOP, which removes it from the queue, and only then, in a second
command, records it in the `unacked` hash that redelivers it if the worker dies. A worker killed between the two
(SIGKILL, the OOM killer, a lost node), or Redis stopping between them, loses the message: `make chaos` saw one
in two SIGKILLs of a busy gevent worker lose a task, since the second command waits for the gevent hub.

This transport takes and records in one Lua script, which Redis runs atomically; with a backlog, several
messages at once, as many as the prefetch limit has room for (up to TAKE_AT_MOST). A script cannot block, so on
an empty queue the consumer waits with `BLMOVE key key RIGHT RIGHT` instead of BRPOP: it returns once the list
has an element and leaves it where it was, and the next script takes it. Publishing, the visibility timeout
and kombu's restore of unacknowledged messages are kombu's own, unchanged; an ack that cannot reach Redis is
still forgotten locally (QoS below).

Acks reach Redis in one script too, for all that ended within 5 ms: kombu's opens a new Redis client for every
ack and sends a MULTI/EXEC pipeline of four commands (250 microseconds of the worker's CPU per ack here, against
130 for one script per ack). With a round trip per ack, Redis's share of a no-op task was the largest after the
worker's own, and several worker processes on a machine's cores left Redis too little of them (`make bench`).

Selected by CELERY_BROKER_TRANSPORT in the settings, for redis:// URLs (Redis 6.2 or later: BLMOVE, RPOP's count).
"""

from __future__ import annotations

import logging
import threading
from queue import Empty
from time import monotonic, time
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

# KEYS: the queue lists in the order to take from, then the unacked hash and the unacked index.
# ARGV[1]: the time of delivery, the index's score (the visibility timeout counts from it). ARGV[2]: how many
# messages to take at most, all from the first queue that has any.
# Each message is stored as kombu's restore reads it, [message, exchange, routing_key], around its text as it
# was published: decoding and encoding it again in Lua would round large integers in the arguments.
TAKE_AND_RECORD = """
local unacked, index = KEYS[#KEYS - 1], KEYS[#KEYS]
for i = 1, #KEYS - 2 do
  local items = redis.call('RPOP', KEYS[i], ARGV[2])
  if items then
    for _, item in ipairs(items) do
      local properties = cjson.decode(item)['properties']
      local info, tag = properties['delivery_info'], properties['delivery_tag']
      redis.call('ZADD', index, ARGV[1], tag)
      redis.call('HSET', unacked, tag,
        '[' .. item .. ',' .. cjson.encode(info['exchange']) .. ',' .. cjson.encode(info['routing_key']) .. ']')
    end
    return {KEYS[i], items}
  end
end
return false
"""
# At most this many messages per take, within what the prefetch limit leaves: with a backlog, one round trip
# to Redis brings several, where one each made Redis's share of a no-op task the largest after the worker's own.
TAKE_AT_MOST = 16

# KEYS: the unacked index, the unacked hash. ARGV: the delivery tags. What kombu's ack does, for many in one command.
FORGET = """
redis.call('ZREM', KEYS[1], unpack(ARGV))
return redis.call('HDEL', KEYS[2], unpack(ARGV))
"""
# Acks reach Redis in batches: at most this long after the task ended, or at once when this many are waiting.
# A worker killed in between has its last acks' messages handed out again after the visibility timeout: a second
# run of a task that had finished (tasks are idempotent, as acks late requires anyway), never a loss.
FORGET_DELAY_SECONDS = 0.005
FORGET_BATCH = 64


logger = logging.getLogger(__name__)

# kombu's type stubs leave out the Redis channel's internals used here.
RedisChannel: Any = kombu_redis.Channel
RedisQoS: Any = kombu_redis.QoS
RedisTransport: Any = kombu_redis.Transport
virtual_QoS: Any = virtual.QoS


class QoS(RedisQoS):
    """Records nothing the take script has recorded, tells Redis of acks in batches (FORGET_DELAY_SECONDS,
    FORGET_BATCH, and whatever is left when the channel closes), and forgets an acknowledged message locally
    even when Redis could not be told.

    kombu counts a message against the prefetch limit until its ack reaches Redis. With Redis away, every task
    that finishes fails its ack; once the count reaches the limit the consumer stops reading, so it never sees
    the broken connection and never reconnects: the worker idles for good after Redis returns (`make chaos`,
    redis-down, saw it). The message itself stays in Redis's unacked hash, and the sweep hands it out again after
    the visibility timeout: a second run, never a loss."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded_by_take: set[str] = set()
        self._forget: Any = None  # the FORGET script, on a client of the channel's connection pool
        self._to_forget: list[str] = []
        self._forget_due = False
        # Acks come from the consumer, batches leave from a timer: a thread of its own under prefork.
        self._to_forget_lock = threading.Lock()

    def _forget_in_redis(self, delivery_tag: str) -> None:
        with self._to_forget_lock:
            self._to_forget.append(delivery_tag)
            full = len(self._to_forget) >= FORGET_BATCH
            start_timer = not full and not self._forget_due
            self._forget_due = self._forget_due or start_timer
        if full:
            self.forget_acknowledged()
        elif start_timer:
            timer = threading.Timer(FORGET_DELAY_SECONDS, self._forget_acknowledged_logged)
            timer.daemon = True
            timer.start()

    def forget_acknowledged(self) -> None:
        """Removes the acknowledged messages from Redis's unacked records, in one command."""
        with self._to_forget_lock:
            tags, self._to_forget, self._forget_due = self._to_forget, [], False
        if not tags:
            return
        pool = self.channel.pool
        if self._forget is None or self._forget.registered_client.connection_pool is not pool:
            self._forget = self.channel.Client(connection_pool=pool).register_script(FORGET)
        self._forget(keys=[self.unacked_index_key, self.unacked_key], args=tags)

    def _forget_acknowledged_logged(self) -> None:
        waiting = len(self._to_forget)
        try:
            self.forget_acknowledged()
        except Exception as exc:  # noqa: BLE001 - a timer's thread has no caller to raise to
            logger.warning(
                "could not remove %d acknowledged message(s) from Redis's unacked records (%s); "
                "the sweep hands them out again after the visibility timeout",
                waiting,
                exc,
            )

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded_by_take:
            # The take script recorded it in Redis already; kombu would write the same record a second time.
            self.recorded_by_take.discard(delivery_tag)
            virtual_QoS.append(self, message, delivery_tag)
        else:  # taken some other way (kombu's own BRPOP, basic_get): recorded here, as kombu does
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if self.channel.global_keyprefix:  # keys would need the prefix inside the script: kombu's own way
            try:
                super().ack(delivery_tag)
            except BaseException:
                self._quick_ack(delivery_tag)
                raise
            return
        virtual_QoS.ack(self, delivery_tag)  # here first: the prefetch room frees whatever Redis does
        self._forget_in_redis(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except BaseException:
            self._quick_ack(delivery_tag)
            raise


class Channel(RedisChannel):
    QoS = QoS
    # The last take found every queue empty: the next command waits for a message instead of taking one.
    _queues_were_empty = False
    _sent: str | None = None

    _undelivered: list[dict[str, Any]]  # taken by the last take, not yet handed to the consumer

    def close(self) -> None:
        # Before kombu's close, which restores what is still delivered and drops the clients.
        if self._qos is not None:
            try:
                self.qos.forget_acknowledged()
            except Exception as exc:  # noqa: BLE001 - closing goes on: those messages run again later
                logger.warning("could not remove acknowledged messages from Redis at close: %s", exc)
            self._requeue_undelivered()
        super().close()

    def _brpop_start(self, timeout: float | None = None) -> None:
        if self.global_keyprefix:  # keys would need the prefix inside the script too: kombu's own way
            return super()._brpop_start(timeout)
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        keys = [self._q_for_pri(queue, priority) for priority in self.priority_steps for queue in queues]
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        if self._queues_were_empty:
            # Any message wakes it within `timeout` (the first key at once, the others at the next take).
            self._sent = "BLMOVE"
            self.client.connection.send_command("BLMOVE", keys[0], keys[0], "RIGHT", "RIGHT", timeout or 0)
        else:
            self._sent = "EVAL"
            # The prefetch limit's room (None: no limit); at least one, since kombu polls only when there is room.
            room = self.qos.can_consume_max_estimate()
            count = max(1, min(TAKE_AT_MOST, room if room is not None else TAKE_AT_MOST))
            self.client.connection.send_command(
                "EVAL", TAKE_AND_RECORD, len(keys) + 2, *keys, self.unacked_key, self.unacked_index_key, time(), count
            )
        return None

    def _brpop_read(self, **options: Any) -> bool:
        if self.global_keyprefix:
            return bool(super()._brpop_read(**options))
        sent, self._sent = self._sent, None
        try:
            try:
                reply = self.client.parse_response(self.client.connection, sent, **options)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                raise
            if sent == "BLMOVE":
                self._queues_were_empty = False  # a message arrived, or the wait timed out: take next
                raise Empty()
            if not reply:
                self._queues_were_empty = True
                raise Empty()
            key, items = reply
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        messages = [loads(bytes_to_str(item)) for item in items]
        for message in messages:
            self.qos.recorded_by_take.add(message["properties"]["delivery_tag"])
        # Delivering one can wait (the gevent pool's consumer waits for a free greenlet). Meanwhile a cancel
        # (a soft shutdown's, say) waits for this read to end, kombu's guard against delivering after it: the
        # rest of the take goes back to the queue then, and so does what a close finds still undelivered.
        self._undelivered = messages
        while self._undelivered:
            if self.connection.cycle.after_read:
                self._requeue_undelivered()
                break
            self.connection._deliver(self._undelivered.pop(0), queue)
        return True

    def _requeue_undelivered(self) -> None:
        undelivered, self._undelivered = getattr(self, "_undelivered", []), []
        for message in undelivered:
            try:
                self.qos.restore_by_tag(message["properties"]["delivery_tag"], leftmost=True)
            except Exception as exc:  # noqa: BLE001 - the sweep hands it out after the visibility timeout
                logger.warning("could not put a message taken but not delivered back in the queue: %s", exc)


class Transport(RedisTransport):
    Channel = Channel
