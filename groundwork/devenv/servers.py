"""Start real PostgreSQL, Redis, RabbitMQ and PgBouncer servers on loopback.

The test harness, the benchmarks and ``groundwork dev`` use these: each server runs
from the machine's Debian packages on a free 127.0.0.1 port with its data in a
temporary directory, and can be stopped and started again on the same port (the
fault-injection tests restart Redis, PostgreSQL and RabbitMQ mid-test). Passwords are
generated per run; nothing here is a fixed credential.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQCTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
INSTALL_HINT = (
    "install it with: sudo apt-get install -y postgresql redis-server rabbitmq-server pgbouncer "
    "(or run `bash .ci/run`, which installs everything the tests need)"
)


class ServerUnavailableError(RuntimeError):
    """A server binary is missing or a server did not come up."""


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct free ports (held open together, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def wait_for_port(
    port: int, timeout: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerUnavailableError(f"process exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise ServerUnavailableError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f}s")


def _find(binary: str, *candidates: Path) -> str:
    for candidate in candidates:
        if candidate.exists():
            return str(candidate)
    found = shutil.which(binary)
    if found is None:
        raise ServerUnavailableError(f"{binary} not found; {INSTALL_HINT}")
    return found


def _unprivileged_user() -> pwd.struct_passwd | None:
    """PostgreSQL and PgBouncer refuse to run as root; run them as `postgres` then."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise ServerUnavailableError("running as root and no 'postgres' user exists; " + INSTALL_HINT)


def _demote(user: pwd.struct_passwd | None) -> Callable[[], None] | None:
    if user is None:
        return None

    def _set_ids() -> None:
        os.setgid(user.pw_gid)
        os.setuid(user.pw_uid)

    return _set_ids


