"""`GET /healthz`: whether this process can serve, for load balancers.

The check reads the monitor's heartbeat, so it proves that the database
returns a result for a query on the current schema. A monitor that stopped cycling
does not fail the check, because the pages and the API still work; its
last cycle time is in the response and in `/metrics` for alerting.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from certwatch import __version__
from certwatch.web.dependencies import Context
from certwatch.web.heartbeat import last_cycle_completed

router = APIRouter(tags=["monitoring"])


class HealthReport(BaseModel):
    """The health of this certwatch process.

    `last_cycle_at` is `None` before the monitor completed its first cycle
    and whenever the database cannot be read.
    """

    status: Literal["ok", "unavailable"]
    database: Literal["ok", "unreachable"]
    last_cycle_at: datetime | None
    version: str


@router.get(
    "/healthz",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "Database unreachable."}},
)
@router.head("/healthz", include_in_schema=False)
def healthz(context: Context) -> JSONResponse:
    """Return 200 when the database can be queried, 503 when it cannot."""
    try:
        with context.sessions() as session:
            last_cycle_at = last_cycle_completed(session)
    except SQLAlchemyError as exc:
        context.failures.failed("/healthz", exc)
        report = HealthReport(
            status="unavailable",
            database="unreachable",
            last_cycle_at=None,
            version=__version__,
        )
        return JSONResponse(report.model_dump(mode="json"), status_code=503)
    report = HealthReport(
        status="ok", database="ok", last_cycle_at=last_cycle_at, version=__version__
    )
    return JSONResponse(report.model_dump(mode="json"))
