"""kombu's Redis transport, with every message owned by the live worker process that took it.

kombu's consumer takes a message with BRPOP and records it as unacknowledged in a second command; a worker killed
in between loses it. kombu then hands out again every unacknowledged message older than `visibility_timeout`
(default one hour), alive or not its worker: a countdown task held in a live worker, or a task that runs longer,
ran once per timeout (the counts are in docs/reliability.md); a dead worker's tasks waited an
hour; a task that killed its worker came back for ever; a malformed message made the take fail after its pops,
losing the messages taken with it.

Here, in Lua scripts that Redis runs atomically:
* the take pops messages and records each as unacknowledged and owned by this channel (an owner per worker
  process and connection), with the queue it came from; messages for consumers that do not acknowledge
  (`no_ack`: control replies) are popped and not recorded, as kombu does;
* a live owner beats (`heartbeat`, from a native thread of the worker's: celery_runtime.redelivery) into a sorted
  set, with Redis's clock, so hosts' clocks do not matter;
* the sweep (`restore_dead_owners`, any worker's) gives back the messages of owners silent for
  `worker_liveness_timeout` seconds (default 15), to the head of the queue they came from, marked redelivered as
  kombu marks what it restores. A live worker's messages are never handed out, however long they wait or run.
  Silence counts only while Redis serves: a gap in every beat and sweep longer than half the liveness (Redis
  paused, a fork or fsync stall, a failover) moves every owner's last beat on by the gap (UNSTALL_FUNCTION);
* a channel that closes gives back what it still owns at once, with no death counted (its process lives: a take
  whose reply a broken connection lost, say); with Redis away, its process's live channel does so at its next sweep;
* each give-back by the sweep counts a death for the message; a message whose deliveries ended in
  `delivery_limit` (default 3) deaths goes to the dead-letter list (`dead_letters_key`) instead, logged at ERROR
  with its task and id. A message one death from the limit is suspect: a channel takes it alone, when it holds
  nothing but countdown/eta tasks, so that the messages that shared a worker with a poison one twice do not die
  with it a third time. A suspect at the head of a queue is moved aside (`suspects_key`), where it stands in no
  one's way: one busy channel claims it and drains, the others go on (suspect after one death instead, a worker's
  crash had every task it held run one at a time afterwards: `make chaos`, worker-sigkill-busy, in
  docs/reliability.md);
* a message that is not JSON, or has no delivery tag, goes to the dead-letter list at once; the messages taken
  with it are delivered. `manage.py dead_letters` lists, requeues or drops them.

Publishing, queues as Redis lists, and the fanout and pidbox of kombu are unchanged (Flower's broker view,
`celery purge`, list-length autoscalers and plain-kombu producers keep working). A publish also pushes a token to
the queue's bell (`queue_bell.<queue>`, in the same round trip), and so does every give-back. An idle consumer waits
with `BLPOP` on the bells of its queues: one token wakes one waiter, so a message wakes one idle consumer however
many wait, on any of its queues and priority lists (a message sent with a priority waits in `<queue>\x06\x163` and
so on: Django's tasks at their default priority do, celery_runtime.django_tasks). The message itself stays in its
list until the take: a consumer killed after its wake loses nothing, and the next take (or the wait's 1 s timeout)
finds it. A take that finds every queue empty silences their bells. A message pushed by a producer that does not ring
(plain kombu, `manage.py dead_letters requeue`) is taken within the wait's timeout.
Messages recorded by kombu's own code (older versions of this transport, `basic_get`) keep kombu's
visibility-timeout restore.

Acks reach Redis in one script for all that ended within 5 ms (a suspect's at once): kombu's opens a client per
ack and sends four commands, which costs the worker more CPU per ack (measured in docs/performance.md).

Keys: the take and the sweep reach keys they do not declare in `KEYS` (the sweep, a dead owner's hash and the queues
its messages go back to; the take, the bells of given-back suspects), which Redis itself allows and Redis Cluster,
some proxies and Dragonfly (by default) refuse. Supported: Redis 6.2 or later, and servers that run Redis scripts as
Redis does (Valkey), as one primary, on its own or named by Redis Sentinel (SentinelTransport; the settings refuse
Cluster URLs).

Private kombu detail overridden (kombu pinned in pyproject.toml, and the take tested against the real worker):
the Redis channel's `_brpop_start`/`_brpop_read` (the take), `_put` (the bell), `_in_poll`, `_queue_cycle`,
`_q_for_pri`, `_flush_brpop_reauth`, `connection._deliver`, `connection.cycle.after_read`, QoS's
`_delivered`/`_dirty` (what the channel holds) and `_quick_ack`; `kombu.transport.TRANSPORT_ALIASES["sentinel"]`
names SentinelTransport (below). `global_keyprefix` is refused by the settings: the
scripts name keys. Selected by CELERY_BROKER_TRANSPORT in the settings, for redis:// and rediss:// URLs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from queue import Empty
from time import monotonic
from typing import Any

import kombu.exceptions
import kombu.transport
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

# Lua shared by the scripts below (each script is sent whole: Redis scripts cannot call one another).
# An acknowledged message's records go: what kombu's ack does, for many tags at once.
# Only what the acknowledging owner still owns: a message the sweep gave back (its owner silent too long, its task
# running on) may be another worker's now, under the same delivery tag, and that worker's record must stay.
FORGET_FUNCTION = """
local function forget(index, unacked, owned, deaths, tags)
  local forgotten = 0
  for _, tag in ipairs(tags) do
    if redis.call('HDEL', owned, tag) == 1 then
      redis.call('ZREM', index, tag)
      redis.call('HDEL', deaths, tag)
      forgotten = forgotten + redis.call('HDEL', unacked, tag)
    end
  end
  return forgotten
