"""Start-up: process start -> /health/ready 200 for the api and the worker.

This is the cold start Cloud Run and Fargate users pay on top of pulling the image.
Baseline: the hello-world (bench/hello.py) on the same uvicorn settings, measured the
same way in the same run. Also reported: the import time of the API's modules
(the part the service controls) and the image size when the image test built one.

    uv run python -m bench.startup [--reps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    LOOPBACK,
    app_command,
    bench_servers,
    log_dir,
    median_of,
    migrate,
    positive_int,
    print_table,
    ratio,
    service_env,
    start_process,
    stop_process,
    target_verdict,
    wait_until_ok,
    write_results,
)

API_TARGET_SECONDS = 1.5
IMAGE = "groundwork-app:image-test"  # what tests/image builds
BASE_IMAGE = os.environ.get("GROUNDWORK_TEST_BASE_IMAGE", "groundwork-test-base")
_IMPORT_PROBE = (
    "import time; t = time.perf_counter(); import groundwork_app.cli, groundwork_app.api.app; "
    "print(time.perf_counter() - t)"
)


def _free_port() -> int:
    from groundwork.devenv.servers import free_port

    return free_port()


def time_to_ready(args: list[str], env: dict[str, str], url: str, log: Path) -> float:
    started = time.monotonic()
    proc = start_process(args, env, log)
    try:
        ready = wait_until_ok(url, timeout=60, proc=proc, log_path=log, interval=0.005)
    finally:
        stop_process(proc)
    return ready - started


def import_seconds(env: dict[str, str]) -> float:
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(proc.stdout.strip())


def bytecode_precompiled() -> bool:
    """Whether the dependencies come with bytecode, as in the image. Without it (uv's
    default) and with PYTHONDONTWRITEBYTECODE set, every start compiles every module it
    imports, which more than doubles both the API's and the hello-world's times."""
    import importlib.util

    spec = importlib.util.find_spec("redis")  # the API's largest dependency
    origin = spec.origin if spec is not None else None
    return origin is not None and Path(importlib.util.cache_from_source(origin)).exists()


def _image_bytes(image: str) -> int | None:
    try:
        proc = subprocess.run(
            ["docker", "image", "inspect", image, "--format", "{{json .Size}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return int(json.loads(proc.stdout)) if proc.returncode == 0 else None


def image_size() -> dict[str, Any]:
    """The image the image tests built, and its app layers (image minus base) when the
    base image is there too (the figure docs/image.md budgets)."""
    total = _image_bytes(IMAGE)
    if total is None:
        return {
            "measured": False,
            "reason": f"no {IMAGE} image or no Docker (build it: uv run pytest tests/image)",
        }
    out: dict[str, Any] = {"measured": True, "image": IMAGE, "bytes": total}
    base = _image_bytes(BASE_IMAGE)
    if base is not None:
        out["base_bytes"] = base
        out["app_layer_bytes"] = total - base
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=positive_int, default=5)
    parser.add_argument("--name", default="startup")
    args = parser.parse_args(argv)
    work = log_dir(args.name)
    reps: dict[str, list[dict[str, float]]] = {
        "hello": [],
        "api": [],
        "worker": [],
        "api_imports": [],
    }
    with bench_servers() as servers:
        env = service_env(servers.env(), work)
        migrate(env, work / "migrate.log")
        for rep in range(args.reps):  # interleaved, so noise hits all alike
            # (process, command, the variable that takes its health port)
            for process, command, port_variable in (
                ("hello", [sys.executable, "-m", "bench.hello"], "PORT"),
                ("api", app_command("api"), "PORT"),
                ("worker", app_command("worker"), "WORKER_HEALTH_PORT"),
            ):
                port = _free_port()
                seconds = time_to_ready(
                    command,
                    {**env, port_variable: str(port)},
                    f"http://{LOOPBACK}:{port}/health/ready",
                    work / f"{process}.log",
                )
                reps[process].append({"seconds": seconds})
            reps["api_imports"].append({"seconds": import_seconds(env)})
            print(
                f"  rep {rep + 1}: "
                + ", ".join(f"{k} {v[-1]['seconds']:.2f}s" for k, v in reps.items()),
                flush=True,
            )
    medians = {k: round(median_of(v, "seconds"), 3) for k, v in reps.items()}
    image = image_size()
    bytecode = bytecode_precompiled()
    api_ok = medians["api"] < API_TARGET_SECONDS
    rows = [
        ["hello-world (baseline)", medians["hello"], 1.0, ""],
        [
            "api",
            medians["api"],
            ratio(medians["api"], medians["hello"]),
            target_verdict(api_ok) + f" (< {API_TARGET_SECONDS} s)",
        ],
        ["worker", medians["worker"], ratio(medians["worker"], medians["hello"]), ""],
        [
            "api imports only",
            medians["api_imports"],
            ratio(medians["api_imports"], medians["hello"]),
            "",
        ],
    ]
    print_table(
        f"Start-up: process start -> /health/ready 200 (median of {args.reps})",
        ["process", "seconds", "x hello", "target"],
        rows,
    )
    if not image["measured"]:
        print(f"image: {image['reason']}")
    else:
        app = image.get("app_layer_bytes")
        print(
            f"image: {image['bytes'] / 1e6:.1f} MB ({IMAGE})"
            + (f", app layers {app / 1e6:.1f} MB" if app is not None else "")
        )
    path = write_results(
        args.name,
        {
            "config": vars(args),
            "medians_s": medians,
            "reps": reps,
            "image": image,
            "bytecode_precompiled": bytecode,
            "targets": {
                "api_ready_s": {
                    "value": medians["api"],
                    "target": API_TARGET_SECONDS,
                    "met": api_ok,
                }
            },
        },
    )
    if not bytecode:
        print(
            "note: no precompiled bytecode (the image has it), so these times include "
            "compiling every import: run `uv sync --all-packages --compile-bytecode` first"
        )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
