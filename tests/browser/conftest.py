"""Fixtures for the browser tests: the real app, a local TLS server and chromium.

The app runs with uvicorn on 127.0.0.1, on a port the system picks, over a
fresh SQLite store, without the monitor. It reads the real clock, because
the add-endpoints page probes the local TLS server while the test waits,
and the certificate's not_after is set from the same clock.

Playwright drives Debian's chromium at `/usr/bin/chromium`; `.ci/run`
installs it. Playwright's own browser download is not used, so the tests
skip, with the reason, where that binary is missing.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    ViewportSize,
    sync_playwright,
)
from sqlalchemy.orm import Session, sessionmaker
from tests.certs import Issued, make_intermediate, make_leaf, make_root
from tests.servers import Chain, LocalServer
from tests.store.conftest import sqlite_template  # noqa: F401

from certwatch.store.database import create_store_engine, session_factory
from certwatch.web.app import create_app
from certwatch.web.server import WebServer
from certwatch.web.settings import WebSettings

CHROMIUM = Path("/usr/bin/chromium")
# Headless without a sandbox (CI runs as root), and without the background
# services that would reach Google's hosts: updates, sync, field trials.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS_VARIABLE = "CERTWATCH_TEST_ARTIFACTS"
REPOSITORY = Path(__file__).resolve().parents[2]

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}

DAYS_LEFT = 20
"""Whole days left on the local TLS server's certificate while the tests run."""
LIFETIME = timedelta(days=90)


@dataclass(frozen=True)
class Site:
    """The served app: its base URL and the store behind it."""

    url: str
    sessions: sessionmaker[Session]


@dataclass(frozen=True)
class TlsEndpoint:
    """A local TLS server and the certificate it serves.

    `target` is what a user types to watch it: `127.0.0.1:PORT`.
    """

    server: LocalServer
    leaf: Issued

    @property
    def target(self) -> str:
        return f"{self.server.host}:{self.server.port}"


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Debian's chromium under Playwright, shared by the browser tests.

    The scope ends with this folder. While Playwright's synchronous API
    (1.65) is started, its event loop counts as running in this thread, so
    the asyncio tests of other folders could not run theirs.
    """
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get install chromium) to run the browser tests."
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS
        )
        yield launched
        launched.close()


@pytest.fixture
def site(sqlite_template: Path, tmp_path: Path) -> Iterator[Site]:  # noqa: F811
    """The web app over a fresh SQLite store, served by uvicorn until the test ends."""
    database = tmp_path / "store.db"
    shutil.copyfile(sqlite_template, database)
    engine = create_store_engine(f"sqlite:///{database}")
    sessions = session_factory(engine)
    settings = WebSettings(port=0)
    server = WebServer(create_app(sessions, settings), settings)
    try:
        with server.running(threading.Event()):
            yield Site(f"http://{server.host}:{server.port}", sessions)
    finally:
        engine.dispose()


@pytest.fixture
def page(browser: Browser, site: Site) -> Iterator[Page]:
    """A desktop-sized tab with a fresh profile, its URLs relative to the site."""
    context = browser.new_context(base_url=site.url, viewport=DESKTOP)
    yield context.new_page()
    context.close()


@pytest.fixture
def open_phone_page(browser: Browser, site: Site) -> Iterator[Callable[[Page], Page]]:
    """Open a phone-sized tab logged in as a desktop tab is.

    The phone tab gets its own context with a 390 x 844 touch viewport,
    started with the desktop tab's cookies.
    """
    contexts: list[BrowserContext] = []

    def open_like(desktop: Page) -> Page:
        context = browser.new_context(
            base_url=site.url,
            viewport=PHONE,
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            storage_state=desktop.context.storage_state(),
        )
        contexts.append(context)
        return context.new_page()

    yield open_like
    for context in contexts:
        context.close()


@pytest.fixture(scope="session")
def intermediate() -> Issued:
    """The CA certificate that issues the local servers' certificates.

    Its root is in no trust store, so the add page reports the chain as
    incomplete, besides the expiry.
    """
    return make_intermediate(make_root())


@pytest.fixture
def tls_endpoint(
    local_server: Callable[..., LocalServer], intermediate: Issued
) -> TlsEndpoint:
    """A TLS server on 127.0.0.1 whose certificate has `DAYS_LEFT` days left.

    not_after lies 12 hours past the whole day, so the days left, rounded
    down, stay `DAYS_LEFT` for 12 hours. The certificate lives 90 days,
    so it is inside its warning window (a third of the lifetime, at most
    30 days) and outside the critical one (7 days).
    """
    now = datetime.now(UTC).replace(microsecond=0)
    not_after = now + timedelta(days=DAYS_LEFT, hours=12)
    leaf = make_leaf(
        intermediate,
        dns_names=["www.example.test"],
        ip_addresses=["127.0.0.1"],
        not_before=not_after - LIFETIME,
        not_after=not_after,
    )
    chain = Chain.from_pems(leaf.key_pem(), leaf.pem, intermediate.pem)
    return TlsEndpoint(server=local_server(chain=chain), leaf=leaf)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """The screenshot folder: `$CERTWATCH_TEST_ARTIFACTS` or `artifacts/browser`."""
    configured = os.environ.get(ARTIFACTS_VARIABLE)
    folder = Path(configured) if configured else REPOSITORY / "artifacts" / "browser"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
