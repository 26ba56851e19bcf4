"""FastAPI dependencies of the routes that go through FastAPI's dependency solving.

The ``/v1/jobs`` routes are ``DirectRoute``s (api/direct_route.py): no dependency
solving on the hot path; they read ``request.app.state`` themselves. Every other route
takes what it needs from here.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from groundwork_app.api.services import Services


def get_services(request: Request) -> Services:
    """The process-wide resources the app's lifespan opened (api/services.py)."""
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]
