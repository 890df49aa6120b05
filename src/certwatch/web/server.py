"""Run the web service and the monitor in one process.

The monitor keeps the calling thread, so the signal handling of
`certwatch serve` works as before. The first SIGINT or SIGTERM sets the
`stop` event, and the current batch is finished and recorded. A second one
raises `SystemExit` in that thread, which releases the batch's claims.
uvicorn runs its own event loop in a worker thread. It installs no signal
handlers there (uvicorn 0.55 captures signals only in the main thread) and
shuts down gracefully once `stop` is set.

The listening socket is bound before the monitor starts, so a port that
is taken stops `certwatch serve` at once with an error that names the
setting to change, instead of leaving a monitor without its web service.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import uvicorn
from fastapi import FastAPI

from certwatch.errors import CertwatchError
from certwatch.monitor.cycle import Clock, SessionFactory
from certwatch.monitor.instant import ScanSetup
from certwatch.monitor.serve import serve
from certwatch.monitor.settings import MonitorSettings
from certwatch.probe.resolve import Resolver, SystemResolver
from certwatch.web.app import create_app
from certwatch.web.heartbeat import AfterCycle, recording_cycles
from certwatch.web.settings import (
    HOST_VARIABLE,
    PORT_VARIABLE,
    WebSettings,
    http_url,
)
from certwatch.x509.model import AnalysisPolicy

logger = logging.getLogger(__name__)

# Time that requests in flight get to finish once the service stops, and a
# margin on top before the process stops waiting for the web thread.
GRACEFUL_SHUTDOWN_SECONDS = 5
JOIN_MARGIN_SECONDS = 2
LISTEN_BACKLOG = 2048


class WebServerError(CertwatchError):
    """The web service cannot listen on its address, or stopped by itself."""


def run_web_and_monitor(
    sessions: SessionFactory,
    *,
    web: WebSettings,
    now_fn: Clock,
    settings: MonitorSettings,
    policy: AnalysisPolicy,
    stop: threading.Event,
    resolver: Resolver | None = None,
    rng: random.Random | None = None,
    store_problem: Callable[[], str | None] | None = None,
    after_cycle: AfterCycle | None = None,
    on_listening: Callable[[str, int], object] | None = None,
) -> int:
    """Serve the web application and run monitoring cycles until `stop` is set.

    The arguments from `now_fn` to `after_cycle` go to
    `certwatch.monitor.serve.serve`; each completed cycle is also recorded
    as the monitor's heartbeat before `after_cycle` runs. With
    `web.disabled` only the monitor runs. The monitor probes under the
    address policy of `web.allow_private_targets`, and the web service's
    instant scans use `settings`, `policy` and `resolver` too.
    `on_listening` is called with the bound host and port once the web
    socket accepts connections.
    Returns the number of cycles run.

    Raises:
        WebServerError: the address cannot be bound (nothing has started
            then), or the web service failed while the monitor ran (the
            monitor finishes its batch first).
        StoreError: as `serve` raises it; the web service is stopped first.
    """
    hook = recording_cycles(after_cycle, now_fn)
    # The monitor's later scans of stored endpoints obey the same address
    # policy as the add form, so a name that now resolves to a private
    # address is not probed either.
    probe = replace(settings.probe, allow_private_addresses=web.allow_private_targets)
    settings = replace(settings, probe=probe)

    def monitor() -> int:
        return serve(
            sessions,
            now_fn=now_fn,
            settings=settings,
            policy=policy,
            stop=stop,
            resolver=resolver,
            rng=rng,
            store_problem=store_problem,
            after_cycle=hook,
        )

    if web.disabled:
        logger.info("web service disabled by CERTWATCH_WEB_DISABLED")
        return monitor()

    app = create_app(sessions, web, now_fn=now_fn)
    scans = ScanSetup(
        monitor=settings, policy=policy, resolver=resolver or SystemResolver()
    )
    app.state.certwatch = replace(app.state.certwatch, scans=scans)
    server = WebServer(app, web)
    with server.running(stop):
        if on_listening is not None:
            on_listening(server.host, server.port)
        cycles = monitor()
    if server.failure is not None:
        raise WebServerError(
            f"The web service stopped unexpectedly ({server.failure}); the "
            "monitor stopped with it so that a supervisor restarts both."
        )
    return cycles


class WebServer:
    """uvicorn serving one application on a socket bound at construction."""

    def __init__(self, app: FastAPI, settings: WebSettings) -> None:
        """Bind the listening socket.

        Raises:
            WebServerError: the host does not resolve or the port cannot
                be bound; the message names the variable to change.
        """
        self._listener = bind_listener(settings.host, settings.port)
        self.host, self.port = self._listener.getsockname()[:2]
        config = uvicorn.Config(
            app,
            host=self.host,
            port=self.port,
            # The command line configures logging; uvicorn's records reach
            # its handlers. Access lines are off because load balancers and
            # Prometheus would fill the log with their polls.
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            # By default uvicorn 0.55 trusts X-Forwarded-For from 127.0.0.1.
            # That would let any client on this host, or behind a same-host
            # proxy, choose the address that the login and password-reset
            # limits count, so only the listed proxies are trusted.
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=list(settings.trusted_proxies),
        )
        self._server = _StoppableServer(config)
        self._stopping = False
        self.failure: BaseException | None = None

    @contextmanager
    def running(self, stop: threading.Event) -> Iterator[None]:
        """Serve in a worker thread for the duration; stop it on the way out.

        The server stops when `stop` is set. When it stops by itself,
        `failure` records why and `stop` is set, so the monitor ends too.
        """
        self._server.stop_event = stop
        thread = threading.Thread(
            target=self._serve, args=(stop,), name="certwatch-web", daemon=True
        )
        thread.start()
        logger.info("web service listening on %s", http_url(self.host, self.port))
        try:
            yield
        finally:
            self._stopping = True
            self._server.should_exit = True
            wait = GRACEFUL_SHUTDOWN_SECONDS + JOIN_MARGIN_SECONDS
            thread.join(wait)
            if thread.is_alive():
                self._server.force_exit = True
                logger.warning(
                    "the web service did not stop within %d s; not waiting longer",
                    wait,
                )
            else:
                logger.info("web service stopped")

    def _serve(self, stop: threading.Event) -> None:
        try:
            self._server.run(sockets=[self._listener])
            if not (stop.is_set() or self._stopping):
                self.failure = RuntimeError("uvicorn returned without being stopped")
        except BaseException as exc:
            # uvicorn ends a failed start-up with SystemExit. This is the top
            # of the web thread, so the failure is recorded for the monitor's
            # thread and logged rather than lost with the thread.
            self.failure = exc
            logger.exception("the web service failed")
        finally:
            self._listener.close()
            stop.set()


class _StoppableServer(uvicorn.Server):
    """A uvicorn server that also stops when a `threading.Event` is set."""

    stop_event: threading.Event | None = None

    async def on_tick(self, counter: int) -> bool:
        # uvicorn 0.55 calls on_tick every 0.1 s from its main loop and
        # stops once `should_exit` is true.
        if self.stop_event is not None and self.stop_event.is_set():
            self.should_exit = True
        return await super().on_tick(counter)


def bind_listener(host: str, port: int) -> socket.socket:
    """Return a listening TCP socket on `host` and `port` (its first address).

    Raises:
        WebServerError: the host does not resolve, or the address cannot be
            bound; the message names the variable to change.
    """
    try:
        found = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise WebServerError(
            f"The web service cannot listen on {host!r}: the name does not "
            f"resolve ({exc.strerror}); set {HOST_VARIABLE} to an IP address "
            "of this machine."
        ) from exc
    family, kind, protocol, _, address = found[0]
    listener = socket.socket(family, kind, protocol)
    try:
        # A restart must not wait for the previous process's closed
        # connections to leave TIME_WAIT; a live listener still blocks it.
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(LISTEN_BACKLOG)
    except OSError as exc:
        listener.close()
        raise WebServerError(_bind_problem(host, port, exc)) from exc
    return listener


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host!r} port {port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"The web service cannot listen on {where}: the port is in use by "
            f"another program; set {PORT_VARIABLE} to a free port, or stop "
            "the other program."
        )
    if exc.errno == errno.EACCES:
        return (
            f"The web service cannot listen on {where}: permission denied; "
            f"set {PORT_VARIABLE} to a port above 1023, such as 8080."
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"The web service cannot listen on {where}: {host!r} is not an "
            f"address of this machine; set {HOST_VARIABLE} to one of its "
            "addresses, such as 127.0.0.1 or 0.0.0.0."
        )
    return (
        f"The web service cannot listen on {where} ({exc.strerror}); check "
        f"{HOST_VARIABLE} and {PORT_VARIABLE}."
    )
