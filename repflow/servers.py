"""Local Prefect and MLflow servers (``repflow ui``), and the checks and listings that need a Prefect API.

Each server is a child process in its own process group (``start_new_session=True``): Ctrl-C in the
terminal reaches only ``repflow``, which then stops every server the same way (SIGTERM to the whole
group, SIGKILL after a grace period), and one signal reaches every process a server spawned (uvicorn
workers). Processes are recorded with psutil while they run, so the stop can check that none is left.

Measured on the 2-core dev machine (fresh databases): ``prefect server start`` answers ``/api/health``
after about 27 s, ``mlflow server`` answers ``/health`` after about 13 s with its job runner off
(``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``; with it on, 7 ``huey_consumer`` processes outlive SIGTERM).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

__all__ = ["ServerError", "ScheduleError", "Server", "UI", "start_ui", "stop_servers", "check_prefect_api",
           "local_only_settings", "mlflow_local_only_options",
           "prefect_api_url", "require_prefect_api", "validate_schedule", "deployment_lines"]

START_TIMEOUT_S = 180.0  # both servers cold on 2 cores take ~30 s; a first DB migration on a slow disk can take ~75 s
STOP_GRACE_S = 20.0  # SIGTERM → SIGKILL; both servers exit within a few seconds of SIGTERM
HEALTH_TIMEOUT_S = 3.0  # one health request; a live local server answers in milliseconds
POLL_S = 0.5  # how often start-up and ui's wait loop look at the servers

SERVE_HINT = "start one with 'repflow ui' and export the PREFECT_API_URL it prints"


class ServerError(RuntimeError):
    """A local server that did not start or died, or a Prefect API that does not answer."""


class ScheduleError(ValueError):
    """A cron expression or interval that Prefect would not accept."""


@dataclass
class Server:
    """One server process: how to start it, where it answers, where it logs."""

    name: str  # for messages: "Prefect server", "MLflow server"
    url: str  # base URL the user opens
    health_url: str  # answers HTTP 200 once the server serves requests
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    seen: dict[int, psutil.Process] = field(default_factory=dict)  # every process of this server seen so far

    def start(self, env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        try:  # never through a planted symbolic link: it could point at any file the user may write
            fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise ServerError(f"{self.name}: cannot open its log {self.log_path} ({exc.strerror}; a symbolic link "
                              f"there is refused: remove it)") from None
        with open(fd, "wb") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)
        self.record()

    def exit_code(self) -> int | None:
        """None while the main process runs."""
        return self.proc.poll() if self.proc else None

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=HEALTH_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    def record(self) -> None:
        """Remember the main process, its descendants and its process group's members (pids with start times,
        so a reused pid is never mistaken for ours)."""
        if self.proc is None:
            return
        found: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):
            main = psutil.Process(self.proc.pid)
            found = [main, *main.children(recursive=True)]
        found += _group_members(self.proc.pid)
        for p in found:
            self.seen.setdefault(p.pid, p)

    def alive(self) -> list[psutil.Process]:
        """Recorded processes still running. A zombie grandchild counts as gone (it holds no resources; its
        parent or init reaps it); the main process, our child, is reaped here."""
        out = []
        for p in self.seen.values():
            if self.proc is not None and p.pid == self.proc.pid:
                if self.proc.poll() is None:  # our child: poll() reaps it, so it cannot linger as a zombie
                    out.append(p)
                continue
            with contextlib.suppress(psutil.Error):
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(p)
        return out

    def signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)  # pgid == pid: start_new_session made the child a group leader

    def log_tail(self, lines: int = 3, width: int = 400) -> str:
        """The last non-empty log lines joined into one line, for one-line error messages."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - 8192))
                text = f.read().decode(errors="replace")
        except OSError:
            return "(no log)"
        tail = " | ".join([line.strip() for line in text.splitlines() if line.strip()][-lines:])
        return (tail[-width:] if len(tail) > width else tail) or "(empty log)"

    def failure(self, what: str) -> ServerError:
        return ServerError(f"{self.name} {what}; log {self.log_path}: {self.log_tail()}")


def _group_members(pgid: int) -> list[psutil.Process]:
    out = []
    for p in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(p.pid) == pgid:
                out.append(p)
    return out


