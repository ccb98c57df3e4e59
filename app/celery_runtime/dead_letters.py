"""The dead-letter list of the transport (celery_runtime.transport): read, requeue, drop.

Each entry is JSON: `reason` ("deaths": its deliveries ended in the death of their worker `delivery_limit` times;
"malformed": not a kombu message), `queue` (the Redis list it came from), `at` (Redis's clock), and `message`
(the message as it was published) or `raw` (the text that could not be read). Requeueing puts the message at the
tail of its queue, as a new publish would, with its count of deaths cleared; a malformed entry cannot be
requeued, only dropped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from config.celery_app import app as celery_app

# KEYS: the dead letters, the deaths hash. ARGV: "requeue" or "drop", then the task id to act on, or "" for all.
# The message's text is cut out of the entry (it is the entry's last field) rather than encoded again by Lua,
# which would round large integers. Returns how many entries it acted on.
ACT = """
local dead, deaths, action, wanted = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local done = 0
for _, entry in ipairs(redis.call('LRANGE', dead, 0, -1)) do
  local ok, decoded = pcall(cjson.decode, entry)
  local message = ok and type(decoded) == 'table' and decoded['message']
  local headers = type(message) == 'table' and message['headers']
  local id = type(headers) == 'table' and headers['id']
  if wanted == '' or id == wanted then
    if action == 'drop' then
      redis.call('LREM', dead, 1, entry)
      done = done + 1
    elseif type(message) == 'table' and type(decoded['queue']) == 'string' then
      local at = string.find(entry, ',"message":', 1, true)
      redis.call('LPUSH', decoded['queue'], string.sub(entry, at + 11, #entry - 1))
      redis.call('HDEL', deaths, message['properties']['delivery_tag'])
      redis.call('LREM', dead, 1, entry)
      done = done + 1
    end
  end
end
return done
"""


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    queue: str
    task: str
    task_id: str
    deaths: int
    at: float


@contextmanager
def _channel() -> Iterator[Any]:
    with celery_app.connection_for_write() as connection:
        yield connection.default_channel


def dead_letter_count() -> int:
    with _channel() as channel:
        return int(channel.client.llen(channel.dead_letters_key))


def dead_letter_list(*, limit: int = 100) -> list[DeadLetter]:
    with _channel() as channel:
        entries = channel.client.lrange(channel.dead_letters_key, 0, limit - 1)
    letters = []
    for entry in entries:
        decoded = json.loads(entry)
        headers = (decoded.get("message") or {}).get("headers") or {}
        letters.append(
            DeadLetter(
                reason=decoded.get("reason", "?"),
                queue=decoded.get("queue", "?"),
                task=headers.get("task", "?"),
                task_id=headers.get("id", "?"),
                deaths=int(decoded.get("deaths", 0)),
                at=float(decoded.get("at", 0)),
            )
        )
    return letters


def _act(action: str, task_id: str | None) -> int:
    with _channel() as channel:
        script = channel.client.register_script(ACT)
        keys = [channel.dead_letters_key, channel.unacked_deaths_key]
        return int(script(keys=keys, args=[action, task_id or ""]))


def dead_letter_requeue(*, task_id: str | None = None) -> int:
    """Puts the dead letters (all, or the one of `task_id`) back at the tail of their queues; returns how many."""
    return _act("requeue", task_id)


def dead_letter_drop(*, task_id: str | None = None) -> int:
    """Deletes the dead letters (all, or the one of `task_id`); returns how many."""
    return _act("drop", task_id)
