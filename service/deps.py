"""Typed dependencies for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.state import AppState


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.warden
    return state


StateDep = Annotated[AppState, Depends(get_state)]
