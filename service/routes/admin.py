"""/v1/admin: tenants and their keys (admin keys only); /v1/keys: a tenant's own keys.

A tenant can rotate its keys itself (create a new one, switch, revoke the old); only an
admin creates tenants, changes quotas, disables a tenant or makes admin keys.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from sandboxes.schema import error_message
from service.auth import AdminDep, CallerDep
from service.deps import StateDep
from service.http_errors import Problem
from service.openapi import problem_responses
from service.state import AppState
from tenancy.keys import KEY_ID_PATTERN
from tenancy.models import (
    TENANT_ID_PATTERN,
    CreatedKey,
    KeyCreate,
    KeyInfo,
    KeyList,
    TenantCreate,
    TenantInfo,
    TenantList,
    TenantUpdate,
)
from tenancy.quotas import Quotas, QuotaUpdate
from tenancy.registry import TenantExistsError

admin = APIRouter(prefix="/v1/admin", tags=["admin"])
keys = APIRouter(prefix="/v1/keys", tags=["keys"])


TenantPath = Annotated[str, Path(pattern=TENANT_ID_PATTERN)]
KeyPath = Annotated[str, Path(pattern=KEY_ID_PATTERN)]


def _no_tenant(tenant: str) -> Problem:
    return Problem(404, "tenant-not-found", "No such tenant", f"tenant {tenant!r} does not exist")


def _no_key(key_id: str) -> Problem:
    return Problem(404, "key-not-found", "No such key", f"key {key_id!r} does not exist")


def _quotas(update: QuotaUpdate, base: Quotas) -> Quotas:
    try:
        return update.apply(base)
    except ValidationError as exc:
        detail = "; ".join(
            f"quotas.{'.'.join(str(p) for p in e['loc'])}: {error_message(e)}"
            for e in exc.errors())
        raise Problem(422, "validation-error", "The request is invalid", detail) from None


async def _tenant(state: AppState, tenant: str) -> TenantInfo:
    info = await run_in_threadpool(state.tenants.get_tenant, tenant)
    if info is None:
        raise _no_tenant(tenant)
    return info


@admin.post("/tenants", status_code=201, responses=problem_responses(409))
async def create_tenant(body: TenantCreate, state: StateDep, _: AdminDep) -> TenantInfo:
    """A new tenant with default quotas, except those given."""
    quotas = _quotas(body.quotas, Quotas())
    try:
        info = await run_in_threadpool(state.tenants.create_tenant, body.id, body.name, quotas)
    except TenantExistsError:
        raise Problem(409, "tenant-exists", "The tenant exists",
                      f"tenant {body.id!r} already exists") from None
    return info


@admin.get("/tenants")
async def list_tenants(state: StateDep, _: AdminDep) -> TenantList:
    return TenantList(tenants=await run_in_threadpool(state.tenants.list_tenants))


@admin.get("/tenants/{tenant}")
async def get_tenant(tenant: TenantPath, state: StateDep, _: AdminDep) -> TenantInfo:
    return await _tenant(state, tenant)


@admin.patch("/tenants/{tenant}")
async def update_tenant(tenant: TenantPath, body: TenantUpdate, state: StateDep,
                        _: AdminDep) -> TenantInfo:
    """Rename, disable or enable (at once, on every API process), or change quotas."""
    info = await _tenant(state, tenant)
    registry = state.tenants
    if body.quotas is not None:
        quotas = _quotas(body.quotas, info.quotas)
        await run_in_threadpool(registry.set_quotas, tenant, quotas)
    if body.disabled is not None:
        await run_in_threadpool(registry.set_disabled, tenant, body.disabled)
    if body.name is not None:
        await run_in_threadpool(registry.set_name, tenant, body.name)
    return await _tenant(state, tenant)


@admin.post("/tenants/{tenant}/keys", status_code=201)
async def create_tenant_key(tenant: TenantPath, body: KeyCreate, state: StateDep,
                            _: AdminDep) -> CreatedKey:
    """A new key for the tenant; its secret is in this answer only."""
    await _tenant(state, tenant)
    return await run_in_threadpool(state.tenants.create_key, tenant, body.name, body.admin)


@admin.get("/tenants/{tenant}/keys")
async def list_tenant_keys(tenant: TenantPath, state: StateDep, _: AdminDep) -> KeyList:
    await _tenant(state, tenant)
    return KeyList(keys=await run_in_threadpool(state.tenants.list_keys, tenant))


@admin.get("/keys")
async def list_all_keys(state: StateDep, _: AdminDep) -> KeyList:
    return KeyList(keys=await run_in_threadpool(state.tenants.list_keys, None))


@admin.delete("/keys/{key_id}")
async def revoke_any_key(key_id: KeyPath, state: StateDep, _: AdminDep) -> KeyInfo:
    """Revoke a key of any tenant: refused from the next request on."""
    info = await run_in_threadpool(state.tenants.revoke_key, key_id)
    if info is None:
        raise _no_key(key_id)
    return info


# -- a tenant's own keys ---------------------------------------------------------------------
@keys.get("")
async def list_own_keys(state: StateDep, caller: CallerDep) -> KeyList:
    return KeyList(keys=await run_in_threadpool(state.tenants.list_keys, caller.tenant))


@keys.post("", status_code=201)
async def create_own_key(body: KeyCreate, state: StateDep, caller: CallerDep) -> CreatedKey:
    """Another key for your tenant (rotation: create, switch, revoke the old). Only an
    admin key makes admin keys."""
    if body.admin and not caller.admin:
        raise Problem(403, "admin-only", "This needs an admin key",
                      "only an admin key can create an admin key")
    return await run_in_threadpool(state.tenants.create_key, caller.tenant, body.name,
                                   body.admin)


@keys.delete("/{key_id}")
async def revoke_own_key(key_id: KeyPath, state: StateDep, caller: CallerDep) -> KeyInfo:
    """Revoke one of your tenant's keys (another tenant's key is a 404)."""
    info = await run_in_threadpool(state.tenants.get_key, key_id)
    if info is None or info.tenant != caller.tenant:
        raise _no_key(key_id)
    revoked = await run_in_threadpool(state.tenants.revoke_key, key_id)
    assert revoked is not None
    return revoked
