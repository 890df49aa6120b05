"""The OpenAPI documentation page `/docs`, served without any CDN.

Swagger UI's script, styles and icon come from the `swagger-ui-py`
package (version 25.7 bundles Swagger UI 5, which reads OpenAPI 3.1 as
FastAPI writes it), so the page works on a network without internet
access.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse


def _swagger_files() -> Path:
    """Return the folder of Swagger UI's files in the installed package.

    The package is located, not imported: its own code adapts Swagger UI
    to other web frameworks, which certwatch does not need.
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or spec.origin is None:
        raise ImportError(
            "The swagger-ui-py package is missing: reinstall certwatch, which "
            "depends on it."
        )
    return Path(spec.origin).with_name("static")


SWAGGER_FILES = _swagger_files()
ASSET_PREFIX = "/docs/assets"
# The only files the page loads, with their media types.
ASSETS = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "favicon-32x32.png": "image/png",
}
# The files change only with the package, so a day of caching is safe.
ASSET_CACHE = "public, max-age=86400"

router = APIRouter(include_in_schema=False)


@router.get("/docs", response_class=HTMLResponse)
def docs_page() -> HTMLResponse:
    """Return the Swagger UI page for `/openapi.json`."""
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title="certwatch API",
        swagger_js_url=f"{ASSET_PREFIX}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSET_PREFIX}/swagger-ui.css",
        swagger_favicon_url=f"{ASSET_PREFIX}/favicon-32x32.png",
    )


@router.get(ASSET_PREFIX + "/{name}")
def docs_asset(name: str) -> FileResponse:
    """Return one of the files the Swagger UI page loads."""
    media_type = ASSETS.get(name)
    if media_type is None:
        raise HTTPException(404, "Not Found")
    return FileResponse(
        SWAGGER_FILES / name,
        media_type=media_type,
        headers={"Cache-Control": ASSET_CACHE},
    )
