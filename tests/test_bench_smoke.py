"""The benchmark machinery: its statistics, its load generator, and one tiny real run.

The numbers in docs/performance.md are only as good as these helpers, so they are
tested against hand-computed values and against a server that counts what it served.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import (
    LoadResult,
    aggregate,
    build_request,
    closed_loop,
    latency_summary,
    open_loop,
    percentile,
    ratio,
    submit_n,
    write_results,
)

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [4.0, 1.0, 3.0, 2.0]  # unsorted on purpose
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 4.0
    assert percentile(values, 50) == 2.5
    assert percentile(values, 25) == pytest.approx(1.75)
    assert percentile(list(range(1, 101)), 99) == pytest.approx(99.01)
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("q", [-1, 100.5])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], q)


def test_percentile_rejects_empty_sample() -> None:
    with pytest.raises(ValueError, match="empty"):
        percentile([], 50)


def test_latency_summary_is_in_milliseconds() -> None:
    summary = latency_summary([0.001, 0.002, 0.003, 0.004, 0.100])
    assert summary["n"] == 5
    assert summary["p50_ms"] == pytest.approx(3.0)
    assert summary["max_ms"] == pytest.approx(100.0)
    assert summary["mean_ms"] == pytest.approx(22.0)
    assert math.isnan(latency_summary([])["p99_ms"])


def test_aggregate_takes_medians_and_sums_failures() -> None:
    reps = [
        {
            "throughput_rps": 100.0,
            "p50_ms": 5.0,
            "p95_ms": 9.0,
            "p99_ms": 20.0,
            "mean_ms": 6.0,
            "errors": 1,
            "requests": 10,
            "ok": 9,
        },
        {
            "throughput_rps": 300.0,
            "p50_ms": 1.0,
            "p95_ms": 2.0,
            "p99_ms": 3.0,
            "mean_ms": 1.0,
            "errors": 0,
            "requests": 10,
            "ok": 10,
        },
        {
            "throughput_rps": 200.0,
            "p50_ms": 3.0,
            "p95_ms": 4.0,
            "p99_ms": 9.0,
            "mean_ms": 2.0,
            "errors": 2,
            "requests": 10,
            "ok": 8,
        },
    ]
    out = aggregate(reps)
    assert out["throughput_rps"] == 200.0
    assert out["p99_ms"] == 9.0
    assert out["errors"] == 3
    assert out["non_2xx"] == 3
    assert out["reps"] == 3


def test_ratio_is_nan_without_a_baseline() -> None:
    assert ratio(50.0, 200.0) == 0.25
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(1.0, float("nan")))


def test_load_result_counts_only_2xx_as_throughput() -> None:
    result = LoadResult(duration_s=2.0)
    result.statuses.update({200: 10, 202: 4, 500: 6})
    assert result.ok == 14
    assert result.throughput == 7.0
    assert result.summary()["statuses"] == {"200": 10, "202": 4, "500": 6}


def test_write_results_is_strict_json(tmp_path: Path) -> None:
    path = write_results(
        "unit", {"value": float("nan"), "nested": {"x": [1.5, float("inf")]}}, tmp_path
    )
    data = json.loads(path.read_text())  # json.loads accepts NaN; check the text too
    assert "NaN" not in path.read_text() and "Infinity" not in path.read_text()
    assert data["value"] is None
    assert data["nested"]["x"] == [1.5, None]
    assert data["bench"] == "unit"
    assert "python" in data["machine"]


class _CountingServer:
    """Keep-alive HTTP/1.1 server that counts requests (split across reads on purpose)."""

    def __init__(self) -> None:
        self.served = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                if length:
                    await reader.readexactly(length)
                self.served += 1
                status = b"202 Accepted" if head.startswith(b"POST") else b"200 OK"
                body = b'{"n":%d}' % self.served
                writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
                await asyncio.sleep(0)
                writer.write(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()


async def test_closed_loop_records_every_request_it_completed() -> None:
    counting = _CountingServer()
    async with counting as port:
        result = await closed_loop(
            port,
            lambda i: build_request("GET", f"/{i}"),
            concurrency=4,
            duration_s=0.5,
            warmup_s=0.0,
        )
    assert result.errors == 0
    assert result.ok == counting.served == len(result.latencies_s)
    assert result.ok > 20
    assert result.throughput == pytest.approx(result.ok / 0.5)


async def test_closed_loop_excludes_the_warm_up() -> None:
    counting = _CountingServer()
    async with counting as port:
        result = await closed_loop(
            port, lambda i: build_request("GET", "/"), concurrency=2, duration_s=0.3, warmup_s=0.3
        )
    assert 0 < result.ok < counting.served


async def test_open_loop_offers_the_requested_rate() -> None:
    counting = _CountingServer()
    async with counting as port:
        result = await open_loop(
            port,
            lambda i: build_request("GET", "/"),
            rate_rps=200,
            duration_s=1.0,
            warmup_s=0.2,
            connections=8,
        )
    assert result.offered_rps == 200
    assert counting.served == 240  # (0.2 + 1.0) s x 200/s, warm-up included
    assert result.ok == 200  # only those scheduled after the warm-up
    assert max(result.latencies_s) < 1.0


async def test_submit_n_sends_exactly_n_with_bodies() -> None:
    counting = _CountingServer()
    async with counting as port:
        result = await submit_n(
            port,
            lambda i: build_request("POST", "/v1/jobs", body=b'{"i":%d}' % i),
            count=57,
            concurrency=8,
        )
    assert counting.served == 57
    assert result.statuses == {202: 57}


def test_tiny_api_bench_run_writes_valid_json(tmp_path: Path) -> None:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.api",
            "--baseline-only",
            "--reps",
            "1",
            "--duration",
            "1",
            "--warmup",
            "0.2",
            "--concurrency",
            "4",
            "--name",
            "smoke",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "hello_get" in proc.stdout
    data = json.loads((tmp_path / "smoke.json").read_text())
    peak = data["peak"]["hello_get"]["median"]
    assert peak["throughput_rps"] > 50
    assert peak["errors"] == 0 and peak["non_2xx"] == 0
    half = data["half_peak"]["hello_get"]["reps"][0]
    assert half["offered_rps"] == pytest.approx(peak["throughput_rps"] / 2, rel=0.01)
    assert data["ratios"]["hello_get"] == 1.0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-env", "BOGUS"], "expected KEY=VALUE, got 'BOGUS'"),
        (["--only", "post_jobs,nope"], "unknown scenario nope; choose from post_jobs, get_job"),
    ],
)
def test_bench_api_rejects_bad_arguments_before_starting_anything(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.api import parse_args

    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_bench_api_parses_settings_to_measure() -> None:
    from bench.api import parse_args

    args = parse_args(["--api-env", "DB_STATEMENT_CACHE_SIZE=100", "--api-env", "X=a=b"])
    assert dict(args.api_env) == {"DB_STATEMENT_CACHE_SIZE": "100", "X": "a=b"}


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        ("bench.pipeline", ["--latencies", "0,abc"], "expected comma-separated whole milliseconds"),
        ("bench.pipeline", ["--reps", "0"], "must be at least 1, got 0"),
        ("bench.api", ["--duration", "-1"], "must be above 0, got -1"),
        ("bench.startup", ["--reps", "two"], "expected a whole number, got 'two'"),
        ("bench.stack_eval", ["--reps", "-3"], "must be at least 1, got -3"),
    ],
)
def test_bench_scripts_reject_bad_numbers_with_a_usage_error(
    module: str, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    with pytest.raises(SystemExit) as exited:
        importlib.import_module(module).main(argv)  # parses before starting anything
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_pipeline_latencies_parse() -> None:
    from bench.pipeline import parse_args

    assert parse_args([]).latencies == [0, 200]
    assert parse_args(["--latencies", "0"]).latencies == [0]


def test_pipeline_sqs_option_adds_the_sqs_system_beside_rabbitmq() -> None:
    from bench.pipeline import SQS_SYSTEM, SYSTEMS, _systems, parse_args

    assert _systems(parse_args([])) == SYSTEMS
    assert _systems(parse_args(["--sqs"])) == (*SYSTEMS, SQS_SYSTEM)