def stop_servers(servers: list[Server], grace_s: float = STOP_GRACE_S) -> list[psutil.Process]:
    """SIGTERM every server's process group, wait up to ``grace_s`` seconds for all of them together, then
    SIGKILL the groups and any recorded process that left its group. Returns the processes still running
    afterwards (empty unless something ignores SIGKILL)."""
    for s in servers:
        s.record()
        s.signal_group(signal.SIGTERM)
    if _wait_gone(servers, grace_s):
        return []
    for s in servers:
        s.signal_group(signal.SIGKILL)
        for p in s.alive():
            with contextlib.suppress(psutil.Error):
                p.kill()  # psutil refuses to signal a pid that was reused by another process
    _wait_gone(servers, 5.0)
    return [p for s in servers for p in s.alive()]


def _wait_gone(servers: list[Server], timeout_s: float) -> bool:
    """Poll until no recorded process runs (our direct children are reaped here); True if none is left."""
    deadline = time.monotonic() + timeout_s
    while True:
        if not any(s.alive() for s in servers):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)


@dataclass
class UI:
    """The two running servers of ``repflow ui``."""

    prefect: Server
    mlflow: Server

    @property
    def servers(self) -> list[Server]:
        return [self.prefect, self.mlflow]

    @property
    def prefect_api_url(self) -> str:
        return f"{self.prefect.url}/api"

    def wait(self) -> Server:
        """Block until a server's main process exits on its own; returns that server."""
        while True:
            for s in self.servers:
                if s.exit_code() is not None:
                    return s
                s.record()
            time.sleep(POLL_S)

    def stop(self) -> list[psutil.Process]:
        return stop_servers(self.servers)


def _check_port_free(host: str, port: int, name: str, option: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is no conflict
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ServerError(f"{name}: cannot listen on {host}:{port} ({exc.strerror}); another server may be "
                              f"running there; pick a free port with {option}") from None


def local_only_settings(host: str, prefect_port: int) -> dict[str, str]:
    """Environment of the Prefect server ``repflow ui`` starts: browsers may call it only from its own UI's
    origin (CORS; Prefect's default is any origin), and state-changing requests need a CSRF token, so a web
    page open in the same browser cannot drive a local server."""
    origins = ",".join(f"http://{name}:{prefect_port}" for name in dict.fromkeys((host, "localhost", "127.0.0.1")))
    return {"PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS": origins, "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true"}


def mlflow_local_only_options(host: str, mlflow_port: int) -> list[str]:
    """Options of the MLflow server ``repflow ui`` starts: it answers only Host headers naming this machine's
    loopback (MLflow's default also admits private-network addresses) and cross-origin requests only from its
    own UI's origin."""
    names = list(dict.fromkeys((host, "localhost", "127.0.0.1")))
    return ["--allowed-hosts", ",".join([*names, *(f"{name}:{mlflow_port}" for name in names)]),
            "--cors-allowed-origins", ",".join(f"http://{name}:{mlflow_port}" for name in names)]


def start_ui(workdir: str | Path = ".", prefect_port: int = 4200, mlflow_port: int = 5000, host: str = "127.0.0.1",
             timeout_s: float = START_TIMEOUT_S) -> UI:
    """Start a Prefect server and an MLflow server on the workspace's ``mlflow.db`` at once, and return when
    both answer their health endpoints. On failure (a server exits, or ``timeout_s`` seconds pass, or an
    interrupt) both are stopped and :class:`ServerError` names the server and the end of its log.

    Logs go to ``<workdir>/.repflow/logs/{prefect,mlflow}-server.log`` (overwritten at each start).
    MLflow artifacts logged through the server land in ``<workdir>/mlruns``, next to the ones the pipeline
    writes directly; the Prefect database stays where ``PREFECT_HOME`` says (default ``~/.prefect``).
    """
    root = Path(workdir).resolve()
    logs = root / ".repflow" / "logs"
    _check_port_free(host, prefect_port, "Prefect server", "--prefect-port")
    _check_port_free(host, mlflow_port, "MLflow server", "--mlflow-port")
    prefect_url, mlflow_url = f"http://{host}:{prefect_port}", f"http://{host}:{mlflow_port}"
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           # the UI's browser code must call this server, not whatever PREFECT_API_URL the shell exported
           "PREFECT_API_URL": f"{prefect_url}/api", "PREFECT_UI_API_URL": f"{prefect_url}/api",
           **local_only_settings(host, prefect_port)}
    ui = UI(
        prefect=Server("Prefect server", prefect_url, f"{prefect_url}/api/health",
                       [sys.executable, "-m", "prefect", "server", "start", "--host", host,
                        "--port", str(prefect_port)], logs / "prefect-server.log"),
        mlflow=Server("MLflow server", mlflow_url, f"{mlflow_url}/health",
                      [sys.executable, "-m", "mlflow", "server",
                       "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                       "--artifacts-destination", str(root / "mlruns"), "--host", host, "--port", str(mlflow_port),
                       # one user: 1 uvicorn worker instead of 4 spares memory and start-up on 2 cores
                       "--workers", "1", *mlflow_local_only_options(host, mlflow_port)],
                      logs / "mlflow-server.log"),
    )
    try:
        for s in ui.servers:
            s.start(env)
        deadline = time.monotonic() + timeout_s
        pending = list(ui.servers)
        while pending:
            for s in list(pending):
                s.record()
                if (code := s.exit_code()) is not None:
                    raise s.failure(f"exited with code {code} while starting")
                if s.healthy():
                    pending.remove(s)
            if pending and time.monotonic() > deadline:
                raise pending[0].failure(f"did not answer {pending[0].health_url} within {timeout_s:.0f} s")
            if pending:
                time.sleep(POLL_S)
    except BaseException:
        stop_servers(ui.servers)
        raise
    return ui


