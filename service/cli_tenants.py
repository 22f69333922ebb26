"""``warden tenant …`` and ``warden key …``: the admin API from the command line.

Quotas are set as ``NAME=VALUE`` pairs (``max_running=4``, ``daily_fuel=1e12``,
``stored_bytes=2GiB``, ``ceilings.memory_bytes=256MiB``, ``ceilings.languages=c,python``),
checked by the same model the API checks them with (``tenancy.quotas``).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel, ValidationError

from sandboxes.cli import fail, validation_text
from service.cli_remote import KeyOpt, UrlOpt, connect
from tenancy.models import KeyInfo, TenantCreate, TenantInfo, TenantUpdate
from tenancy.quotas import QuotaUpdate

tenants_app = typer.Typer(help="Create, list, show, set quotas of, disable tenants (admin key).",
                          no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys (rotate: create, switch, revoke).",
                       no_args_is_help=True)

TenantArg = Annotated[str, typer.Argument(metavar="TENANT", help="Tenant id, e.g. acme")]
QuotaArgs = Annotated[list[str] | None, typer.Argument(
    metavar="NAME=VALUE...", help="Quotas to set, e.g. max_running=4 ceilings.fuel=1e9")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def quota_update(pairs: list[str]) -> QuotaUpdate:
    """``NAME=VALUE`` pairs as a QuotaUpdate (one clear line for a bad pair)."""
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise fail(f"quota {pair!r} must look like NAME=VALUE")
        top, _, sub = name.partition(".")
        if top == "ceilings" and sub:
            parsed: Any = ([v for v in value.split(",") if v] if sub == "languages" else value)
            fields.setdefault("ceilings", {})[sub] = None if value == "all" else parsed
        else:
            fields[name] = value
    try:
        update: QuotaUpdate = QuotaUpdate.model_validate(fields)
        return update
    except ValidationError as exc:
        raise fail(validation_text(exc)) from None


def _print_json(found: BaseModel | Sequence[BaseModel]) -> None:
    items = "[" + ",".join(i.model_dump_json() for i in found) + "]" \
        if isinstance(found, Sequence) else found.model_dump_json(indent=2)
    sys.stdout.write(items + "\n")


def _show_tenant(info: TenantInfo, json: bool) -> None:
    if json:
        _print_json(info)
        return
    state = "disabled" if info.disabled else "active"
    typer.echo(f"{info.id}  {state}  {info.name}".rstrip())
    for name, value in info.quotas.model_dump().items():
        if name == "ceilings":
            for sub, ceiling in value.items():
                typer.echo(f"  ceilings.{sub} = {'all' if ceiling is None else ceiling}")
        else:
            typer.echo(f"  {name} = {value}")


def _show_key(info: KeyInfo) -> None:
    flags = " admin" if info.admin else ""
    state = f"revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else "live"
    typer.echo(f"{info.key_id}  {info.tenant}{flags}  {state}  {info.name}".rstrip())


# -- tenants ----------------------------------------------------------------------------------
@tenants_app.command("create")
def tenant_create(
    tenant: TenantArg, quotas: QuotaArgs = None,
    name: Annotated[str, typer.Option(help="Display name")] = "",
    json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Create a tenant (default quotas, except those given)."""
    update = quota_update(quotas or [])
    try:
        body = TenantCreate(id=tenant, name=name, quotas=update)
    except ValidationError as exc:
        raise fail(validation_text(exc)) from None
    with connect(url, "the new tenant", key) as client:
        info = client.create_tenant(body)
    _show_tenant(info, json)


@tenants_app.command("list")
def tenant_list(json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Every tenant, with its state."""
    with connect(url, key=key) as client:
        found = client.list_tenants()
    if json:
        _print_json(found)
        return
    for info in found:
        state = "disabled" if info.disabled else "active"
        typer.echo(f"{info.id}  {state}  {info.name}".rstrip())


@tenants_app.command("show")
def tenant_show(tenant: TenantArg, json: JsonOpt = False, url: UrlOpt = None,
                key: KeyOpt = None) -> None:
    """A tenant and all its quotas."""
    with connect(url, key=key) as client:
        info = client.get_tenant(tenant)
    _show_tenant(info, json)


@tenants_app.command("set-quota")
def tenant_set_quota(tenant: TenantArg, quotas: QuotaArgs = None, json: JsonOpt = False,
                     url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Change some of a tenant's quotas (the others stay)."""
    if not quotas:
        raise fail("give at least one NAME=VALUE (see `warden tenant show`)")
    with connect(url, "the quotas", key) as client:
        info = client.update_tenant(tenant, TenantUpdate(quotas=quota_update(quotas)))
    _show_tenant(info, json)


def _set_disabled(tenant: str, disabled: bool, url: str | None, key: str | None) -> None:
    with connect(url, "the change", key) as client:
        info = client.update_tenant(tenant, TenantUpdate(disabled=disabled))
    typer.echo(f"{info.id} {'disabled' if info.disabled else 'enabled'}")


@tenants_app.command("disable")
def tenant_disable(tenant: TenantArg, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Refuse every key of the tenant from the next request on (its jobs are kept)."""
    _set_disabled(tenant, True, url, key)


@tenants_app.command("enable")
def tenant_enable(tenant: TenantArg, url: UrlOpt = None, key: KeyOpt = None) -> None:
    """Let a disabled tenant's keys work again."""
    _set_disabled(tenant, False, url, key)


# -- keys -------------------------------------------------------------------------------------
@keys_app.command("create")
def key_create(
    tenant: Annotated[str | None, typer.Argument(
        metavar="[TENANT]", help="Tenant to create the key for (admin); default: your own")] = None,
    name: Annotated[str, typer.Option(help="What the key is for")] = "",
    admin: Annotated[bool, typer.Option("--admin", help="An admin key")] = False,
    json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Create a key and print it: it is shown this once, only its hash is stored."""
    with connect(url, "the new key", key) as client:
        created = client.create_key(tenant, name, admin)
    if json:
        _print_json(created)
        return
    typer.echo(created.secret)
    typer.echo(f"warden: key {created.key_id} for tenant {created.tenant}"
               f"{' (admin)' if created.admin else ''}: store it now, it is not shown again",
               err=True)


@keys_app.command("list")
def key_list(
    tenant: Annotated[str | None, typer.Option(help="A tenant's keys (admin)")] = None,
    every: Annotated[bool, typer.Option("--all", help="Every tenant's keys (admin)")] = False,
    json: JsonOpt = False, url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Keys (ids only, never secrets): your tenant's, one tenant's, or all."""
    with connect(url, key=key) as client:
        found = client.list_keys(tenant, every)
    if json:
        _print_json(found)
        return
    for info in found:
        _show_key(info)


@keys_app.command("revoke")
def key_revoke(
    key_id: Annotated[str, typer.Argument(metavar="KEY_ID", help="e.g. wdn_3f9a1c2b7e4d")],
    admin: Annotated[bool, typer.Option("--admin", help="Any tenant's key (admin)")] = False,
    url: UrlOpt = None, key: KeyOpt = None,
) -> None:
    """Revoke a key: every API process refuses it from the next request on."""
    with connect(url, "the revocation", key) as client:
        info = client.revoke_key(key_id, admin)
    typer.echo(f"{info.key_id} revoked")