end
"""
# A recorded message's text and queue key: the record is "[text,exchange,routing_key]", the owned entry "<length of
# the tail after the text> <queue key>".
CUT_FUNCTION = """
local function cut(record, where)
  local space = string.find(where, ' ', 1, true)
  local tail = tonumber(string.sub(where, 1, space - 1))
  return string.sub(record, 2, #record - tail), string.sub(where, space + 1)
end
"""
# A message put back in a list rings its queue's bell, so that an idle consumer takes it at once (the queue's name is
# the list's key up to the priority separator, "\x06\x16").
# A bell holds BELL_TOKENS tokens at the most, for BELL_MILLISECONDS after its last ring: every waiter looks at its
# queues within its wait's timeout (1 s) anyway, so an older token wakes no one usefully, and a bell whose queue is
# gone (a dead worker's event queue) or drained by a consumer that does not silence it does not stay or grow.
BELL_TOKENS = 64
BELL_MILLISECONDS = 10_000
RING_FUNCTION = f"""
local BELL_TOKENS, BELL_MILLISECONDS = {BELL_TOKENS}, {BELL_MILLISECONDS}
local function ring(prefix, key)
  local at = string.find(key, '\\6\\22', 1, true)
  if at then key = string.sub(key, 1, at - 1) end
  redis.call('LPUSH', prefix .. key, 1)
  redis.call('LTRIM', prefix .. key, 0, BELL_TOKENS - 1)
  redis.call('PEXPIRE', prefix .. key, BELL_MILLISECONDS)
end
"""
# A stall that silenced everyone is no one's death. The clock key holds Redis's time at the last heartbeat or sweep;
# every live worker process beats every fifth of the liveness, so a gap longer than `grace` (half the liveness)
# means Redis did not answer (paused, a fork or fsync stall, a failover) or no worker ran at all. Every owner whose
# last beat came before the gap has it moved on by the gap: silence is counted only while Redis was serving.
UNSTALL_FUNCTION = """
local function unstall(owners, clock, now, grace)
  local last = tonumber(redis.call('GET', clock) or '0')
  local gap = now - last
  if last > 0 and gap > grace then
    local stale = redis.call('ZRANGEBYSCORE', owners, '-inf', last, 'WITHSCORES')
    for i = 1, #stale, 2 do
      redis.call('ZADD', owners, tonumber(stale[i + 1]) + gap, stale[i])
    end
  end
  if gap > 0 then redis.call('SET', clock, string.format('%.6f', now)) end
  if last > 0 and gap > grace then return gap end
  return 0
end
"""

# KEYS: the queue lists in the order to take from, then unacked, owned, owners, deaths, dead letters, unacked index,
# suspects, then the bells of its queues. ARGV: 1 owner, 2 how many messages at most, 3 how many the
# channel holds unacknowledged now that are not countdown/eta tasks, 4 one character per queue key, "1" where its
# consumer does not acknowledge, 5 the deaths from which a message is suspect, 6 how many bells, 7 the bell key
# prefix, 8... the delivery tags acknowledged since the last batch of acks reached Redis: forgotten first, in the same
# script, so that a message taken into the room an ack freed cannot end the worker before that ack is recorded.
# Every queue found empty: their bells are silenced (what rang for messages others took rings no one awake), those of
# queues read without acknowledgement too (nothing waits on them, and they would grow with every message).
# Reply: {"taken", queue key, messages, suspect (0/1), redelivered (0/1 per message), set aside} or
# {"empty"|"blocked", set aside}.
# Each message is recorded as kombu's restore reads it, [message, exchange, routing_key], around its text as it
# was published (decoding and encoding it again in Lua would round large integers in the arguments); the owned
# hash keeps the queue key and the length of the record's tail, so the text can be cut out again. A message with
# an entry in deaths was handed back before: it is delivered marked redelivered.
# A suspect message (deaths one short of the limit) is taken alone, by a channel that holds nothing else. At the
# head of a queue it is moved aside, to the suspects hash, so that it stands in no one's way; a channel that holds
# something claims a suspect of its queues that no live channel has claimed and takes nothing more until it holds
# nothing, then takes it; the other channels go on taking.
TAKE_AND_RECORD = (
    FORGET_FUNCTION
    + RING_FUNCTION
    + """
local bells = tonumber(ARGV[6])
local n = #KEYS - 7 - bells
local unacked, owned, owners, deaths, dead = KEYS[n + 1], KEYS[n + 2], KEYS[n + 3], KEYS[n + 4], KEYS[n + 5]
local suspects = KEYS[n + 7]
local owner, count, held, no_ack, suspect_at = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
if #ARGV > 7 then forget(KEYS[n + 6], unacked, owned, deaths, {unpack(ARGV, 8)}) end
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local set_aside = 0
local function record(key, tag, item, properties)
  local info = properties['delivery_info']
  if type(info) ~= 'table' then info = {} end
  local tail = ',' .. cjson.encode(info['exchange'] or '') .. ',' .. cjson.encode(info['routing_key'] or '') .. ']'
  redis.call('HSET', unacked, tag, '[' .. item .. tail)
  redis.call('HSET', owned, tag, #tail .. ' ' .. key)
end
if redis.call('HLEN', suspects) > 0 then
  local mine = {}
  for i = 1, n do
    if string.sub(no_ack, i, i) ~= '1' then mine[KEYS[i]] = true end
  end
  local entries = redis.call('HGETALL', suspects)
  for j = 1, #entries, 2 do
    local tag, entry = entries[j], cjson.decode(entries[j + 1])
    if mine[entry['k']] then
      if held == 0 then
        redis.call('HDEL', suspects, tag)
        record(entry['k'], tag, entry['i'], cjson.decode(entry['i'])['properties'])
        redis.call('ZADD', owners, now, owner)
        return {'taken', entry['k'], {entry['i']}, 1, {1}, set_aside}
      end
      local claimant = entry['c']
      if claimant == owner or claimant == '' or not redis.call('ZSCORE', owners, claimant) then
        if claimant ~= owner then
          entry['c'] = owner
          redis.call('HSET', suspects, tag, cjson.encode(entry))
        end
        return {'blocked', set_aside}
      end
    end
  end
end
for i = 1, n do
  local key, taken, redelivered, suspect = KEYS[i], {}, {}, 0
  if string.sub(no_ack, i, i) == '1' then
    taken = redis.call('RPOP', key, count) or {}
  else
    while #taken < count do
      local item = redis.call('LINDEX', key, -1)
      if not item then break end
      local ok, message = pcall(cjson.decode, item)
      local properties = ok and type(message) == 'table' and message['properties']
      local tag = type(properties) == 'table' and properties['delivery_tag']
      redis.call('RPOP', key)
      if type(tag) ~= 'string' then
        redis.call('LPUSH', dead, cjson.encode({reason = 'malformed', queue = key, at = now, raw = item}))
        set_aside = set_aside + 1
      else
        local deaths_so_far = redis.call('HGET', deaths, tag)
        local died = tonumber(deaths_so_far or '0') >= suspect_at
        if died and (#taken > 0 or held > 0) then
          redis.call('HSET', suspects, tag, cjson.encode({k = key, i = item, c = ''}))
          ring(ARGV[7], key)  -- for a channel that holds nothing
        else
          record(key, tag, item, properties)
          taken[#taken + 1] = item
          redelivered[#redelivered + 1] = deaths_so_far and 1 or 0
          if died then
            suspect = 1
            break
          end
        end
      end
    end
    if #taken > 0 then redis.call('ZADD', owners, now, owner) end
  end
  if #taken > 0 then return {'taken', key, taken, suspect, redelivered, set_aside} end
end
if bells > 0 then redis.call('DEL', unpack(KEYS, n + 8, n + 7 + bells)) end
return {'empty', set_aside}
"""
)
# How long a channel that claimed a suspect message waits before it looks again whether it holds nothing.
SUSPECT_WAIT_SECONDS = 0.05
# At most this many messages per take, within what the prefetch limit leaves: with a backlog, one round trip
# to Redis brings several, where one each made Redis's share of a no-op task the largest after the worker's own.
TAKE_AT_MOST = 16

# KEYS: owners, clock. ARGV: owner, grace (s). Reply: {1 when the owner was known alive, 0 when it was not (new, or
# taken for dead), the stall it found in seconds (0: none)}.
HEARTBEAT = (
    UNSTALL_FUNCTION
    + """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local stalled = unstall(KEYS[1], KEYS[2], now, tonumber(ARGV[2]))
local known = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
return {known and 1 or 0, tostring(stalled)}
"""
)

# KEYS: owners, unacked, unacked index, deaths, dead letters, clock. ARGV: liveness (s), delivery limit, owned-key
# prefix, grace (s), bell key prefix. Gives back the messages of owners silent for longer than the liveness, each to
# the head of its queue (marked redelivered: it has an entry in deaths, and ringing its queue's bell), or to the dead
# letters once its deaths reach the limit.
# Reply: {given back, {task, id, deaths}...flattened, dead owners, the stall it found in seconds (0: none)}.
RESTORE_DEAD_OWNERS = (
    CUT_FUNCTION
    + UNSTALL_FUNCTION
    + RING_FUNCTION
    + """
local owners, unacked, index, deaths, dead = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local liveness, limit, prefix = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3]
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local stalled = unstall(owners, KEYS[6], now, tonumber(ARGV[4]))
local given_back, set_aside, gone = 0, {}, {}
for _, owner in ipairs(redis.call('ZRANGEBYSCORE', owners, '-inf', now - liveness, 'LIMIT', 0, 32)) do
  local owned = prefix .. owner
  local entries = redis.call('HGETALL', owned)
  for j = 1, #entries, 2 do
    local tag, where = entries[j], entries[j + 1]
    local record = redis.call('HGET', unacked, tag)
    if record then
      local item, key = cut(record, where)
      redis.call('HDEL', unacked, tag)
      redis.call('ZREM', index, tag)
      local died = redis.call('HINCRBY', deaths, tag, 1)
      if died >= limit then
        redis.call('HDEL', deaths, tag)
        local headers = cjson.decode(item)['headers'] or {}
        redis.call('LPUSH', dead, '{"reason":"deaths","deaths":' .. died .. ',"queue":' .. cjson.encode(key) ..
          ',"at":' .. now .. ',"owner":' .. cjson.encode(owner) .. ',"message":' .. item .. '}')
        set_aside[#set_aside + 1] = tostring(headers['task'] or '?')
        set_aside[#set_aside + 1] = tostring(headers['id'] or tag)
        set_aside[#set_aside + 1] = died
      else
        redis.call('RPUSH', key, item)
        ring(ARGV[5], key)
        given_back = given_back + 1
      end
    end
  end
  redis.call('DEL', owned)
  redis.call('ZREM', owners, owner)
  gone[#gone + 1] = owner
end
return {given_back, set_aside, gone, tostring(stalled)}
"""
)

# KEYS: owners, owned, unacked, unacked index, deaths. ARGV: owner, bell key prefix.
# A channel that closed leaves the owners, and what it still owns goes back to the head of its queue, marked
# redelivered, with no death counted: its process lives. That is what kombu's restore at close could not reach (a
# take whose reply the broken connection lost, an ack that did not reach Redis): the sweep would have given it
# back after the liveness, a death counted for a message never delivered, or delivered to a worker that lives.
RELEASE = (
    CUT_FUNCTION
    + RING_FUNCTION
    + """
local owners, owned, unacked, index, deaths = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local entries = redis.call('HGETALL', owned)
local given_back = 0
for j = 1, #entries, 2 do
  local tag, where = entries[j], entries[j + 1]
  local record = redis.call('HGET', unacked, tag)
  if record then
    local item, key = cut(record, where)
    redis.call('HDEL', unacked, tag)
    redis.call('ZREM', index, tag)
    redis.call('HSETNX', deaths, tag, 0)
    redis.call('RPUSH', key, item)
    ring(ARGV[2], key)
    given_back = given_back + 1
  end
end
redis.call('DEL', owned)
redis.call('ZREM', owners, ARGV[1])
return given_back
"""
)

# KEYS: unacked, unacked index, owned, deaths. ARGV: tag, "1" for the tail of the queue (leftmost), else its head,
# bell key prefix.
# One message back in its queue, as kombu's restore_by_tag does, marked redelivered (an entry in deaths, with no
# death counted); 0 when this channel's take did not record it.
RESTORE_ONE = (
    CUT_FUNCTION
    + RING_FUNCTION
    + """
local record, where = redis.call('HGET', KEYS[1], ARGV[1]), redis.call('HGET', KEYS[3], ARGV[1])
if not (record and where) then return 0 end
local item, key = cut(record, where)
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HSETNX', KEYS[4], ARGV[1], 0)
if ARGV[2] == '1' then
  redis.call('LPUSH', key, item)
else
  redis.call('RPUSH', key, item)
end
ring(ARGV[3], key)
return 1
"""
)

# KEYS: the unacked index, unacked, owned, deaths. ARGV: the delivery tags. What kombu's ack does, for many at once.
FORGET = (
    FORGET_FUNCTION
    + """
return forget(KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV)
"""
)
# Acks reach Redis in batches: at most this long after the task ended, or at once when this many are waiting.
# A worker killed in between has its last acks' messages handed out again when it is found dead: a second run
# of a task that had finished (tasks are idempotent, as acks late requires anyway), never a loss.
FORGET_DELAY_SECONDS = 0.005
FORGET_BATCH = 64


logger = logging.getLogger(__name__)


class NotReplicated(kombu.exceptions.OperationalError):
    """A publish that its replicas did not acknowledge in time (`wait_for_replicas`). Not a connection error, so that
    kombu does not publish it again; an OperationalError, so that the web answers 503 (config.outages)."""


# Give-backs that met a broken connection (a reject's requeue, or a message a closing channel had taken and not
# delivered): (owned key, delivery tag, leftmost). The message stays recorded as the owner's in Redis; this process's
# live channel gives it back at its next sweep (QoS.retry_give_backs), before that owner can be found dead: back
# within seconds of Redis answering again, with no death counted for a message whose delivery did not end in one.
# What is still here when the process dies comes back with the sweep.
_pending_give_backs: list[tuple[str, str, bool]] = []
# Owners of this process's closed channels that could not leave the owners at close (RELEASE): released by its live
# channel at its next sweep, before the sweep finds them silent.
_pending_releases: list[str] = []
_pending_lock = threading.Lock()


def log_stall(stalled: Any, log: Callable[..., None] = logger.log) -> None:
    """What a heartbeat or sweep script found: Redis, or every worker, silent for `stalled` seconds."""
    if float(stalled):
        log(
            logging.WARNING,
            "no worker reached Redis for %.1fs (Redis paused or stalled, or no worker running): that silence counts "
            "toward no worker's liveness",
            float(stalled),
        )


# kombu's type stubs leave out the Redis channel's internals used here.
RedisChannel: Any = kombu_redis.Channel
RedisQoS: Any = kombu_redis.QoS
RedisTransport: Any = kombu_redis.Transport
RedisSentinelChannel: Any = kombu_redis.SentinelChannel
virtual_QoS: Any = virtual.QoS


class QoS(RedisQoS):
    """Records nothing the take script has recorded, tells Redis of acks in batches (FORGET_DELAY_SECONDS,
    FORGET_BATCH, and whatever is left when the channel closes), and forgets an acknowledged message locally
    even when Redis could not be told.

    kombu counts a message against the prefetch limit until its ack reaches Redis. With Redis away, every task
    that finishes fails its ack; once the count reaches the limit the consumer stops reading, so it never sees
    the broken connection and never reconnects: the worker idles for good after Redis returns (`make chaos`,
    redis-down, saw it). The message itself stays recorded as this owner's, and comes back if the owner dies:
    a second run, never a loss.

    The ack of a suspect message (one whose earlier delivery ended in its worker's death) reaches Redis at once,
    so that a death a few milliseconds later is not counted against it.

    A message the take recorded goes back to its queue only through RESTORE_ONE, which moves it only while this
    owner still owns it: once the sweep has given it back (this owner silent too long) another worker may hold it
    under the same delivery tag, and kombu's restore, which goes by the tag alone, would hand it out again."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Delivery tags the take recorded as this owner's, until acknowledged or given back.
        self.recorded_by_take: set[str] = set()
        self.suspects: set[str] = set()  # held suspect messages: their acks reach Redis at once
        # Held countdown/eta tasks: a suspect message does not wait for them to end (the take's `held`).
        self.waiting_for_eta: set[str] = set()
        self._scripts: dict[str, Any] = {}
        self._to_forget: list[str] = []
        self._forget_due = False
        # Acks come from the consumer, batches leave from a timer: a thread of its own under prefork.
        self._to_forget_lock = threading.Lock()

    def held(self) -> int:
        """Messages delivered to the consumer and not yet acknowledged."""
        return len(self._delivered) - len(self._dirty)

    def script(self, source: str) -> Any:
        """A script on a client of the channel's connection pool (registered again after a reconnect)."""
        pool = self.channel.pool
        script = self._scripts.get(source)
        if script is None or script.registered_client.connection_pool is not pool:
            script = self._scripts[source] = self.channel.Client(connection_pool=pool).register_script(source)
        return script

    def _forget_in_redis(self, delivery_tag: str) -> None:
        with self._to_forget_lock:
            self._to_forget.append(delivery_tag)
            full = len(self._to_forget) >= FORGET_BATCH or delivery_tag in self.suspects
            start_timer = not full and not self._forget_due
            self._forget_due = self._forget_due or start_timer
        self.suspects.discard(delivery_tag)
        if full:
            self.forget_acknowledged()
        elif start_timer:
            timer = threading.Timer(FORGET_DELAY_SECONDS, self._forget_acknowledged_logged)
            timer.daemon = True
            timer.start()

    def take_acknowledged(self) -> list[str]:
        """The acks not yet sent to Redis, for the next take to send (the batch's timer then finds none)."""
        with self._to_forget_lock:
            tags, self._to_forget = self._to_forget, []
        return tags

    def give_back_acknowledged(self, tags: list[str]) -> None:
        """Acks a take could not deliver: sent with the next batch."""
        if tags:
            with self._to_forget_lock:
                self._to_forget[:0] = tags

    def forget_acknowledged(self) -> None:
        """Removes the acknowledged messages from Redis's unacked records, in one command."""
        with self._to_forget_lock:
            tags, self._to_forget, self._forget_due = self._to_forget, [], False
        if not tags:
            return
        channel = self.channel
        keys = [channel.unacked_index_key, channel.unacked_key, channel.owned_key, channel.unacked_deaths_key]
        waits = channel._replica_wait()
        if not waits:
            self.script(FORGET)(keys=keys, args=tags)
            return
        # Acks that no replica acknowledged are sent again: a primary a failover replaced drops them.
        script = self.script(FORGET)
        try:
            with script.registered_client.pipeline(transaction=False) as pipe:
                script(keys=keys, args=tags, client=pipe)
                pipe.execute_command("WAIT", *waits)
                replicas = int(pipe.execute()[-1])
        except BaseException:
            self.give_back_acknowledged(tags)
            raise
        if replicas < int(channel.wait_for_replicas):
            self.give_back_acknowledged(tags)
            logger.warning(
                "%d ack(s) that no replica acknowledged within %ss (wait_for_replicas): sent again with the next",
                len(tags),
                channel.replica_wait_timeout,
            )

    def _forget_acknowledged_logged(self) -> None:
        waiting = len(self._to_forget)
        try:
            self.forget_acknowledged()
        except Exception as exc:  # noqa: BLE001 - a timer's thread has no caller to raise to
            logger.warning(
                "could not remove %d acknowledged message(s) from Redis's unacked records (%s); "
                "they run again if this worker dies before it can",
                waiting,
                exc,
            )

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded_by_take:
            # The take script recorded it in Redis already; kombu would write the same record a second time.
            virtual_QoS.append(self, message, delivery_tag)
        else:  # taken some other way (basic_get): recorded here, as kombu does
            super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        if delivery_tag not in self.recorded_by_take:  # recorded by kombu's own code (basic_get): kombu's ack
            super().ack(delivery_tag)
            return
        virtual_QoS.ack(self, delivery_tag)  # here first: the prefetch room frees whatever Redis does
        self.recorded_by_take.discard(delivery_tag)
        self.waiting_for_eta.discard(delivery_tag)
        self._forget_in_redis(delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        self.suspects.discard(delivery_tag)
        try:
            if requeue:
                self.restore_by_tag(delivery_tag, leftmost=True, retry=True)
                virtual_QoS.ack(self, delivery_tag)
            else:
                self.ack(delivery_tag)
        except BaseException:
            self._quick_ack(delivery_tag)
            raise

    def _give_back(self, tag: str, *, leftmost: bool, owned_key: str | None = None) -> int:
        """RESTORE_ONE: 1 when the message went back, 0 when `owned_key` (this channel's by default) does not own it."""
        channel = self.channel
        owned = owned_key or channel.owned_key
        keys = [channel.unacked_key, channel.unacked_index_key, owned, channel.unacked_deaths_key]
        return int(self.script(RESTORE_ONE)(keys=keys, args=[tag, "1" if leftmost else "0", channel.bell_key_prefix]))

    def restore_by_tag(self, tag: str, client: Any = None, leftmost: bool = False, *, retry: bool = False) -> None:
        """One message back in its queue: a reject with requeue, or what the channel still holds as it closes
        (kombu's restore_unacked). `retry`: if Redis cannot be reached, this process's live channel gives it back
        later (`retry_give_backs`): a requeue's, and a message taken but never delivered. Not what a closing channel
        had delivered: its task may still be running, and its ack reach Redis through this channel's pool once Redis
        is back; what is left then comes back with the sweep (kombu's close also stops at the first failure, where
        trying each would wait out a connect timeout per message)."""
        if tag in self._dirty:  # acknowledged while the close gives back the rest: nothing to give back
            return
        if tag not in self.recorded_by_take:  # recorded by kombu's own code (basic_get)
            super().restore_by_tag(tag, client=client, leftmost=leftmost)
            return
        try:
            self._give_back(tag, leftmost=leftmost)  # 0: no longer this owner's
        except Exception:  # a broken connection, or Redis refusing (OOM, READONLY after a failover, BUSY)
            if retry:
                self.give_back_later([tag], leftmost=leftmost)
            raise
        finally:
            self.recorded_by_take.discard(tag)
            self.waiting_for_eta.discard(tag)

    def give_back_later(self, tags: list[str], *, leftmost: bool) -> None:
        with _pending_lock:
            _pending_give_backs.extend((self.channel.owned_key, tag, leftmost) for tag in tags)

    def retry_give_backs(self) -> int:
        """Gives back what a failed requeue or close left recorded as its owner's (this process's channels only)."""
        with _pending_lock:
            pending = list(_pending_give_backs)
            _pending_give_backs.clear()
            releases = list(_pending_releases)
            _pending_releases.clear()
        given_back = 0
        for index, (owned_key, tag, leftmost) in enumerate(pending):
            try:
                given_back += self._give_back(tag, leftmost=leftmost, owned_key=owned_key)
            except Exception:
                with _pending_lock:
                    _pending_give_backs[:0] = pending[index:]
                    _pending_releases[:0] = releases
                raise
        for index, owner in enumerate(releases):
            try:
                given_back += self._release(owner)
            except Exception:
                with _pending_lock:
                    _pending_releases[:0] = releases[index:]
                raise
        if given_back:
            logger.warning("redelivery: %d message(s) that could not be given back earlier are back", given_back)
        return given_back

    def restore_unacked_once(self, stderr: Any = None) -> Any:
        """kombu's, as the channel closes (what it holds back in its queues), then this owner leaves the owners and
        gives back whatever else it still owns (RELEASE); with Redis away, this process's live channel does that at
        its next sweep (retry_give_backs), or, if the process dies first, the sweep once the owner is silent."""
        restored = super().restore_unacked_once(stderr)
        owner = self.channel.owner
        try:
            released = self._release(owner)
        except Exception as exc:  # noqa: BLE001 - closing goes on: released later, as above
            with _pending_lock:
                _pending_releases.append(owner)
            logger.debug("could not leave the owners at close: %r", exc)
        else:
            if released:
                logger.warning("redelivery: %d message(s) taken but not delivered are back in their queues", released)
        return restored

    def _release(self, owner: str) -> int:
        channel = self.channel
        keys = [
            channel.unacked_owners_key,
            channel.owned_key_prefix + owner,
            channel.unacked_key,
            channel.unacked_index_key,
            channel.unacked_deaths_key,
        ]
        return int(self.script(RELEASE)(keys=keys, args=[owner, channel.bell_key_prefix]))

    def heartbeat(self, client: Any, log: Callable[..., None] = logger.log) -> bool:
        """Tells Redis this owner is alive, over `client` (the heartbeat thread's own connection: celery_runtime.
        redelivery); logs at ERROR, through `log` (logging's from the worker's own thread), if it had been taken for
        dead meanwhile. Not once its channel closes (the consumer reconnected on another): what it held is then the
        sweep's to give back, and this returns False, for the beats to stop."""
        channel = self.channel
        if channel.closing:
            return False
        known, stalled = client.register_script(HEARTBEAT)(
            keys=[channel.unacked_owners_key, channel.clock_key], args=[channel.owner, channel.stall_grace]
        )
        log_stall(stalled, log)
        if not known and channel.owner_announced and self.held():
            log(
                logging.ERROR,
                "this worker was silent for over %ss and taken for dead: the %d message(s) it holds were handed to "
                "other workers and may run twice (was its process stopped, or cut off from Redis?)",
                channel.worker_liveness_timeout,
                self.held(),
            )
        channel.owner_announced = True
        return True

    def restore_dead_owners(self) -> int:
        """Gives back the messages of owners taken for dead (no heartbeat for `worker_liveness_timeout` s)."""
        channel = self.channel
        keys = [
            channel.unacked_owners_key,
            channel.unacked_key,
            channel.unacked_index_key,
            channel.unacked_deaths_key,
            channel.dead_letters_key,
            channel.clock_key,
        ]
        args = [
            channel.worker_liveness_timeout,
            channel.delivery_limit,
            channel.owned_key_prefix,
            channel.stall_grace,
            channel.bell_key_prefix,
        ]
        given_back, set_aside, gone, stalled = self.script(RESTORE_DEAD_OWNERS)(keys=keys, args=args)
        log_stall(stalled)
        for owner in gone:
            logger.warning(
                "worker %s is gone (silent for over %ss)", bytes_to_str(owner), channel.worker_liveness_timeout
            )
        if given_back:
            logger.warning("redelivery: %d message(s) of gone workers are back in their queues", given_back)
        for index in range(0, len(set_aside), 3):
            task, task_id, deaths = set_aside[index : index + 3]
            logger.error(
                "dead letter: task %s[%s] set aside: its deliveries ended in the death of their worker %s times "
                "(manage.py dead_letters requeues or drops it)",
                bytes_to_str(task),
                bytes_to_str(task_id),
                deaths,
            )
        return int(given_back)


class Channel(RedisChannel):
    QoS = QoS
    from_transport_options = (
        *RedisChannel.from_transport_options,
        "worker_liveness_timeout",
        "delivery_limit",
        "wait_for_replicas",
        "replica_wait_timeout",
    )
    # An owner silent this long (no heartbeat, no take) is taken for dead and its messages given back. Several
    # heartbeat periods (celery_runtime.redelivery beats every fifth of it), so a late beat is not a death.
    worker_liveness_timeout = 15
    # Deliveries that may end in their worker's death before the message is set aside as a dead letter.
    delivery_limit = 3
    unacked_owners_key = "unacked_owners"  # sorted set: owner -> its last heartbeat, Redis's clock
    owned_key_prefix = "unacked_owned."  # hash per owner: delivery tag -> the length of its record's tail, queue key
    unacked_deaths_key = "unacked_deaths"  # hash: delivery tag -> deaths of the workers that held it
    dead_letters_key = "unacked_dead_letters"  # list of JSON: reason, queue, and the message as it was published
    suspects_key = "unacked_suspects"  # hash: delivery tag -> JSON of its queue key, text and claimant channel
    clock_key = "unacked_clock"  # Redis's time at the last heartbeat or sweep: a stall is no one's death
    bell_key_prefix = "queue_bell."  # list per queue: a token per message put in any of its lists (QueueBell)
    # A publish returns once this many replicas have the message (0: at once). Redis replicates asynchronously: a
    # primary lost before a replica had a message takes it along, unless its publish waited. SentinelChannel waits
    # for one.
    wait_for_replicas = 0
    replica_wait_timeout = 0.5  # seconds a publish, take or ack waits for its replicas at the most
    _take_waits = False  # the take in flight is followed by a WAIT for the replicas

    # The last take found every queue empty: the next command waits for a message instead of taking one.
    _queues_were_empty = False
    _sent: str | None = None
    _suspect_waits = False  # the last take stopped at a suspect: wait a little, then take again
    _forgetting: list[str] = []  # acks sent with the take in flight
    owner_announced = False  # a heartbeat or a take told Redis of this owner
    # Set first thing in close(): kombu's own `closed` comes late, after steps that can raise on a broken connection.
    closing = False

    _undelivered: list[dict[str, Any]]  # taken by the last take, not yet handed to the consumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.owned_key = self.owned_key_prefix + self.owner
        self.no_ack_queues: set[str] = set()

    @property
    def stall_grace(self) -> float:
        """A gap longer than this between any two heartbeats or sweeps reaching Redis is a stall, which counts toward
        no owner's silence: half the liveness, where every live owner beats every fifth of it."""
        return float(self.worker_liveness_timeout) / 2

    @property
    def suspect_at(self) -> int:
        """The deaths from which a message is taken alone: one more would set it aside. Not after one death: a
        worker's crash would then have every task it held run one at a time afterwards."""
        return int(self.delivery_limit) - 1 if int(self.delivery_limit) >= 3 else 1

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        if no_ack:
            self.no_ack_queues.add(queue)
        else:
            self.no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def close(self) -> None:
        self.closing = True
        # Before kombu's close, which restores what is still delivered and drops the clients.
        if self._qos is not None:
            try:
                self.qos.forget_acknowledged()
            except Exception as exc:  # noqa: BLE001 - closing goes on: those messages run again later
                logger.warning("could not remove acknowledged messages from Redis at close: %s", exc)
            self._requeue_undelivered()
        super().close()

    def _put(self, queue: str, message: Any, **kwargs: Any) -> None:
        """kombu's, and a token on the queue's bell after the message, in the same round trip (QueueBell); with
        `wait_for_replicas`, returns once that many replicas have the message (Redis's WAIT), in that round trip too."""
        publish_batch = kwargs.get("_publish_batch")
        waits = self._replica_wait()
        if publish_batch is not None:  # a batch's flush waits for the replicas too, but is not refused
            super()._put(queue, message, **kwargs)
            bell = self.bell_key_prefix + queue
            publish_batch.add("lpush", bell, 1)
            publish_batch.add("ltrim", bell, 0, BELL_TOKENS - 1)
            publish_batch.add("pexpire", bell, BELL_MILLISECONDS)
            if waits:
                publish_batch.add("execute_command", "WAIT", *waits)
            return
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            pipe.lpush(key, dumps(message))
            if self._expires and queue in self._expires:
                for priority in self.priority_steps:
                    pipe.pexpire(self._q_for_pri(queue, priority), self._expires[queue])
            bell = self.bell_key_prefix + queue
            pipe.lpush(bell, 1)
            pipe.ltrim(bell, 0, BELL_TOKENS - 1)
            pipe.pexpire(bell, BELL_MILLISECONDS)
            if waits:
                pipe.execute_command("WAIT", *waits)
            replies = pipe.execute()
        if waits:
            self._replicas_answered(int(replies[-1]))

    def _replica_wait(self) -> tuple[int, int] | None:
        """WAIT's arguments (replicas, milliseconds) after a write that must reach the replicas, or None."""
        replicas = int(self.wait_for_replicas)
        if replicas <= 0:
            return None
        return replicas, max(1, int(float(self.replica_wait_timeout) * 1000))

    def _replicas_answered(self, replicas: int) -> None:
        """A publish that did not reach its replicas in time is refused: a failover could lose it (the web answers
        503; Celery does not publish it again, which could run it twice: the message may reach them later)."""
        if replicas < int(self.wait_for_replicas):
            raise NotReplicated(
                f"published, but {replicas} of {self.wait_for_replicas} replica(s) acknowledged it within "
                f"{self.replica_wait_timeout}s (wait_for_replicas): a failover could lose it"
            )

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        """kombu's, and the queue's bell with it."""
        super()._delete(queue, *args, **kwargs)
        with self.conn_or_acquire(client=kwargs.get("client")) as client:
            client.delete(self.bell_key_prefix + queue)

    def _brpop_start(self, timeout: float | None = None) -> None:
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        keys, no_ack = [], ""
        # Queues read without acknowledgement (gossip's worker events, on this channel where mingle and gossip are
        # on, as in production) do not wake an idle wait: they can wait for its timeout. Their bells are silenced with
        # the others when all are found empty, or they would grow with every event.
        bells = [self.bell_key_prefix + queue for queue in queues]
        waking = [bell for bell, queue in zip(bells, queues, strict=True) if queue not in self.no_ack_queues]
        for priority in self.priority_steps:
            for queue in queues:
                keys.append(self._q_for_pri(queue, priority))
                no_ack += "1" if queue in self.no_ack_queues else "0"
        self._in_poll = self.client.connection
        self._brpop_sent_at = monotonic()
        if self._suspect_waits:
            # A suspect at the head of a queue, taken once this channel holds nothing: look again shortly. A wait
            # on a key nothing writes is a sleep that keeps this connection's place in kombu's poller.
            self._suspect_waits = False
            self._sent = "BLMOVE"
            self.client.connection.send_command(
                "BLMOVE", self.owned_key + ".wait", self.owned_key + ".wait", "RIGHT", "RIGHT", SUSPECT_WAIT_SECONDS
            )
        elif self._queues_were_empty and waking:
            # One token, one waiter woken: a message wakes one idle consumer of its queue, not all of them.
            self._sent = "BLPOP"
            self.client.connection.send_command("BLPOP", *waking, timeout or 0)
        elif self._queues_were_empty:
            # Queues read without acknowledgement only (a reply queue): woken by a message on the first, at once.
            self._sent = "BLMOVE"
            self.client.connection.send_command("BLMOVE", keys[0], keys[0], "RIGHT", "RIGHT", timeout or 0)
        else:
            self._sent = "EVAL"
            # The prefetch limit's room (None: no limit); at least one, since kombu polls only when there is room.
            room = self.qos.can_consume_max_estimate()
            count = max(1, min(TAKE_AT_MOST, room if room is not None else TAKE_AT_MOST))
            fixed = [
                self.unacked_key,
                self.owned_key,
                self.unacked_owners_key,
                self.unacked_deaths_key,
                self.dead_letters_key,
                self.unacked_index_key,
                self.suspects_key,
            ]
            self._forgetting = self.qos.take_acknowledged()
            # The source each time, not EVALSHA: Redis caches the compiled script either way (Redis's time per
            # empty take barely differs: measured in docs/performance.md), and EVAL never meets NOSCRIPT after a
            # Redis restart or a SCRIPT FLUSH.
            self.client.connection.send_command(
                "EVAL",
                TAKE_AND_RECORD,
                len(keys) + len(fixed) + len(bells),
                *keys,
                *fixed,
                *bells,
                self.owner,
                count,
                self.qos.held() - len(self.qos.waiting_for_eta),
                no_ack,
                self.suspect_at,
                len(bells),
                self.bell_key_prefix,
                *self._forgetting,
            )
            waits = self._replica_wait()
            self._take_waits = waits is not None
            if waits:
                self.client.connection.send_command("WAIT", *waits)
        return None

    def _brpop_read(self, **options: Any) -> bool:
        sent, self._sent = self._sent, None
        take_waits, self._take_waits = self._take_waits and sent == "EVAL", False
        replicated = True
        try:
            try:
                try:
                    reply = self.client.parse_response(self.client.connection, sent, **options)
                finally:
                    if take_waits:  # read whatever the take's reply was, or the next command reads it
                        replicas = int(self.client.parse_response(self.client.connection, "WAIT"))
                        replicated = replicas >= int(self.wait_for_replicas)
            except self.connection_errors:
                self.client.connection.disconnect()  # the next poll reconnects
                self.qos.give_back_acknowledged(self._forgetting)  # not known to have reached Redis
                raise
            if not replicated:
                self.qos.give_back_acknowledged(self._forgetting)  # sent again with the next take
            if sent in ("BLPOP", "BLMOVE"):
                self._queues_were_empty = False  # a message arrived, or the wait timed out: take next
                raise Empty()
            status = bytes_to_str(reply[0])
            set_aside = int(reply[-1])
            if set_aside:
                logger.error(
                    "dead letter: %d message(s) that are not a kombu message (not JSON, or no delivery tag) set "
                    "aside in %s (manage.py dead_letters shows them)",
                    set_aside,
                    self.dead_letters_key,
                )
            if status == "blocked":  # a suspect waits: take it alone once all held is acknowledged
                self._suspect_waits = True
                raise Empty()
            if status != "taken":
                self._queues_were_empty = True
                raise Empty()
            _, key, items, suspect, redelivered = reply[:5]
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
        finally:
            self._forgetting = []
            self._in_poll = None
            self._flush_brpop_reauth()
        if not replicated and queue not in self.no_ack_queues:  # not recorded: delivered, as kombu would
            self._take_not_replicated(queue, items)
        messages = []
        for index, item in enumerate(items):
            try:
                message = loads(bytes_to_str(item))
            except ValueError:  # what the take's JSON parser read and Python's does not: set aside, as there
                self.client.lpush(self.dead_letters_key, json.dumps({"reason": "malformed", "raw": bytes_to_str(item)}))
                logger.error("dead letter: a message Python cannot decode set aside in %s", self.dead_letters_key)
                continue
            if index < len(redelivered) and int(redelivered[index]):  # handed back before: marked as kombu does
                message.setdefault("headers", {})["redelivered"] = True
                message["properties"].setdefault("delivery_info", {})["redelivered"] = True
            messages.append(message)
        if not messages:
            raise Empty()
        if queue not in self.no_ack_queues:
            self.owner_announced = True
            for message in messages:
                tag = message["properties"]["delivery_tag"]
                self.qos.recorded_by_take.add(tag)
                if (message.get("headers") or {}).get("eta"):
                    self.qos.waiting_for_eta.add(tag)
            if suspect:
                self.qos.suspects.add(messages[0]["properties"]["delivery_tag"])
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

    def _take_not_replicated(self, queue: str, items: list[Any]) -> None:
        """A take that no replica acknowledged in time is not delivered: on a primary that a failover has already
        replaced (until the Sentinels demote it, it takes writes that are then dropped) its messages are still in
        their queue on the new one, and would run twice. Given back here (the give-back too is dropped there),
        with no death counted; the next take waits for the replicas again."""
        tags = []
        for item in items:
            try:
                tags.append(loads(bytes_to_str(item))["properties"]["delivery_tag"])
            except (ValueError, KeyError, TypeError):
                continue  # set aside by the take's caller below, as a dead letter
        logger.warning(
            "took %d message(s) from %s that no replica acknowledged within %ss (wait_for_replicas): given back, "
            "not run; this Redis may no longer be the primary",
            len(tags),
            queue,
            self.replica_wait_timeout,
        )
        self.qos.recorded_by_take.update(tags)
        self._undelivered = [{"properties": {"delivery_tag": tag}} for tag in tags]
        self._requeue_undelivered()
        raise Empty()

    def _requeue_undelivered(self) -> None:
        undelivered, self._undelivered = getattr(self, "_undelivered", []), []
        tags = [message["properties"]["delivery_tag"] for message in undelivered]
        for index, tag in enumerate(tags):
            try:
                self.qos.restore_by_tag(tag, leftmost=True, retry=True)
            except Exception as exc:  # noqa: BLE001 - given back by this process's next channel
                # Redis away: the rest too, without waiting out a connect timeout each.
                self.qos.give_back_later(tags[index + 1 :], leftmost=True)
                logger.warning(
                    "could not put %d message(s) taken but not delivered back in the queue (%s): given back once "
                    "Redis answers",
                    len(tags) - index,
                    exc,
                )
                return


class Transport(RedisTransport):
    Channel = Channel


class SentinelChannel(Channel, RedisSentinelChannel):
    """This module's channel on the primary that Redis Sentinel names (kombu's SentinelChannel finds it, and finds
    the new one after a failover): `sentinel://` URLs separated by ';', `master_name` in the transport options.

    Redis replicates asynchronously, and a primary that a failover replaced takes writes until the Sentinels demote
    it (they look every 10 s), then drops them. So here what matters waits for a replica (`wait_for_replicas`, 1):
    a publish returns once a replica has the message, and is refused otherwise (NotReplicated: the web's 503); a
    take is delivered once a replica has it, and given back otherwise, not run (on the old primary its messages are
    still queued on the new one: they would run twice); an ack that no replica acknowledged is sent again.
    Heartbeats and sweeps do not wait: every connection to the old primary breaks, its owners are found dead on
    the new one and what they held comes back. Proven by `make chaos` (sentinel-failover, sentinel-switchover).
    """

    from_transport_options = tuple(
        dict.fromkeys((*Channel.from_transport_options, *RedisSentinelChannel.from_transport_options))
    )
    wait_for_replicas = 1


class SentinelTransport(Transport):
    """For `sentinel://` broker URLs (kombu's SentinelTransport, with this module's channel)."""

    Channel = SentinelChannel
    default_port = kombu_redis.SentinelTransport.default_port


# After a connection error kombu switches to the next URL of CELERY_BROKER_URL's list (the next Sentinel), and a URL
# it switches to names its transport by its scheme, whatever broker_transport says (kombu.Connection.switch): without
# this alias a worker was back on kombu's own Sentinel transport after a failover, where no owner beats, so that what
# its old connection held never came back (make chaos, sentinel-held: 20 countdown tasks never ran).
kombu.transport.TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