# --- the Prefect API a deployment lives on ---------------------------------------------------------

def prefect_api_url() -> str | None:
    """PREFECT_API_URL as Prefect resolves it (environment, then the active profile); None when unset."""
    from prefect.settings import get_current_settings

    return get_current_settings().api.url or None


def check_prefect_api(url: str, hint: str = "start one with 'repflow ui' or unset PREFECT_API_URL") -> None:
    """Raise :class:`ServerError` with a one-line message unless a Prefect API answers ``GET <url>/health``
    within 3 s. ``url`` is what PREFECT_API_URL holds, e.g. ``http://127.0.0.1:4200/api``."""
    where = f"PREFECT_API_URL={url!r}"
    try:
        resp = httpx.get(f"{url.rstrip('/')}/health", timeout=HEALTH_TIMEOUT_S)
    except httpx.ConnectError as exc:
        why = "connection refused" if "refused" in str(exc).lower() else str(exc) or type(exc).__name__
        raise ServerError(f"{where}: no Prefect server answers ({why}); {hint}") from None
    except httpx.TimeoutException:
        raise ServerError(f"{where}: no answer within {HEALTH_TIMEOUT_S:g} s; {hint}") from None
    except httpx.HTTPError as exc:
        raise ServerError(f"{where}: {exc}; {hint}") from None
    try:
        ok = resp.status_code == 200 and resp.json() is True
    except ValueError:
        ok = False
    if not ok:
        raise ServerError(f"{where}: GET /health answered HTTP {resp.status_code}, not like a Prefect API "
                          f"(expected the API URL ending in /api, e.g. http://127.0.0.1:4200/api)")


