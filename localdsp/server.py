"""LocalDSP: the stand-in DSP server on a loopback socket, run by uvicorn in a background thread.

Tests use it in-process (`with LocalDSP(tmp_path, tokens=["t"]) as dsp: dsp.url ...`); the CLI
uses the same class for `serve` and `exec`. The socket is bound before the thread starts, so the
port (0 picks a free one) is known at once, and `start()` returns only when the server answers
its admin health check. State lives in SQLite under `data_dir`, so a new LocalDSP on the same
folder finds everything a previous one stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import uvicorn

from localdsp import run_kfp_local
from localdsp.api_v2 import create_app_v2
from localdsp.app import create_app
from localdsp.backend import Backend, RunExecutor
from localdsp.faults import ADMIN_PREFIX, ASGIApp, FaultInjector, FaultRule, RandomFaults
from localdsp.proxy import Tokens
from localdsp.rules_v2 import BackendV2
from localdsp.run_kfp_local import KfpLocalRunner
from localdsp.runs import LocalExecutor
from localdsp.scheduler import Scheduler
from localdsp.uploads import ObjectStore

START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
STOP_GRACE = 1.0  # seconds requests in flight get to finish when the server stops


class _Server(uvicorn.Server):
    """uvicorn's Server, stopped at once from another thread.

    uvicorn polls `should_exit` every 0.1 s and its shutdown sleeps another 0.1 s; a test suite
    that starts a server per test would pay that hundreds of times. Here `stop_soon()` wakes the
    loop at once, and shutdown only waits (up to STOP_GRACE) for requests still in flight.
    """

    _loop: asyncio.AbstractEventLoop | None = None
    _wakeup: asyncio.Event

    async def main_loop(self) -> None:
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):  # on_tick keeps the Date header fresh
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=0.1)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        for connection in list(self.server_state.connections):
            connection.shutdown()
        if self.server_state.tasks:
            await asyncio.wait(list(self.server_state.tasks), timeout=STOP_GRACE)
        # Whatever is still open (a TLS close waiting for its peer) is cut: the loop ends next.
        for connection in list(self.server_state.connections):
            connection.transport.abort()
        await asyncio.sleep(0)  # one turn of the loop, for the transports to close

    def stop_soon(self) -> None:
        """Ask the server to stop; safe from any thread."""
        self.should_exit = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._wakeup.set)


API_GENERATIONS = ("v1", "v2")


class LocalDSP:
    """The DSP API stand-in, as a context manager: `url` is valid between start and stop.

    `api="v1"` (the default) is a DSP 1.x server (kfp-tekton 1.5, v1beta1 only); `api="v2"` is a
    DSP 2.x server (KFP backend 2.5.0: v2beta1, and the v1beta1 healthz and uploads).
    """

    def __init__(
        self,
        data_dir: str | Path,
        tokens: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: int = 0,
        executor: RunExecutor | None = None,
        tls: bool = False,
        random_faults: RandomFaults | None = None,
        execute: bool = False,
        schedule: bool | None = None,
        auto_update_default: bool = True,
        api: str = "v1",
    ):
        """`execute=True` runs created runs on this machine with a `LocalExecutor` (unless an
        `executor` is given); `schedule` (default: whether runs execute) starts the runs of
        enabled recurring jobs on their schedule; `auto_update_default=False` models a DSPA with
        `autoUpdatePipelineDefaultVersion: false`. With `api="v2"`, `execute=True` runs created
        runs with kfp.local (`run_kfp_local.KfpLocalRunner`) where kfp 2 is installed
        (`execute_v2` says whether they do; without kfp 2 they stay PENDING); `executor` and
        `schedule` do not apply (recurring runs are stored, not fired)."""
        if api not in API_GENERATIONS:
            raise ValueError(f"api must be one of {', '.join(API_GENERATIONS)}, not {api!r}")
        self.api = api
        self.data_dir = Path(data_dir)
        self.host = host
        self.port = port
        self.tls = tls
        self.executor = executor
        self.execute = execute
        self.auto_update_default = auto_update_default
        self.schedule = schedule if schedule is not None else bool(execute or executor)
        self.scheduler: Scheduler | None = None
        self._own_executor = False
        self.tokens = Tokens(tokens)
        settings = random_faults or RandomFaults()
        if latency_ms:
            settings = replace(settings, latency_ms=latency_ms)
        self.faults = FaultInjector(settings)
        self.storage = ObjectStore()  # hold() or fail() it to see uploads stay CREATING
        self.backend: Backend | BackendV2 | None = None
        # v2 runs execute with kfp.local where kfp 2 is installed; elsewhere they stay PENDING.
        self.execute_v2 = api == "v2" and execute and run_kfp_local.available()
        self.runner_v2: KfpLocalRunner | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ---- life cycle

    def __enter__(self) -> LocalDSP:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    @property
    def ca_file(self) -> Path | None:
        """With `tls`, the self-signed certificate a client must trust (its own CA)."""
        return self.data_dir / "tls" / "localdsp.crt" if self.tls else None

    def start(self) -> LocalDSP:
        """Bind, serve in a thread, and return once the server answers; raises if it cannot."""
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]  # kept: a restart serves on the same URL
        app = self._create_app()
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_config=None,  # never reconfigure the host process's logging (tests, the runner)
            log_level="warning",
            access_log=False,
            http="h11",  # the drop faults reach the connection through h11's request cycle
            ws="none",
            server_header=False,
            **self._tls_settings(),
        )
        self._server = _Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="localdsp", daemon=True
        )
        self._thread.start()
        try:
            self._wait_until_healthy()
        except Exception:
            self.stop()
            raise
        if self.schedule and isinstance(self.backend, Backend):
            self.scheduler = Scheduler(self.backend).start()
        return self

    def _create_app(self) -> ASGIApp:
        """The backend and app of this server's API generation."""
        if self.api == "v2":
            self.runner_v2 = KfpLocalRunner(self.data_dir) if self.execute_v2 else None
            self.backend = BackendV2(self.data_dir, runner=self.runner_v2)
            return create_app_v2(self.backend, self.faults, self.tokens)
        if self.execute and (self.executor is None or self._own_executor):
            self.executor = LocalExecutor(self.data_dir)
            self._own_executor = True
        self.backend = Backend(
            self.data_dir, executor=self.executor, auto_update_default=self.auto_update_default
        )
        return create_app(self.backend, self.faults, self.tokens, self.storage)

    def stop(self) -> None:
        """Stop serving (open connections are closed), cancel runs still executing (waiting
        briefly for them to record their end) and close the database."""
        if self._server is not None and self._thread is not None:
            if self.storage.held:
                self.storage.release()  # held uploads finish, as requests do on a shutdown
            self._server.stop_soon()
            self._thread.join(STOP_TIMEOUT)
        self._server = self._thread = None
        if self.scheduler is not None:
            self.scheduler.stop()
            self.scheduler = None
        if isinstance(self.executor, LocalExecutor):
            self.executor.close()
        if self.runner_v2 is not None:
            self.runner_v2.close()
            self.runner_v2 = None
        if self.backend is not None:
            self.backend.close()
            self.backend = None

    def _tls_settings(self) -> dict[str, str]:
        if not self.tls:
            return {}
        certificate, key = _self_signed_certificate(self.data_dir / "tls", self.host)
        return {"ssl_certfile": str(certificate), "ssl_keyfile": str(key)}

    def _wait_until_healthy(self) -> None:
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.tls else None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(  # noqa: S310 - our own loopback URL
                    f"{self.url}{ADMIN_PREFIX}health", timeout=1, context=context
                ):
                    return
            except (urllib.error.URLError, OSError):
                if self._thread is None or not self._thread.is_alive():
                    raise RuntimeError(f"localdsp did not start on {self.url}") from None
                if time.monotonic() > deadline:
                    raise TimeoutError(f"localdsp did not answer on {self.url}") from None
                time.sleep(0.02)

    # ---- test helpers (the same as the admin endpoints, without HTTP)

    def inject(self, **settings: Any) -> dict[str, Any]:
        """Add a fault rule, e.g. `inject(method="POST", path="/apis/v1beta1/runs",
        action="status", status=503, times=2)`; returns the rule with its id."""
        return self.faults.add(FaultRule.create(**settings)).as_dict()

    def clear_faults(self) -> None:
        """Remove every scripted rule and switch random faults off."""
        self.faults.clear()

    def requests(self) -> list[dict[str, Any]]:
        """The request log: method, path, query, status and fault of each API request."""
        return self.faults.requests()

    def clear_requests(self) -> None:
        self.faults.clear_requests()

    def set_tokens(self, tokens: Iterable[str] | None) -> None:
        """Replace the accepted bearer tokens (None: no check), e.g. to revoke or rotate one."""
        self.tokens.set(tokens)

    def reset(self) -> None:
        """Forget every pipeline, version, experiment, run and job."""
        assert self.backend is not None, "start the server first"
        self.backend.reset()


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket; IPPROTO_TCP so that asyncio sets TCP_NODELAY on each connection
    (without it, Nagle and delayed ACKs add 40 ms to every response)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def _self_signed_certificate(folder: Path, host: str) -> tuple[Path, Path]:
    """A certificate for localhost, 127.0.0.1, ::1 and `host`, made once per data folder.

    `cryptography` comes with kfp (through google-auth); it is imported only when TLS is on.
    """
    certificate, key_file = folder / "localdsp.crt", folder / "localdsp.key"
    if certificate.exists() and key_file.exists():
        return certificate, key_file
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localdsp")])
    addresses = {"127.0.0.1", "::1"}
    names = [x509.DNSName("localhost")]
    try:
        addresses.add(str(ipaddress.ip_address(host)))
    except ValueError:
        names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    certificate.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return certificate, key_file
