"""The quick start's first key: on a store with no tenant at all, ``warden up`` creates the
``default`` tenant and an admin key, prints it once and keeps it in the data dir (mode
0600), where ``warden submit`` and the other client commands find it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Final

from tenancy.models import CreatedKey
from tenancy.registry import TenantExistsError, TenantRegistry
from workers.store import DEFAULT_TENANT

KEY_FILE: Final = "api-key"


def key_file(data_dir: Path) -> Path:
    return Path(data_dir).expanduser() / KEY_FILE


def ensure_first_key(registry: TenantRegistry, data_dir: Path) -> CreatedKey | None:
    """The new admin key if this call created the first tenant, else None (some tenant
    exists already: nothing is created, whoever configured it keeps their keys)."""
    if registry.has_tenants():
        return None
    try:
        registry.create_tenant(DEFAULT_TENANT, "Default tenant (created by warden up)")
    except TenantExistsError:  # another process won the race
        return None
    created = registry.create_key(DEFAULT_TENANT, "first admin key (warden up)", admin=True)
    write_key_file(key_file(data_dir), created.secret)
    return created


def ensure_bootstrap_key(registry: TenantRegistry, secret: str) -> bool:
    """On a store with no tenant, the ``default`` tenant with ``secret`` as its admin key
    (Helm: WARDEN_BOOTSTRAP_ADMIN_KEY from a Secret, so no key is ever printed or stored
    on a pod). True if created; a store with tenants is left as it is."""
    if registry.has_tenants():
        return False
    try:
        registry.create_tenant(DEFAULT_TENANT, "Default tenant (bootstrap key)")
    except TenantExistsError:  # another API pod won the race
        return False
    registry.create_key(DEFAULT_TENANT, "bootstrap admin key", admin=True, secret=secret)
    return True


def write_key_file(path: Path, secret: str) -> None:
    """Write the key readable by its owner only (created 0600, never widened)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")


def read_key_file(data_dir: Path) -> str | None:
    try:
        text = key_file(data_dir).read_text().strip()
    except OSError:
        return None
    return text or None
