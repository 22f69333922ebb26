"""Warden's Lua scripts and the keys they declare.

Redis's scripting contract: a script touches only keys passed in ``KEYS`` (Redis Cluster
routes a script by them, and managed Redis offerings refuse or mis-route one that reaches
elsewhere). Every Warden script is built with :func:`script`, which puts :data:`DECLARED`
first: ``key(name)`` returns a key name only if it was declared and stops the script
otherwise (fail closed: a caller that forgot a key finds out at once, in the suite, not in a
cluster), and ``declared(name)`` lets a script that read a name from the data (a tenant
from a ring, a job id from a due set) skip it when its caller did not know it yet.

The names a script builds are the ones its caller computes with the same helpers (each key
has one Python function); a script whose keys depend on data reads that data first, in a
plain command, and is told it again in ``KEYS`` (the optimistic pattern Redis documents).
:data:`SCRIPTS` lists every script by name, so the suite can check each one
(tests/test_script_keys.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

DECLARED: Final = """
local declared_keys = {}
for _, k in ipairs(KEYS) do declared_keys[k] = true end
local function declared(name) return declared_keys[name] == true end
local function key(name)
  if not declared_keys[name] then error('undeclared key ' .. tostring(name)) end
  return name
end
"""

SCRIPTS: Final[dict[str, str]] = {}


def script(name: str, body: str) -> str:
    """The source of a Warden script (:data:`DECLARED` first), recorded under ``name``."""
    source = DECLARED + body
    if SCRIPTS.setdefault(name, source) != source:
        raise ValueError(f"two scripts named {name!r}")
    return source


def unique(keys: Iterable[str]) -> list[str]:
    """``keys`` without repeats, in first-seen order (KEYS may name a key once)."""
    return list(dict.fromkeys(keys))


# Commands a script replays for its caller (REPLAY in workers/store.py: RQ's enqueue, the
# records written with it): each touches exactly one key, its first argument.
_ONE_KEY_COMMANDS: Final = frozenset({
    "SET", "DEL", "EXPIRE", "PEXPIRE", "PERSIST", "HSET", "HMSET", "HSETNX", "HDEL",
    "HINCRBY", "HINCRBYFLOAT", "SADD", "SREM", "RPUSH", "LPUSH", "LREM", "ZADD", "ZREM",
    "ZREMRANGEBYRANK", "ZREMRANGEBYSCORE", "INCRBY", "DECRBY",
})


def replayed_keys(commands: Iterable[tuple[Any, ...]]) -> list[str]:
    """The key each replayed command touches; ValueError for a command whose keys are not
    known (a new RQ release writing something new fails here, not in a cluster)."""
    keys: list[str] = []
    for command in commands:
        name = str(command[0]).upper()
        if name not in _ONE_KEY_COMMANDS or len(command) < 2 or (
                name == "DEL" and len(command) != 2):
            raise ValueError(f"a replayed {name} has no known key layout")
        raw = command[1]
        keys.append(raw.decode() if isinstance(raw, bytes) else str(raw))
    return keys