@contextlib.contextmanager
def prefect_api_for_run():
    """One Prefect API for a whole local run, its Ray workers included; yields its URL.

    With PREFECT_API_URL unset, Prefect starts a temporary server lazily in every process that needs one: the
    run's own process, then each Ray worker that executes a Prefect task (the transfer grid, ``--runner ray``
    stages), each spending seconds of CPU on its own sqlite server, and timing out when the machine is loaded.
    Here the run's process starts that one temporary server itself (it stops when the process exits, as
    Prefect's own does) and puts its URL in the settings context, which Prefect's task runners hand to their
    workers, and in the environment, which the Ray workers started inside the block inherit; both are restored
    after. A set PREFECT_API_URL is passed on the same way (the caller checks it first, before taking any lock:
    :func:`check_prefect_api`). Joining a Ray cluster (RAY_ADDRESS), a temporary server on this machine's
    loopback is unreachable from other nodes, so nothing is started."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = prefect_api_url()
    if not url and os.environ.get("RAY_ADDRESS"):
        yield None
        return
    if not url:
        from prefect.server.api.server import SubprocessASGIServer

        server = SubprocessASGIServer()
        server.start()
        url = server.api_url
    before = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = url
    try:
        with temporary_settings(updates={PREFECT_API_URL: url}):
            yield url
    finally:
        if before is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = before


def require_prefect_api(what: str) -> str:
    """The PREFECT_API_URL of a running server, for commands that need a persistent one (``what`` names the
    command in the message); raises :class:`ServerError` when it is unset or does not answer."""
    url = prefect_api_url()
    if not url:
        raise ServerError(f"PREFECT_API_URL is not set; {what} needs a running Prefect server: {SERVE_HINT} "
                          f"(http://127.0.0.1:4200/api by default)")
    check_prefect_api(url, hint=SERVE_HINT)
    return url


def validate_schedule(cron: str | None, interval: str | None) -> dict[str, Any]:
    """``serve``'s schedule as keyword arguments for ``Flow.serve``: ``{"cron": expr}`` checked by the same
    parser the Prefect server uses, or ``{"interval": seconds}`` with seconds > 0."""
    if cron is not None:
        import pydantic
        from prefect.client.schemas.schedules import CronSchedule

        try:
            CronSchedule(cron=cron)
        except pydantic.ValidationError:
            raise ScheduleError(f"--cron {cron!r}: not a cron expression (5 fields: minute hour day month weekday, "
                                f"e.g. '0 3 * * *' for 03:00 UTC daily)") from None
        return {"cron": cron}
    try:
        seconds = float(interval)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ScheduleError(f"--interval {interval!r}: not a positive number of seconds (e.g. 3600 for hourly)")
    return {"interval": seconds}


def _describe_schedule(schedule: Any) -> str:
    if getattr(schedule, "cron", None):
        return f"cron '{schedule.cron}' {schedule.timezone or 'UTC'}"
    if getattr(schedule, "interval", None) is not None:
        return f"every {schedule.interval.total_seconds():g} s"
    if getattr(schedule, "rrule", None):
        return f"rrule '{schedule.rrule}'"
    return type(schedule).__name__


def _next_from_schedule(schedule: Any) -> _dt.datetime | None:
    """Next time after now, computed by the Prefect server's own schedule code (cron, interval, rrule)."""
    import asyncio

    from prefect.server.schemas import schedules as server_schedules

    cls = getattr(server_schedules, type(schedule).__name__, None)
    if cls is None:
        return None
    try:
        dates = asyncio.run(cls.model_validate(schedule.model_dump()).get_dates(n=1))
    except Exception:  # an exotic schedule this listing cannot compute is shown without a next time
        return None
    return dates[0] if dates else None


def _fmt_time(when: _dt.datetime, tz: str | None) -> str:
    from zoneinfo import ZoneInfo

    return when.astimezone(ZoneInfo(tz or "UTC")).strftime("%Y-%m-%d %H:%M:%S %Z")


def deployment_lines() -> list[str]:
    """One line per deployment on the configured Prefect API: ``flow/deployment``, its schedules, paused or
    active, and the next run (the earliest run the server has scheduled, else computed from the schedule)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (DeploymentFilter, DeploymentFilterId, FlowRunFilter,
                                                FlowRunFilterState, FlowRunFilterStateType)
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    lines = []
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        flows = {f.id: f.name for f in client.read_flows()} if deployments else {}
        for d in sorted(deployments, key=lambda d: (flows.get(d.flow_id, ""), d.name)):
            active = [s.schedule for s in d.schedules if s.active]
            what = ", ".join(_describe_schedule(s.schedule) + ("" if s.active else " (inactive)")
                             for s in d.schedules) or "no schedule"
            tz = getattr(active[0], "timezone", None) if active else None
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[d.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
            if d.paused:
                nxt = "next run: none (paused)"
            elif runs and runs[0].expected_start_time:
                nxt = f"next run: {_fmt_time(runs[0].expected_start_time, tz)} (scheduled)"
            else:
                times = [t for t in map(_next_from_schedule, active) if t is not None]
                nxt = f"next run: {_fmt_time(min(times), tz)} (from schedule)" if times else "next run: none"
            lines.append(f"{flows.get(d.flow_id, '?')}/{d.name}  {what}  {'paused' if d.paused else 'active'}  {nxt}")
    return lines or ["no deployments"]
