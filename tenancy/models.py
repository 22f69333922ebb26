"""The tenancy API's bodies: tenants, keys and callers, as the admin API, the CLI and the
dashboard exchange them."""

from __future__ import annotations

from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool

from sandboxes.schema import Timestamp
from tenancy.keys import KEY_ID_PATTERN
from tenancy.quotas import Quotas, QuotaUpdate

TENANT_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
MAX_NAME: Final = 200


def _unicode(value: str) -> str:
    """JSON may carry lone surrogates, which Redis (UTF-8) cannot store: a 422, not a 500."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate: not valid Unicode text") from None
    return value


Name = Annotated[str, AfterValidator(_unicode), Field(max_length=MAX_NAME)]


class TenantInfo(BaseModel):
    """A tenant as the admin API shows it."""

    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: str = ""
    disabled: bool = False
    created_at: Timestamp
    quotas: Quotas


class KeyInfo(BaseModel):
    """An API key as listings show it: never its secret."""

    key_id: str = Field(pattern=KEY_ID_PATTERN, description="Visible, non-secret id")
    tenant: str
    name: str = ""
    admin: bool = False
    created_at: Timestamp
    revoked_at: Timestamp | None = None


class CreatedKey(KeyInfo):
    """A new key: the only answer that carries its secret."""

    secret: str = Field(description="The API key: send as `Authorization: Bearer <key>`. "
                                    "Shown once; only a hash of it is stored")


class Caller(BaseModel):
    """Who a request comes from, once its key is verified."""

    tenant: str
    key_id: str
    admin: bool
    quotas: Quotas


class TenantCreate(BaseModel):
    """A new tenant: its id (lowercase letters, digits, '-'), a display name, and the
    quotas that differ from the defaults."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=TENANT_ID_PATTERN)
    name: Name = ""
    quotas: QuotaUpdate = Field(default_factory=QuotaUpdate)


class TenantUpdate(BaseModel):
    """A change to a tenant: any of its name, its disabled flag, some quotas."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = None
    disabled: StrictBool | None = None
    quotas: QuotaUpdate | None = None


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(default="", description="What the key is for")
    admin: StrictBool = Field(default=False, description="May use the admin API (/v1/admin/)")


class TenantList(BaseModel):
    tenants: list[TenantInfo]


class KeyList(BaseModel):
    keys: list[KeyInfo]
