"""A tenant's quotas: the one definition the API, the workers, the CLI and the dashboard use.

Each quota has a default (what a new tenant gets) and bounds the admin may set it within.
Per-job ceilings sit under Warden's hard maximums (``LIMIT_BOUNDS``): a job asking for more
than its tenant's ceiling is refused at submit (403: waiting will not help).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, model_validator
from pydantic.fields import FieldInfo

from sandboxes.languages.registry import LANGUAGES
from sandboxes.schema import LIMIT_BOUNDS, Bytes, Seconds, not_bool

GiB: Final = 1024**3
Count = Annotated[int, BeforeValidator(not_bool)]


def _ceiling(name: str) -> Any:
    bound = LIMIT_BOUNDS[name]
    return Field(default=bound.maximum, ge=bound.minimum, le=bound.maximum,
                 description=f"Largest `limits.{name}` one job may ask for")


_CAPPED: Final = ("fuel", "wall_time_s", "compile_time_s", "memory_bytes", "stack_bytes",
                   "stdout_bytes", "stderr_bytes")


class JobCeilings(BaseModel):
    """The most one job of the tenant may ask for; each at most Warden's hard maximum."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fuel: Count = _ceiling("fuel")
    wall_time_s: Seconds = _ceiling("wall_time_s")
    compile_time_s: Seconds = _ceiling("compile_time_s")
    memory_bytes: Bytes = _ceiling("memory_bytes")
    stack_bytes: Bytes = _ceiling("stack_bytes")
    stdout_bytes: Bytes = _ceiling("stdout_bytes")
    stderr_bytes: Bytes = _ceiling("stderr_bytes")
    languages: list[Annotated[str, Field(json_schema_extra={"enum": list(LANGUAGES)})]] | None = (
        Field(default=None, description="Language ids the tenant may submit source in "
                                        "(null: all)"))

    @model_validator(mode="after")
    def _known_languages(self) -> JobCeilings:
        unknown = sorted(set(self.languages or ()) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"unknown language(s) {', '.join(unknown)}; "
                             f"known: {', '.join(LANGUAGES)}")
        return self

    def job_limits(self) -> dict[str, float]:
        """Each capped ``Limits`` field and its ceiling."""
        return {name: getattr(self, name) for name in _CAPPED}


class Quotas(BaseModel):
    """Rates, concurrency, budgets and ceilings of one tenant. Counters live in Redis, so
    every quota holds across all API processes and workers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    submissions_per_minute: Count = Field(
        default=600, ge=1, le=1_000_000, description="Jobs submitted per minute, sustained")
    submission_burst: Count = Field(
        default=100, ge=1, le=1_000_000, description="Jobs that may be submitted at once "
        "(the bucket a rate refills)")
    reads_per_minute: Count = Field(
        default=12_000, ge=1, le=10_000_000, description="Reads (status polling, listing) "
        "per minute: generous, so a client polling every 0.1 s is never cut off")
    read_burst: Count = Field(default=1_000, ge=1, le=10_000_000)
    max_running: Count = Field(default=16, ge=1, le=100_000,
                             description="Jobs running at once")
    max_queued: Count = Field(default=2_000, ge=1, le=1_000_000,
                            description="Jobs waiting in the queue at once")
    daily_fuel: Count = Field(
        default=10**14, ge=0, le=10**15, description="Fuel per UTC day: each job reserves "
        "its fuel limit at submit and is settled to what it used when it ends")
    stored_bytes: Bytes = Field(
        default=4 * GiB, ge=0, le=1024 * GiB, description="Bytes of inputs (modules, "
        "source, stdin, files) the tenant's unexpired jobs keep in the store")
    weight: Count = Field(default=1, ge=1, le=100,
                        description="Share of the workers when tenants compete: a tenant of "
                                    "weight 2 is given two jobs for each one of weight 1")
    ceilings: JobCeilings = Field(default_factory=JobCeilings)


def _partial(model: type[BaseModel], name: str, doc: str, **overrides: Any) -> Any:
    """``model`` with every field optional (None: unchanged) and its bounds kept, so the
    published schema states every rule the update is checked against."""
    fields: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        if field_name in overrides:
            fields[field_name] = overrides[field_name]
            continue
        optional = FieldInfo.merge_field_infos(info, default=None)
        optional.default_factory = None
        fields[field_name] = (Optional[info.annotation], optional)  # noqa: UP045 - a runtime type
    return create_model(name, __doc__=doc, __config__=ConfigDict(extra="forbid", frozen=True),
                        **fields)


CeilingsUpdate = _partial(JobCeilings, "CeilingsUpdate", "Some per-job ceilings to change.")
_QuotaFields = _partial(Quotas, "QuotaFields", "", ceilings=(CeilingsUpdate | None, None))


class QuotaUpdate(_QuotaFields):  # type: ignore[misc,valid-type]
    """A partial change of a tenant's quotas (``warden tenant set-quota``, PATCH): the
    fields given change, the others stay."""

    def apply(self, quotas: Quotas) -> Quotas:
        """``quotas`` with these changes, validated as a whole (ValidationError if not)."""
        changes = self.model_dump(exclude_none=True)
        if "ceilings" in changes:
            changes["ceilings"] = {**quotas.ceilings.model_dump(), **changes["ceilings"]}
        return Quotas.model_validate({**quotas.model_dump(), **changes})
