"""docker-compose.yml: the local production-like stack (see docs/image.md).

The structural tests read the file the way Compose does (YAML anchors and merge
keys resolved) and hold it to the rules the issue sets: every long-running service
has a health check, startup order is health-gated, one-shot jobs are adopted by a
`service_completed_successfully` dependency (so `docker compose up --wait` exits 0),
no secret is committed and nothing is published beyond loopback. The compose tool's
own `config` check runs too.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from groundwork_app.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
APP_SERVICES = ("api", "worker", "relay")
ONE_SHOT = ("migrate",)
REQUIRED_SERVICES = {
    "postgres",
    "pgbouncer",
    "redis",
    "rabbitmq",
    "jaeger",
    "prometheus",
    "grafana",
    *APP_SERVICES,
    *ONE_SHOT,
}
GATED_CONDITIONS = {"service_healthy", "service_completed_successfully"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|_KEY$")
REQUIRED_VAR = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}$")
OPTIONAL_EMPTY_VAR = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):-\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _has_healthcheck(service: dict[str, Any]) -> bool:
    check = service.get("healthcheck") or {}
    return not check.get("disable") and bool(check.get("test"))


def test_every_component_of_the_stack_is_defined(services: dict[str, Any]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    without = [
        name for name, svc in services.items() if name not in ONE_SHOT and not _has_healthcheck(svc)
    ]
    assert not without, f"services without a health check: {without}"


def test_one_shot_jobs_do_not_restart_and_are_adopted(services: dict[str, Any]) -> None:
    for job in ONE_SHOT:
        assert services[job].get("restart") == "no", f"{job} must run once (restart: 'no')"
        adopters = [
            name
            for name, svc in services.items()
            if (svc.get("depends_on") or {}).get(job, {}).get("condition")
            == "service_completed_successfully"
        ]
        # Without a long-running adopter `docker compose up --wait` reports the exited
        # job as a failure (docker/compose#10596).
        assert set(APP_SERVICES) <= set(adopters), f"{job} adopted only by {adopters}"


def test_depends_on_is_always_gated_on_health_or_completion(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        depends = svc.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on must use conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            condition = (spec or {}).get("condition")
            assert condition in GATED_CONDITIONS, f"{name} -> {target}: condition {condition}"
            if condition == "service_healthy":
                assert _has_healthcheck(services[target]), (
                    f"{name} waits for {target} to be healthy, but {target} has no health check"
                )
            else:
                assert target in ONE_SHOT, f"{name} waits for long-running {target} to exit"


def test_app_services_start_after_their_dependencies(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        depends = services[name]["depends_on"]
        for dep in ("migrate", "pgbouncer", "redis", "rabbitmq"):
            assert dep in depends, f"{name} must wait for {dep}"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["pgbouncer"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_app_services_use_pgbouncer_and_migrate_bypasses_it(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = _env(services[name])
        assert (env["DB_HOST"], env["DB_PORT"]) == ("pgbouncer", "6432"), name
    migrate = _env(services["migrate"])
    assert (migrate["DB_HOST"], migrate["DB_PORT"]) == ("postgres", "5432")


def test_app_services_run_the_one_image_with_its_commands(services: dict[str, Any]) -> None:
    images = {services[name]["image"] for name in (*APP_SERVICES, *ONE_SHOT)}
    assert len(images) == 1, f"one image for every process, got {images}"
    for name in (*APP_SERVICES, *ONE_SHOT):
        svc = services[name]
        assert svc["build"]["context"] == "services/app"
        assert svc["command"] == [name]
        if name in APP_SERVICES:
            assert svc["healthcheck"]["test"] == [
                "CMD",
                "/opt/venv/bin/groundwork-app",
                "healthcheck",
                name,
            ]


def test_app_containers_are_locked_down_like_production(services: dict[str, Any]) -> None:
    for name in (*APP_SERVICES, *ONE_SHOT):
        svc = services[name]
        assert svc.get("read_only") is True, f"{name}: read-only root filesystem"
        assert "/tmp" in svc.get("tmpfs", []), f"{name}: /tmp must be a tmpfs"
        assert svc.get("cap_drop") == ["ALL"], f"{name}: drop all capabilities"
        assert "no-new-privileges:true" in svc.get("security_opt", []), name
        assert "user" not in svc, f"{name}: the image's non-root user must not be overridden"


def test_app_environment_matches_the_service_settings(services: dict[str, Any]) -> None:
    known = {field.upper() for field in Settings.model_fields}
    for name in (*APP_SERVICES, *ONE_SHOT):
        unknown = set(_env(services[name])) - known
        assert not unknown, f"{name} sets variables the service does not read: {unknown}"
        assert _env(services[name])["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"


def test_no_secret_is_committed_in_the_compose_file(services: dict[str, Any]) -> None:
    required: set[str] = set()
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if not SECRET_NAME.search(key):
                continue
            if match := REQUIRED_VAR.match(value):
                required.add(match["name"])
            else:
                assert OPTIONAL_EMPTY_VAR.match(value), (
                    f"{name}.{key} must come from .env as ${{VAR:?message}} (or default to "
                    f"empty), not {value!r}"
                )
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    missing = required - set(example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    for var in required:
        assert example[var].startswith("dev-only-"), f"{var} example must be named dev-only-..."


def test_dot_env_is_git_ignored() -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail("git and a checkout are needed to prove .env is ignored")
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT, check=False)
    assert result.returncode == 0, ".env must be listed in .gitignore"


def test_published_ports_bind_loopback_only(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_observability_wiring(services: dict[str, Any]) -> None:
    prometheus_mounts = services["prometheus"]["volumes"]
    assert any("groundwork.rules.yml" in mount for mount in prometheus_mounts)
    for mount in [*prometheus_mounts, *services["grafana"]["volumes"]]:
        source = mount.split(":", 1)[0]
        assert (ROOT / source).exists(), f"mounted path {source} does not exist"
        assert mount.endswith(":ro"), f"{mount} should be mounted read-only"
    prom = yaml.safe_load((ROOT / "deploy/local/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prom["scrape_configs"]
    }
    assert targets["api"] == ["api:8000"]
    assert targets["worker"] == ["worker:8081"]
    assert targets["relay"] == ["relay:8081"]
    assert prom["rule_files"] == ["/etc/prometheus/groundwork.rules.yml"]


def test_pgbouncer_pools_in_transaction_mode() -> None:
    ini = configparser.ConfigParser()
    ini.read(ROOT / "deploy/local/pgbouncer/pgbouncer.ini")
    assert ini["pgbouncer"]["pool_mode"] == "transaction"
    assert ini["pgbouncer"]["auth_type"] == "scram-sha-256"
    assert "host=postgres" in ini["databases"]["*"]
    # The auth file is written at start from the environment, never committed.
    assert ini["pgbouncer"]["auth_file"].startswith("/tmp/")


def _compose_command() -> list[str]:
    docker = shutil.which("docker")
    if (
        docker
        and subprocess.run(
            [docker, "compose", "version"], capture_output=True, check=False
        ).returncode
        == 0
    ):
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail(
        "no compose tool: install the compose plugin or `apt-get install docker-compose` "
        "(scripts/bootstrap.sh does)"
    )


def test_compose_config_is_valid(tmp_path: Path) -> None:
    cmd = _compose_command()
    env = {k: v for k, v in os.environ.items() if k not in _required_vars()}
    result = subprocess.run(
        [*cmd, "--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_refuses_to_start_without_secrets(tmp_path: Path) -> None:
    cmd = _compose_command()
    empty = tmp_path / "empty.env"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in _required_vars()}
    result = subprocess.run(
        [*cmd, "--env-file", str(empty), "-f", str(COMPOSE_FILE), "config", "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "set it in .env, see .env.example" in result.stderr


def _required_vars() -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))
