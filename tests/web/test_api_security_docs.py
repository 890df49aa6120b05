"""The OpenAPI document: the credentials each API operation accepts, and its tags."""

from __future__ import annotations

import httpx
from tests.web.conftest import ServeApp

from certwatch.web.api_auth import CSRF_HEADER
from certwatch.web.auth import SESSION_COOKIE

WRITE_METHODS = {"post", "patch", "delete", "put"}


def test_openapi_declares_security_schemes(serve_app: ServeApp) -> None:
    document = httpx.get(f"{serve_app()}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]

    assert schemes["apiToken"]["type"] == "http"
    assert schemes["apiToken"]["scheme"] == "bearer"
    assert "Authorization: Bearer" in schemes["apiToken"]["description"]
    assert schemes["sessionCookie"] == {
        **schemes["sessionCookie"],
        "type": "apiKey",
        "in": "cookie",
        "name": SESSION_COOKIE,
    }
    assert schemes["csrfToken"] == {
        **schemes["csrfToken"],
        "type": "apiKey",
        "in": "header",
        "name": CSRF_HEADER,
    }


def test_openapi_operations_require_credentials(serve_app: ServeApp) -> None:
    document = httpx.get(f"{serve_app()}/openapi.json").json()
    api_operations = [
        (path, method, operation)
        for path, operations in document["paths"].items()
        if path.startswith("/api/")
        for method, operation in operations.items()
    ]

    assert api_operations
    for path, method, operation in api_operations:
        session = {"sessionCookie": []}
        if method in WRITE_METHODS:
            session["csrfToken"] = []
        assert operation["security"] == [{"apiToken": []}, session], (method, path)
    assert "security" not in document["paths"]["/healthz"]["get"]


def test_openapi_lists_each_operation_once(serve_app: ServeApp) -> None:
    document = httpx.get(f"{serve_app()}/openapi.json").json()
    observations = document["paths"]["/api/endpoints/{endpoint_id}/observations"]

    assert observations["get"]["tags"] == ["endpoints"]
    for operations in document["paths"].values():
        for operation in operations.values():
            assert len(operation.get("tags", [])) <= 1, operation["summary"]
