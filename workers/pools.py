"""Worker pools: which workers may take a job, decided by what the job needs of the host.

A worker with no user namespaces (a locked-down Kubernetes pod) can run every module and
every language whose compiler or interpreter runs inside the sandbox, but not a compiler
that needs the native ``bwrap`` jail (Rust). So each job belongs to a pool: ``sandbox``
(the default) or ``jail``. Each pool has its own tenant ring (ready set, passes, virtual
time, doorbell) and its own RQ queues (``<queue>.<tenant>`` and ``<queue>-jail.<tenant>``),
so a locked-down worker never takes a job it cannot run and a job needing the jail never
waits behind a worker that cannot serve it. A worker whose jail works serves both pools,
the jail's first (only such workers can take those jobs).

The sandbox pool keeps the key names Warden had before pools (``warden:ready``...), so jobs
queued by an older release are still taken.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Final

from sandboxes.languages.registry import LANGUAGES
from sandboxes.schema import JobSpec


class Pool(StrEnum):
    SANDBOX = "sandbox"  # modules, and source compiled or interpreted inside the sandbox
    JAIL = "jail"  # source whose compiler runs natively in the bwrap jail


JAIL_SUFFIX: Final = "-jail"


def pool_of(spec: JobSpec) -> Pool:
    """The pool of the workers that can run ``spec``."""
    if spec.language is None:
        return Pool.SANDBOX
    language = LANGUAGES.get(spec.language)
    if language is not None and language.toolchain.jailed:
        return Pool.JAIL
    return Pool.SANDBOX


def pool_queue_base(base: str, pool: Pool) -> str:
    """The base name of a pool's tenant queues (``<base>.<tenant>`` for the sandbox)."""
    return base if pool is Pool.SANDBOX else base + JAIL_SUFFIX


def served_pools(languages: Iterable[str]) -> tuple[Pool, ...]:
    """The pools a worker serving these source ``languages`` takes from, in order."""
    jailed = any(LANGUAGES[lang].toolchain.jailed for lang in languages if lang in LANGUAGES)
    return (Pool.JAIL, Pool.SANDBOX) if jailed else (Pool.SANDBOX,)


def pool_key(name: str, pool: Pool) -> str:
    """A pool's scheduling key (``warden:ready``, ``warden:ready:jail``, ...)."""
    return f"warden:{name}" if pool is Pool.SANDBOX else f"warden:{name}:{pool.value}"


# Lua twin of pool_key (used by every script that joins a tenant to a ring).
POOL_KEY: Final = """
local function pool_key(name, pool)
  if not pool or pool == '' or pool == 'sandbox' then return 'warden:' .. name end
  return 'warden:' .. name .. ':' .. pool
end
"""
