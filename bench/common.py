"""Shared benchmark machinery: statistics, a low-overhead HTTP/1.1 load generator,
subprocess control with CPU pinning, service environments and result files.

The machines these run on are shared and noisy (2 cores), so every bench reports
absolute numbers *and* a ratio against a baseline measured side by side in the same
run; the statistics here are deliberately simple and tested (tests/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("BENCH_RESULTS_DIR", ROOT / "bench" / "results"))
LOOPBACK = "127.0.0.1"

# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks
    (numpy's default), so p50 of an even-sized sample is the usual median."""
    if not values:
        raise ValueError("percentile of an empty sample")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def latency_summary(latencies_s: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean in milliseconds."""
    if not latencies_s:
        return {
            "n": 0,
            "p50_ms": math.nan,
            "p95_ms": math.nan,
            "p99_ms": math.nan,
            "max_ms": math.nan,
            "mean_ms": math.nan,
        }
    ms = [v * 1000 for v in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


def median_of(reps: Sequence[Mapping[str, Any]], key: str) -> float:
    """Median across repetitions of one numeric field (NaNs ignored)."""
    values = [float(r[key]) for r in reps if not math.isnan(float(r[key]))]
    if not values:
        return math.nan
    return float(statistics.median(values))


def ratio(value: float, baseline: float) -> float:
    """value / baseline, NaN when the baseline is missing or zero."""
    if not baseline or math.isnan(baseline) or math.isnan(value):
        return math.nan
    return value / baseline


# ----------------------------------------------------------------- load generation


class HttpError(Exception):
    pass


@dataclass
class LoadResult:
    """What one load run measured (only requests started after the warm-up count)."""

    duration_s: float
    latencies_s: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    offered_rps: float | None = None

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def throughput(self) -> float:
        return self.ok / self.duration_s if self.duration_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": sum(self.statuses.values()),
            "ok": self.ok,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "duration_s": round(self.duration_s, 3),
            "throughput_rps": round(self.throughput, 1),
        }
        if self.offered_rps is not None:
            out["offered_rps"] = round(self.offered_rps, 1)
        out.update(latency_summary(self.latencies_s))
        return out


class _HttpConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection, one request in flight at a time.

    Hand-rolled rather than httpx because the load generator must cost far less CPU
    than the server it measures: it only frames Content-Length responses (all the
    service and baseline answer with) and returns (status, body).
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: Any = None  # uvloop's transports are not asyncio.Transport subclasses
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(HttpError(f"connection lost: {exc!r}"))

    def data_received(self, data: bytes) -> None:
        self._buf += data
        self._try_complete()

    def _try_complete(self) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self._buf[:end]).split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length = None
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
                break
        if length is None:
            waiter.set_exception(HttpError("response without Content-Length"))
            return
        total = end + 4 + length
        if len(self._buf) < total:
            return
        body = bytes(self._buf[end + 4 : total])
        del self._buf[:total]
        waiter.set_result((status, body))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        if self.closed or self.transport is None:
            raise HttpError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return await self._waiter


async def _connect(port: int, host: str = LOOPBACK) -> _HttpConnection:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(_HttpConnection, host, port)
    return protocol


async def _on_each(
    conns: list[_HttpConnection], worker: Callable[[_HttpConnection], Awaitable[None]]
) -> None:
    """Run ``worker`` on every connection at once; close them all, however it ends."""
    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()


def build_request(
    method: str,
    path: str,
    *,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
    host: str = LOOPBACK,
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


RequestFactory = Callable[[int], bytes]
MAX_ERRORS = 1000  # a dead server must end the run, not spin reconnecting


async def closed_loop(
    port: int,
    make_request: RequestFactory,
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    on_response: Callable[[int, bytes], None] | None = None,
) -> LoadResult:
    """``concurrency`` keep-alive connections each sending back to back for
    ``warmup_s + duration_s``; only requests *started* after the warm-up are recorded,
    and throughput is counted over the measured window (peak throughput)."""
    conns = [await _connect(port) for _ in range(concurrency)]
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s
    result = LoadResult(duration_s=duration_s)
    counter = iter(range(1 << 62))

    async def worker(conn: _HttpConnection) -> None:
        while True:
            began = loop.time()
            if began >= stop_at:
                return
            try:
                status, body = await conn.request(make_request(next(counter)))
            except (HttpError, OSError):
                result.errors += 1
                if result.errors > MAX_ERRORS:
                    raise HttpError(
                        f"more than {MAX_ERRORS} failed requests; is the server up?"
                    ) from None
                conn = await _connect(port)
                continue
            if began >= measure_from:
                result.latencies_s.append(loop.time() - began)
                result.statuses[status] += 1
            if on_response is not None:
                on_response(status, body)

    await _on_each(conns, worker)
    return result


async def open_loop(
    port: int,
    make_request: RequestFactory,
    *,
    rate_rps: float,
    duration_s: float,
    warmup_s: float,
    connections: int = 64,
) -> LoadResult:
    """Requests *scheduled* at a fixed rate (open loop), latency measured from the
    scheduled start so a stalled server is not hidden (no coordinated omission).

    A request waits for a free connection when all ``connections`` are busy; that
    wait counts in its latency, as it would for a real client.
    """
    if rate_rps <= 0:
        raise ValueError("rate_rps must be positive")
    idle: asyncio.Queue[_HttpConnection] = asyncio.Queue()
    conns = [await _connect(port) for _ in range(connections)]
    for conn in conns:
        idle.put_nowait(conn)
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup_s
    total = int((warmup_s + duration_s) * rate_rps)
    result = LoadResult(duration_s=duration_s, offered_rps=rate_rps)
    pending: set[asyncio.Task[None]] = set()

    async def one(index: int, scheduled: float) -> None:
        conn = await idle.get()
        try:
            status, _ = await conn.request(make_request(index))
        except (HttpError, OSError):
            if scheduled >= measure_from:
                result.errors += 1
            conn = await _connect(port)
        else:
            if scheduled >= measure_from:
                result.latencies_s.append(loop.time() - scheduled)
                result.statuses[status] += 1
        finally:
            idle.put_nowait(conn)

    sent = 0
    while sent < total:
        now = loop.time()
        due = min(total, int((now - start) * rate_rps) + 1)
        while sent < due:
            task = asyncio.ensure_future(one(sent, start + sent / rate_rps))
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(max(0.0, start + sent / rate_rps - loop.time()))
    if pending:
        await asyncio.wait(pending, timeout=30)
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()
    return result


def run_async(coro: Any) -> Any:
    """asyncio.run on uvloop when available (the load generator's own overhead matters)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a service dependency
        return asyncio.run(coro)
    return uvloop.run(coro)


# ------------------------------------------------------------------------ processes


@dataclass(frozen=True)
class CpuPlan:
    """Server on one core, load generator on another, when the machine has two."""

    server: set[int] | None
    load: set[int] | None

    def describe(self) -> str:
        if self.server is None:
            return "unpinned (fewer than 2 usable cores)"
        return f"server cores {sorted(self.server)}, load generator cores {sorted(self.load or ())}"


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM (``timeout``, CI cancellation) into SystemExit so every ``running``
    block and the dev servers' context manager stop what they started."""

    def _raise(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _raise)


def cpu_plan() -> CpuPlan:
    usable = sorted(os.sched_getaffinity(0))
    if len(usable) < 2:
        return CpuPlan(None, None)
    return CpuPlan({usable[0]}, {usable[1]})


def pin_self(cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)


def start_process(
    args: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    cpus: set[int] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``args`` in its own session (so stopping it stops its children), pinned to
    ``cpus`` (children inherit the affinity), output to ``log_path``."""

    def _preexec() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)

    log_path.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        list(args),
        env=dict(env),
        stdout=log_path.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_preexec,
        cwd=ROOT,
    )


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """SIGTERM this process group (ours: start_new_session), SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@contextlib.contextmanager
def running(
    args: Sequence[str], env: Mapping[str, str], log_path: Path, *, cpus: set[int] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_process(args, env, log_path, cpus=cpus)
    try:
        yield proc
    finally:
        stop_process(proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return ticks / os.sysconf("SC_CLK_TCK")


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (a usage error, not a traceback, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def machine_busy_seconds() -> float:
    """CPU time all cores have spent busy so far (Linux /proc/stat, every process)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def batch_sizes(port: int) -> dict[str, float]:
    """Mean requests per batched call over the whole run (groundwork_app.batching)."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    totals: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name != "batch_size":
            continue
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                kind = sample.name.rsplit("_", 1)[1]
                totals.setdefault(sample.labels["batch"], {})[kind] = sample.value
    return {name: round(t["sum"] / t["count"], 1) for name, t in totals.items() if t.get("count")}


def http_status(url: str, timeout: float = 1.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def wait_until_ok(
    url: str,
    *,
    timeout: float,
    proc: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
    interval: float = 0.01,
) -> float:
    """Poll ``url`` until it answers 200; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(
                f"process exited with {proc.returncode} before {url} was ready\n{tail}"
            )
        if http_status(url, timeout=0.5) == 200:
            return time.monotonic()
        time.sleep(interval)
    tail = log_path.read_text(errors="replace")[-3000:] if log_path else ""
    raise RuntimeError(f"{url} not ready after {timeout:.0f}s\n{tail}")


def app_command(*args: str) -> list[str]:
    """``groundwork-app ARGS`` from this interpreter's environment."""
    return [sys.executable, "-m", "groundwork_app.cli", *args]


# ------------------------------------------------------------------- service set-up


@dataclass(frozen=True)
class Auth:
    secret: str
    issuer: str = "groundwork-bench"
    audience: str = "groundwork-api"
    subject: str = "bench-client"

    def token(self, scope: str | None = None, ttl_s: int = 3600) -> str:
        """A token for the bench client; ``scope`` defaults to the job API's scopes."""
        from groundwork.tokens import JOB_SCOPES, mint_token

        return mint_token(
            self.secret,
            issuer=self.issuer,
            audience=self.audience,
            subject=self.subject,
            scopes=JOB_SCOPES if scope is None else scope,
            ttl_seconds=ttl_s,
        )


def service_env(server_env: Mapping[str, str], workdir: Path, **overrides: str) -> dict[str, str]:
    """Environment of every service process in a bench: the dev servers, a per-run JWT
    secret, a rate limit high enough never to trigger (the Redis round trip still
    happens, so its cost is measured) and per-run heartbeat files."""
    env = {
        **os.environ,
        **server_env,
        "APP_ENV": "test",
        "LOG_JSON": "true",
        "LOG_LEVEL": "INFO",
        "JWT_SECRET": secrets.token_urlsafe(40),
        "WEBHOOK_SECRET": secrets.token_urlsafe(40),
        "JWT_ISSUER": "groundwork-bench",
        "JWT_AUDIENCE": "groundwork-api",
        "RATE_LIMIT": "100000000/minute",
        "HEARTBEAT_FILE": str(workdir / "heartbeat"),
        "PYTHONUNBUFFERED": "1",
    }
    env.update(overrides)
    return env


def auth_for(env: Mapping[str, str]) -> Auth:
    return Auth(env["JWT_SECRET"], env["JWT_ISSUER"], env["JWT_AUDIENCE"])


def migrate(env: Mapping[str, str], log_path: Path) -> None:
    proc = subprocess.run(
        app_command("migrate"), env=dict(env), capture_output=True, timeout=120, check=False
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_bytes(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"migrate failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}")


@contextlib.contextmanager
def bench_servers() -> Iterator[Any]:
    """groundwork.devenv.servers with a clear message when the packages are missing."""
    from groundwork.devenv.servers import ServerUnavailableError, dev_servers

    exit_cleanly_on_sigterm()
    try:
        manager = dev_servers()
        servers = manager.__enter__()
    except ServerUnavailableError as exc:
        raise SystemExit(
            f"bench: cannot start the local servers: {exc}\n"
            "run `bash scripts/bootstrap.sh` first (installs PostgreSQL, Redis, RabbitMQ)."
        ) from None
    try:
        yield servers
    finally:
        manager.__exit__(None, None, None)


# ------------------------------------------------------------------------- results


def log_dir(name: str) -> Path:
    """A fresh bench/results/logs/NAME for the processes' output (kept for post-mortems)."""
    import shutil

    path = RESULTS_DIR / "logs" / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
    }
    with contextlib.suppress(OSError):
        info["loadavg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        ).stdout.strip()
    return info


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, set):
        return sorted(value)
    return value


def write_results(name: str, data: Mapping[str, Any], results_dir: Path | None = None) -> Path:
    """Write ``{name}.json`` (strict JSON: NaN becomes null) and return its path."""
    directory = results_dir or RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    payload = {
        "bench": name,
        "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        **data,
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(_json_safe(payload), indent=2, allow_nan=False) + "\n")
    return path


def fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return str(value)


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [
        [fmt(c) if not isinstance(c, str) else c for c in r] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(cells[0], widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        lines.append(
            "  ".join(
                c.rjust(w) if i else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def target_verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "MISSED")


def aggregate(reps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Median across repetitions of throughput and latency percentiles; errors summed."""
    keys = ["throughput_rps", "p50_ms", "p95_ms", "p99_ms", "mean_ms", "server_cpu_ms_per_request"]
    keys += sorted(k for k in (reps[0] if reps else {}) if k.endswith("_cpu_ms_per_job"))
    out: dict[str, Any] = {k: round(median_of(reps, k), 3) for k in keys if reps and k in reps[0]}
    out["reps"] = len(reps)
    out["errors"] = int(sum(r.get("errors", 0) for r in reps))
    out["non_2xx"] = int(sum(r.get("requests", 0) - r.get("ok", 0) for r in reps))
    return out


async def submit_n(
    port: int, make_request: RequestFactory, *, count: int, concurrency: int
) -> LoadResult:
    """Send exactly ``count`` requests over ``concurrency`` keep-alive connections."""
    conns = [await _connect(port) for _ in range(min(concurrency, count))]
    loop = asyncio.get_running_loop()
    indices = iter(range(count))
    result = LoadResult(duration_s=0.0)
    started = loop.time()

    async def worker(conn: _HttpConnection) -> None:
        for index in indices:
            began = loop.time()
            try:
                status, _ = await conn.request(make_request(index))
            except (HttpError, OSError):
                result.errors += 1
                conn = await _connect(port)
                continue
            result.latencies_s.append(loop.time() - began)
            result.statuses[status] += 1

    await _on_each(conns, worker)
    result.duration_s = loop.time() - started
    return result