def _spawn_quiet(
    argv: list[str], preexec_fn: Callable[[], None] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server that writes its own log file, in its own session so that a Ctrl-C
    in the terminal does not reach it before ``stop``."""
    return subprocess.Popen(  # noqa: S603
        argv,
        preexec_fn=preexec_fn,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for root, dirs, files in os.walk(path):
        os.chown(root, user.pw_uid, user.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), user.pw_uid, user.pw_gid)


@dataclass
class Postgres:
    workdir: Path
    port: int = field(default_factory=free_port)
    user: str = "groundwork"
    database: str = "groundwork"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _bin: Path | None = None
    _os_user: pwd.struct_passwd | None = None

    @property
    def datadir(self) -> Path:
        return self.workdir / "pgdata"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - fixed binaries, no shell
            list(args),
            check=check,
            capture_output=True,
            text=True,
            preexec_fn=_demote(self._os_user),
            cwd=self.workdir,
        )

    def start(self) -> None:
        if self._bin is None:
            if not POSTGRES_BIN_DIRS:
                raise ServerUnavailableError(f"PostgreSQL server not found; {INSTALL_HINT}")
            self._bin = POSTGRES_BIN_DIRS[0]
            self._os_user = _unprivileged_user()
        if not self.datadir.exists():
            self._initdb()
        proc = self._run(
            str(self._bin / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.workdir / "pg.log"),
            "-w",
            "-t",
            "30",
            "-o",
            f"-p {self.port} -k {self.workdir}",
            "start",
            check=False,
        )
        if proc.returncode != 0:
            log = (self.workdir / "pg.log").read_text(errors="replace")[-2000:]
            raise ServerUnavailableError(f"PostgreSQL did not start: {proc.stderr}\n{log}")

    def _initdb(self) -> None:
        assert self._bin is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        pwfile = self.workdir / "pwfile"
        pwfile.write_text(self.password)
        _chown_tree(self.workdir, self._os_user)
        self._run(
            str(self._bin / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--no-sync",
        )
        with (self.datadir / "postgresql.conf").open("a") as conf:
            # Speed over durability: these servers hold throwaway test data.
            conf.write(
                "listen_addresses = '127.0.0.1'\nfsync = off\nsynchronous_commit = off\n"
                "full_page_writes = off\nmax_connections = 300\nlog_min_messages = warning\n"
            )
        self.start()
        self.psql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'")
        self.psql(f"CREATE DATABASE {self.database} OWNER {self.user}")
        self.stop()
        pwfile.unlink()

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement as the superuser over the local socket."""
        assert self._bin is not None
        proc = self._run(
            str(self._bin / "psql"),
            "-h",
            str(self.workdir),
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
            check=False,
        )
        if proc.returncode != 0:
            raise ServerUnavailableError(f"psql failed: {proc.stderr.strip()}")
        return proc.stdout

    def create_database(self, name: str) -> None:
        self.psql(f"CREATE DATABASE {name} OWNER {self.user}")

    def stop(self) -> None:
        if self._bin is not None and (self.datadir / "postmaster.pid").exists():
            self._run(
                str(self._bin / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-m",
                "fast",
                "-w",
                "stop",
                check=False,
            )

    @property
    def running(self) -> bool:
        return (self.datadir / "postmaster.pid").exists()

    def serve_tls(self, certificate_chain: bytes, key: bytes) -> None:
        """Serve TLS with ``certificate_chain`` (PEM, leaf first) and ``key`` (PEM), as a
        managed database presents its own. The files belong to the server's user with mode
        0600, which PostgreSQL demands of server.key; the reload applies them to new
        connections."""
        owner = self.datadir.stat()
        for name, data in (("server.crt", certificate_chain), ("server.key", key)):
            path = self.datadir / name
            path.write_bytes(data)
            os.chown(path, owner.st_uid, owner.st_gid)
            os.chmod(path, 0o600)
        self.psql("ALTER SYSTEM SET ssl = on")
        self.psql("SELECT pg_reload_conf()")


@dataclass
class Redis:
    workdir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _find("redis-server")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._process = _spawn_quiet(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--requirepass",
                self.password,
                "--dir",
                str(self.workdir),
                "--logfile",
                str(self.workdir / "redis.log"),
            ]
        )
        wait_for_port(self.port, 15, self._process)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None


@dataclass
class RabbitMQ:
    workdir: Path
    port: int = field(default_factory=free_port)
    user: str = "groundwork"
    password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    management: bool = False
    management_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None
    _epmd_port: int = field(default_factory=free_port)
    _dist_port: int = field(default_factory=free_port)

    @property
    def nodename(self) -> str:
        return f"gw{self.port}@localhost"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            HOME=str(self.workdir),
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self._dist_port),
            ERL_EPMD_PORT=str(self._epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
            RABBITMQ_MNESIA_BASE=str(self.workdir / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.workdir / "log"),
            RABBITMQ_CONFIG_FILE=str(self.workdir / "rabbitmq"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.workdir / "enabled_plugins"),
            RABBITMQ_PID_FILE=str(self.workdir / "rabbit.pid"),
            RABBITMQ_LOGS="-",
        )
        return env

    def start(self) -> None:
        binary = _find("rabbitmq-server", RABBITMQ_SERVER)
        self.workdir.mkdir(parents=True, exist_ok=True)
        plugins = "[rabbitmq_management]." if self.management else "[]."
        (self.workdir / "enabled_plugins").write_text(plugins + "\n")
        conf = [
            f"default_user = {self.user}",
            f"default_pass = {self.password}",
            "loopback_users = none",
            "log.console.level = warning",
            "vm_memory_high_watermark.relative = 0.2",
            "disk_free_limit.absolute = 50MB",
        ]
        if self.management:
            conf += [
                f"management.tcp.port = {self.management_port}",
                "management.tcp.ip = 127.0.0.1",
            ]
        (self.workdir / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        self._process = subprocess.Popen(  # noqa: S603
            [binary],
            env=self._env(),
            cwd=self.workdir,
            start_new_session=True,
            stdout=open(self.workdir / "rabbit.out", "ab"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(self.port, 90, self._process)
        except ServerUnavailableError as exc:
            out = (self.workdir / "rabbit.out").read_text(errors="replace")[-2000:]
            raise ServerUnavailableError(f"RabbitMQ did not start: {exc}\n{out}") from None

    def stop(self) -> None:
        if self._process is None or self._process.poll() is not None:
            self._process = None
            return
        ctl = _find("rabbitmqctl", RABBITMQCTL)
        subprocess.run(  # noqa: S603
            [ctl, "-n", self.nodename, "stop"],
            env=self._env(),
            capture_output=True,
            timeout=60,
            check=False,
        )
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process = None

    def kill_epmd(self) -> None:
        with contextlib.suppress(Exception):
            subprocess.run(  # noqa: S603
                [shutil.which("epmd") or "epmd", "-port", str(self._epmd_port), "-kill"],
                capture_output=True,
                timeout=5,
                check=False,
                env=self._env(),
            )

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def url(self) -> str:
        return f"amqp://{self.user}:{self.password}@127.0.0.1:{self.port}/"


@dataclass
class PgBouncer:
    """PgBouncer in transaction mode in front of ``upstream`` (as RDS Proxy would be)."""

    workdir: Path
    upstream: Postgres
    port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = _find("pgbouncer", Path("/usr/sbin/pgbouncer"))
        os_user = _unprivileged_user()
        self.workdir.mkdir(parents=True, exist_ok=True)
        up = self.upstream
        (self.workdir / "userlist.txt").write_text(f'"{up.user}" "{up.password}"\n')
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={up.port}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\n"
            f"unix_socket_dir = {self.workdir}\n"
            "auth_type = scram-sha-256\n"
            f"auth_file = {self.workdir / 'userlist.txt'}\n"
            "pool_mode = transaction\nmax_client_conn = 500\ndefault_pool_size = 20\n"
            # Reconnect quickly after the restart tests stop PostgreSQL (default 15 s).
            "server_login_retry = 1\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n"
        )
        _chown_tree(self.workdir, os_user)
        self._process = _spawn_quiet(
            [binary, str(self.workdir / "pgbouncer.ini")], preexec_fn=_demote(os_user)
        )
        wait_for_port(self.port, 15, self._process)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(10)
        self._process = None


@dataclass
class DevServers:
    postgres: Postgres
    redis: Redis
    rabbitmq: RabbitMQ
    pgbouncer: PgBouncer | None = None

    def env(self, *, via_pgbouncer: bool = False) -> dict[str, str]:
        """The service's environment variables (see groundwork_app.settings) for these servers."""
        db_port = self.pgbouncer.port if via_pgbouncer and self.pgbouncer else self.postgres.port
        return {
            "DB_HOST": "127.0.0.1",
            "DB_PORT": str(db_port),
            "DB_NAME": self.postgres.database,
            "DB_USER": self.postgres.user,
            "DB_PASSWORD": self.postgres.password,
            "DB_SSLMODE": "disable",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(self.redis.port),
            "REDIS_PASSWORD": self.redis.password,
            "RABBITMQ_HOST": "127.0.0.1",
            "RABBITMQ_PORT": str(self.rabbitmq.port),
            "RABBITMQ_USER": self.rabbitmq.user,
            "RABBITMQ_PASSWORD": self.rabbitmq.password,
        }

    def stop(self) -> None:
        for server in (self.pgbouncer, self.rabbitmq, self.redis, self.postgres):
            if server is not None:
                with contextlib.suppress(Exception):
                    server.stop()
        with contextlib.suppress(Exception):
            self.rabbitmq.kill_epmd()


@contextlib.contextmanager
def dev_servers(
    *, pgbouncer: bool = False, management: bool = False, root: Path | None = None
) -> Iterator[DevServers]:
    """Start every server (in parallel where it helps) and stop them all afterwards."""
    base = Path(tempfile.mkdtemp(prefix="groundwork-servers-", dir=root))
    os.chmod(base, 0o755)  # noqa: S103 - the unprivileged postgres user must traverse it
    postgres = Postgres(base / "postgres")
    redis = Redis(base / "redis")
    rabbitmq = RabbitMQ(base / "rabbitmq", management=management)
    servers = DevServers(postgres, redis, rabbitmq)
    try:
        rabbitmq.start()  # slowest: boots the Erlang VM while the others start
        postgres.start()
        redis.start()
        if pgbouncer:
            servers.pgbouncer = PgBouncer(base / "pgbouncer", postgres)
            servers.pgbouncer.start()
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(base, ignore_errors=True)
