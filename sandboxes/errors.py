"""Errors the sandbox reports as a RunResult status rather than a crash."""

from __future__ import annotations

from sandboxes.schema import RunStatus


class SandboxError(Exception):
    """A run that cannot start; ``status`` says why (invalid module, link error, ...)."""

    def __init__(self, status: RunStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
