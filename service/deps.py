"""Typed dependencies for routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.state import AppState


async def get_state(request: Request) -> AppState:
    # async: FastAPI runs a plain ``def`` dependency in its threadpool (a hop per request)
    state: AppState = request.app.state.warden
    return state


StateDep = Annotated[AppState, Depends(get_state)]
