"""`GET /metrics`: the Prometheus exposition, for a bearer token or loopback only.

With `CERTWATCH_METRICS_TOKEN` set, every request must send
`Authorization: Bearer TOKEN`. Without it, only clients on this machine
are served. A request that passed through a proxy is not treated as local,
because a reverse proxy on the same machine connects from loopback on
behalf of anyone.
"""

from __future__ import annotations

import hmac
import ipaddress

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client.exposition import choose_encoder

from certwatch.web.collector import SnapshotCollector, read_snapshot
from certwatch.web.dependencies import Context
from certwatch.web.settings import TOKEN_VARIABLE

router = APIRouter(tags=["monitoring"])

# Headers that proxies add; their presence means the connecting client is
# a proxy rather than the requester.
PROXY_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        401: {"description": "A token is configured and the request lacks it."},
        403: {"description": "No token is configured and the client is remote."},
        503: {"description": "The inventory database cannot be read."},
    },
)
def metrics(request: Request, context: Context) -> Response:
    """Prometheus metrics of every deployment, endpoint and of the monitor."""
    refusal = access_refusal(request, context.settings.metrics_token)
    if refusal is not None:
        return refusal

    with context.sessions() as session:
        snapshot = read_snapshot(session, now=context.now_fn())
    encoder, content_type = choose_encoder(request.headers.get("accept", ""))
    return Response(encoder(SnapshotCollector(snapshot)), media_type=content_type)


def access_refusal(request: Request, token: str | None) -> Response | None:
    """Return the error response for a request that may not read the metrics."""
    if token is not None:
        if _bearer_token_matches(request.headers.get("authorization"), token):
            return None
        return PlainTextResponse(
            "Missing or invalid bearer token: send 'Authorization: Bearer TOKEN' "
            f"with the token set in {TOKEN_VARIABLE}.\n",
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="certwatch metrics"'},
        )
    if is_local_request(request):
        return None
    return PlainTextResponse(
        "The metrics are served only to clients on this machine: set "
        f"{TOKEN_VARIABLE} on the server and send 'Authorization: Bearer TOKEN' "
        "to read them from elsewhere.\n",
        status_code=403,
    )


def _bearer_token_matches(header: str | None, token: str) -> bool:
    if header is None:
        return False
    scheme, _, credentials = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    # compare_digest takes as long for a wrong token as for a right one, so
    # response times tell nothing about how much of a guess was right.
    return hmac.compare_digest(credentials.strip().encode(), token.encode())


def is_local_request(request: Request) -> bool:
    """Tell whether the client connected from loopback, not through a proxy."""
    if any(name in request.headers for name in PROXY_HEADERS):
        return False
    if request.client is None:
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback
