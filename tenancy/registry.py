"""Tenants and their API keys, kept in Redis so every API process sees a change at once.

Keys (prefix ``warden:``): ``tenants`` set of tenant ids; ``tenant:{id}`` hash (name,
created_at, disabled, quotas as JSON); ``tenant:{id}:keys`` set of key ids; ``apikey:{key_id}``
hash (tenant, digest, admin, name, created_at, revoked_at). Nothing is cached
in a process: a revoked key or a disabled tenant is refused by the very next request.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Any, Final

import redis

from tenancy.keys import NewKey, key_from_secret, new_key
from tenancy.limits import GCRA, rate_key, rejection_keys
from tenancy.models import TENANT_ID_PATTERN, Caller, CreatedKey, KeyInfo, TenantInfo
from tenancy.quotas import Quotas
from workers.lua import script

PREFIX: Final = "warden:"
TENANTS: Final = PREFIX + "tenants"
_TENANT_ID: Final = re.compile(TENANT_ID_PATTERN)

# KEYS[1] = apikey:{id}, then the keys of its tenant (auth_keys) ARGV: the presented
# key's digest, rate policy ("reads" or "submissions"), "1" to charge one request to it
# ("0": only read its state), UTC day, usage retention (s). One round trip: the key's
# record, its tenant's state and, for a key whose digest matches (so a forged secret cannot
# spend a tenant's budget), its rate. A key of another tenant than the one declared answers
# {tenant} (its caller asks again with that tenant's keys). Lua compares interned strings by
# identity, not byte by byte; Python compares again in constant time.
AUTH_SCRIPT: Final = script("auth", GCRA + """
local k = redis.call('HMGET', KEYS[1], 'tenant', 'digest', 'admin', 'revoked_at')
if not k[1] then return false end
local tenant_key = 'warden:tenant:' .. k[1]
if not declared(tenant_key) then return {k[1]} end
local t = redis.call('HMGET', tenant_key, 'disabled', 'quotas')
local reply = {k[1], k[2], k[3] or '0', k[4] or '', t[1] or '1', t[2] or '', '1', '0', '0', '0'}
if k[2] ~= ARGV[1] or (k[4] and k[4] ~= '') or t[1] ~= '0' or not t[2] then return reply end
local q = cjson.decode(t[2])
local per_minute, burst = q['reads_per_minute'], q['read_burst']
if ARGV[2] == 'submissions' then
  per_minute, burst = q['submissions_per_minute'], q['submission_burst']
end
local cost = 0
if ARGV[3] == '1' then cost = 1 end
local ok, remaining, reset, retry = gcra(key('warden:rate:' .. k[1] .. ':' .. ARGV[2]),
                                        60 / per_minute, burst, cost, cost > 0)
if not ok then count_rejection(k[1], ARGV[2] .. '_per_minute', ARGV[4], tonumber(ARGV[5])) end
reply[7], reply[8], reply[9], reply[10] = ok and '1' or '0', tostring(remaining),
                                          tostring(reset), tostring(retry)
return reply
""")


def auth_keys(key_id: str, tenant: str, policy: str, day: str) -> list[str]:
    """``AUTH_SCRIPT``'s KEYS for a key believed to be ``tenant``'s."""
    return [api_key_key(key_id), tenant_key(tenant), rate_key(tenant, policy),
            *rejection_keys(tenant, day)]


def auth_reply_tenant(reply: Any) -> str | None:
    """The tenant ``AUTH_SCRIPT`` answered with when the declared one was not the key's."""
    if isinstance(reply, list) and len(reply) == 1:
        value = reply[0]
        return value.decode() if isinstance(value, bytes) else str(value)
    return None


def tenant_key(tenant: str) -> str:
    return f"{PREFIX}tenant:{tenant}"


def tenant_keys_key(tenant: str) -> str:
    return f"{PREFIX}tenant:{tenant}:keys"


def api_key_key(key_id: str) -> str:
    return f"{PREFIX}apikey:{key_id}"


class TenantExistsError(Exception):
    pass


class UnknownTenantError(Exception):
    pass


def valid_tenant_id(tenant: str) -> bool:
    return bool(_TENANT_ID.fullmatch(tenant))


def _time(raw: bytes | None) -> datetime | None:
    return None if not raw else datetime.fromtimestamp(float(raw), UTC)


def _text(fields: dict[bytes, bytes], name: str) -> str:
    return fields.get(name.encode(), b"").decode()


class TenantRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self.r = client

    # -- tenants -------------------------------------------------------------------------
    def create_tenant(self, tenant: str, name: str = "",
                      quotas: Quotas | None = None) -> TenantInfo:
        """A new tenant (TenantExistsError if the id is taken: ids are never reused)."""
        quotas = quotas or Quotas()
        now = time.time()
        if not self.r.sadd(TENANTS, tenant):
            raise TenantExistsError(tenant)
        self.r.hset(tenant_key(tenant), mapping={
            "name": name, "created_at": repr(now), "disabled": "0",
            "quotas": quotas.model_dump_json(),
        })
        return TenantInfo(id=tenant, name=name, created_at=datetime.fromtimestamp(now, UTC),
                          quotas=quotas)

    def get_tenant(self, tenant: str) -> TenantInfo | None:
        fields: dict[bytes, bytes] = self.r.hgetall(tenant_key(tenant))  # type: ignore[assignment]
        if not fields:
            return None
        return TenantInfo(
            id=tenant, name=_text(fields, "name"), disabled=fields.get(b"disabled") == b"1",
            created_at=_time(fields.get(b"created_at")) or datetime.now(UTC),
            quotas=Quotas.model_validate_json(fields[b"quotas"]),
        )

    def list_tenants(self) -> list[TenantInfo]:
        ids = sorted(m.decode() for m in self.r.smembers(TENANTS))  # type: ignore[union-attr]
        found = (self.get_tenant(tenant) for tenant in ids)
        return [t for t in found if t is not None]

    def _require(self, tenant: str) -> None:
        if not self.r.exists(tenant_key(tenant)):
            raise UnknownTenantError(tenant)

    def set_quotas(self, tenant: str, quotas: Quotas) -> None:
        self._require(tenant)
        self.r.hset(tenant_key(tenant), "quotas", quotas.model_dump_json())

    def set_disabled(self, tenant: str, disabled: bool) -> None:
        self._require(tenant)
        self.r.hset(tenant_key(tenant), "disabled", "1" if disabled else "0")

    def set_name(self, tenant: str, name: str) -> None:
        self._require(tenant)
        self.r.hset(tenant_key(tenant), "name", name)

    # -- keys ----------------------------------------------------------------------------
    def create_key(self, tenant: str, name: str = "", admin: bool = False,
                   secret: str | None = None) -> CreatedKey:
        """A new key (``secret``: register this well-formed key instead of a random one)."""
        self._require(tenant)
        key: NewKey = new_key() if secret is None else key_from_secret(secret)
        now = time.time()
        pipe = self.r.pipeline(transaction=True)
        pipe.hset(api_key_key(key.key_id), mapping={
            "tenant": tenant, "digest": key.digest, "admin": "1" if admin else "0",
            "name": name, "created_at": repr(now),
        })
        pipe.sadd(tenant_keys_key(tenant), key.key_id)
        pipe.execute()
        return CreatedKey(key_id=key.key_id, tenant=tenant, name=name, admin=admin,
                          created_at=datetime.fromtimestamp(now, UTC), secret=key.secret)

    def get_key(self, key_id: str) -> KeyInfo | None:
        fields: dict[bytes, bytes] = self.r.hgetall(api_key_key(key_id))  # type: ignore[assignment]
        if not fields:
            return None
        return KeyInfo(
            key_id=key_id, tenant=_text(fields, "tenant"), name=_text(fields, "name"),
            admin=fields.get(b"admin") == b"1",
            created_at=_time(fields.get(b"created_at")) or datetime.now(UTC),
            revoked_at=_time(fields.get(b"revoked_at")),
        )

    def list_keys(self, tenant: str | None = None) -> list[KeyInfo]:
        tenants = [tenant] if tenant else sorted(
            m.decode() for m in self.r.smembers(TENANTS))  # type: ignore[union-attr]
        keys: list[KeyInfo] = []
        for t in tenants:
            ids = sorted(m.decode() for m in self.r.smembers(tenant_keys_key(t)))  # type: ignore[union-attr]
            keys += [k for k in (self.get_key(i) for i in ids) if k is not None]
        return keys

    def revoke_key(self, key_id: str) -> KeyInfo | None:
        """Revoke at once (idempotent: the first revocation's time stays); None if there
        is no such key."""
        if not self.r.exists(api_key_key(key_id)):  # keys are never deleted: no race
            return None
        self.r.hsetnx(api_key_key(key_id), "revoked_at", repr(time.time()))
        return self.get_key(key_id)

    def has_tenants(self) -> bool:
        return bool(self.r.scard(TENANTS))


def caller_from_auth_reply(reply: Any, key_id: str) -> tuple[Caller, str, str | None] | None:
    """``AUTH_SCRIPT``'s reply as (caller, stored digest, refusal), or None (no such key).
    ``refusal``: "revoked" (the key), "disabled" (its tenant, or a tenant that is gone).
    The rate part of the reply is ``rate_reply``'s."""
    if not reply:
        return None
    tenant, stored, admin, revoked, disabled, quotas = (
        v.decode() if isinstance(v, bytes) else str(v) for v in reply[:6])
    refusal = "revoked" if revoked else ("disabled" if disabled != "0" or not quotas else None)
    caller = Caller(tenant=tenant, key_id=key_id, admin=admin == "1",
                    quotas=Quotas.model_validate_json(quotas) if quotas else Quotas())
    return caller, stored, refusal
