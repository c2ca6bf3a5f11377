"""The embedded runtime on the real parts: Tansu, Apache Kafka, redis-server.

Start-up and Vigil's topics on both brokers; Apache Kafka and Redis keep what they
acknowledged across a restart and a crash; and the runtime leaves no process behind however
it is stopped (Ctrl-C, SIGTERM, SIGKILL).
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared import runtime
from shared.kafka import INPUT_TOPICS, TOPICS, topic_plan
from shared.settings import Settings

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parents[2]

# The command that runs Vigil on this machine until Ctrl-C. Switch to the CLI with one line:
#   UP_COMMANDS = {"vigil up": [sys.executable, "-m", "services.cli", "up"]}
UP_COMMANDS = {"vigil up": [sys.executable, "-m", "services.cli", "up"]}


# --------------------------------------------------------------------------- helpers


async def _partitions(bootstrap: str) -> dict[str, int]:
    """Topic -> partition count, from the broker's metadata."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics()
                if t["error_code"] == 0}
    finally:
        await admin.close()


async def _create_topic(bootstrap: str, partitions: int) -> str:
    topic = f"runtime-test-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20_000)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


async def _produce(bootstrap: str, topic: str, n: int, idempotent: bool) -> set[bytes]:
    """Send `n` distinct records with acks=all; return those the broker acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=idempotent, linger_ms=5)
    await producer.start()
    try:
        values = [f"record-{i}".encode() for i in range(n)]
        futures = [await producer.send(topic, v, key=str(i % 13).encode())
                   for i, v in enumerate(values)]
        acked = await asyncio.gather(*futures)
        assert all(md.offset >= 0 for md in acked)
        return set(values)
    finally:
        await producer.stop()


async def _consume_all(bootstrap: str, topic: str, expected: int,
                       timeout: float = 60.0) -> list[bytes]:
    """Every record of `topic` from the start (no group), until `expected` or `timeout`."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=20_000)
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        while not consumer.partitions_for_topic(topic):
            assert time.monotonic() < deadline, f"{topic} has no partitions after restart"
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.2)
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        got: list[bytes] = []
        while len(got) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1_000)
            got += [m.value for msgs in batch.values() for m in msgs]
        return got
    finally:
        await consumer.stop()


# --------------------------------------------------------------------------- start-up


async def test_broker_answers_metadata_with_vigil_topics(broker):
    assert runtime.kafka_answers(broker.address)
    partitions = await _partitions(broker.address)
    for topic, (n, _configs) in topic_plan(8).items():
        assert partitions.get(topic) == n, f"{topic} on {broker.name}: {partitions.get(topic)}"
    assert all(partitions[TOPICS[name]] == 8 for name in INPUT_TOPICS)


async def test_broker_round_trips_acknowledged_records(broker):
    topic = await _create_topic(broker.address, 3)
    sent = await _produce(broker.address, topic, 200, idempotent=False)
    got = await _consume_all(broker.address, topic, len(sent))
    assert sorted(got) == sorted(sent)


async def test_apache_kafka_compacts_the_models_topic(apache_kafka):
    admin = AIOKafkaAdminClient(bootstrap_servers=apache_kafka.address)
    await admin.start()
    try:
        [resp] = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, TOPICS["models"], {"cleanup.policy": None})])
    finally:
        await admin.close()
    entries = resp.to_object()["resources"][0]["config_entries"]
    assert {e["config_names"]: e["config_value"] for e in entries}["cleanup.policy"] == "compact"


def test_servers_report_their_start_up_time(broker, redis_server):
    assert broker.startup_seconds is not None and broker.startup_seconds < 60
    assert redis_server.startup_seconds is not None and redis_server.startup_seconds < 30
    print(f"\n{broker.name} ready in {broker.startup_seconds:.2f} s; "
          f"redis in {redis_server.startup_seconds:.3f} s")


def test_a_paused_broker_stops_answering_until_resumed(tansu):
    tansu.pause()
    try:
        assert tansu.paused
        assert not runtime.kafka_answers(tansu.address, timeout=0.5)
    finally:
        tansu.resume()
    assert runtime.kafka_answers(tansu.address, timeout=5)


def test_a_paused_server_still_stops_cleanly(tmp_path):
    proc = runtime.start_redis(tmp_path)
    proc.pause()
    assert not runtime.redis_answers(proc.address, timeout=0.5)
    assert proc.stop(timeout=10) == 0  # SIGTERM is delivered once it is continued
    assert "ready to exit" in (tmp_path / "redis" / "redis.log").read_text()


def test_a_restarted_tansu_comes_back_on_its_port_without_data(tmp_path):
    proc = runtime.start_tansu(tmp_path)
    try:
        runtime.create_topics(proc.address, 2)
        address, pid = proc.address, proc.pid
        proc.restart()
        assert (proc.address, proc.running) == (address, True) and proc.pid != pid
        assert asyncio.run(_partitions(address)) == {}  # memory storage: topics are gone
    finally:
        proc.stop()
    assert not proc.running and not runtime.kafka_answers(address, timeout=0.5)


def test_a_server_started_from_a_worker_thread_outlives_the_thread(tmp_path):
    # the parent-death signal fires when the *thread* that forked the child exits
    started: list[runtime.Proc] = []
    worker = threading.Thread(target=lambda: started.append(runtime.start_tansu(tmp_path)))
    worker.start()
    worker.join()
    try:
        time.sleep(0.3)
        assert started[0].running and runtime.kafka_answers(started[0].address)
    finally:
        started[0].stop()


def test_embedded_stack_starts_what_settings_leave_unset(tmp_path):
    settings = Settings(data_dir=tmp_path, embedded_broker="tansu", topic_partitions=3)
    with runtime.EmbeddedStack(settings) as stack:
        assert set(stack.procs) == {"tansu", "redis"}
        assert runtime.kafka_answers(stack.kafka_bootstrap)
        assert redis.Redis.from_url(stack.redis_url).ping()
        assert sorted(stack.topics_created) == sorted(TOPICS.values())
        assert asyncio.run(_partitions(stack.kafka_bootstrap))[TOPICS["predictions"]] == 3
    assert not any(proc.running for proc in stack.procs.values())
    assert (tmp_path / "redis" / "appendonly.aof").exists()


def test_embedded_stack_starts_nothing_when_both_are_configured(tansu, redis_url, tmp_path):
    settings = Settings(data_dir=tmp_path, kafka_bootstrap=tansu.address, redis_url=redis_url)
    with runtime.EmbeddedStack(settings) as stack:
        assert stack.procs == {}
        assert (stack.kafka_bootstrap, stack.redis_url) == (tansu.address, redis_url)
        assert stack.topics_created == []  # the fixture created them already
    assert tansu.running
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- durability


@pytest.mark.slow
@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill"])
async def test_apache_kafka_keeps_acknowledged_records_across_restart(fresh_kafka, crash):
    bootstrap = fresh_kafka.address
    topic = await _create_topic(bootstrap, 4)
    sent = await _produce(bootstrap, topic, 2_000, idempotent=True)
    pid = fresh_kafka.pid

    fresh_kafka.restart(kill=crash)

    assert fresh_kafka.pid != pid and fresh_kafka.address == bootstrap
    got = await _consume_all(bootstrap, topic, len(sent))
    assert len(got) == len(sent) and set(got) == sent
    partitions = await _partitions(bootstrap)
    assert all(partitions.get(t) == n for t, (n, _) in topic_plan(8).items())


@pytest.mark.slow
async def test_apache_kafka_log_dir_comes_back_on_other_ports(fresh_kafka):
    # a static quorum: the next `vigil up` may find the previous ports taken
    topic = await _create_topic(fresh_kafka.address, 2)
    sent = await _produce(fresh_kafka.address, topic, 300, idempotent=True)
    fresh_kafka.stop()
    moved = runtime.start_kafka(fresh_kafka.home.parent, port=runtime.free_port(),
                                controller_port=runtime.free_port())
    try:
        assert moved.port != fresh_kafka.port
        got = await _consume_all(moved.address, topic, len(sent))
        assert sorted(got) == sorted(sent)
    finally:
        moved.stop()


@pytest.mark.parametrize("crash", [False, True], ids=["stop", "kill"])
def test_redis_keeps_acknowledged_writes_across_restart(tmp_path, crash):
    proc = runtime.start_redis(tmp_path)
    try:
        client = redis.Redis.from_url(proc.address)
        client.mset({f"k{i}": i for i in range(1_000)})
        client.close()
        url = proc.address

        proc.restart(kill=crash)

        client = redis.Redis.from_url(url)
        assert client.get("k999") == b"999" and client.dbsize() == 1_000
        client.close()
    finally:
        proc.stop()


# --------------------------------------------------------------------------- no orphans


def _alive(p: psutil.Process) -> bool:
    try:  # is_running() also guards against the pid being reused
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class _Lines:
    """The child's output, read on a thread so the pipe never fills."""

    def __init__(self, stream) -> None:
        self.lines: list[str] = []
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream) -> None:
        for raw in stream:
            self._q.put(raw.decode(errors="replace").rstrip("\n"))
        self._q.put(None)

    def wait_for(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} within {timeout:.0f} s; output:\n" + "\n".join(self.lines))


CASES = [("tansu", signal.SIGINT), ("tansu", signal.SIGTERM), ("tansu", signal.SIGKILL),
         ("kafka", signal.SIGTERM), ("kafka", signal.SIGKILL)]


@pytest.mark.slow
@pytest.mark.parametrize("command", list(UP_COMMANDS.values()), ids=list(UP_COMMANDS))
@pytest.mark.parametrize("embedded,sig", CASES,
                         ids=[f"{b}-{signal.Signals(s).name}" for b, s in CASES])
def test_stopping_vigil_leaves_no_process_behind(command, embedded, sig, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIGIL_KAFKA_BOOTSTRAP", "VIGIL_REDIS_URL", "VIGIL_CONFIG")}
    env.update(VIGIL_DATA_DIR=str(tmp_path), VIGIL_EMBEDDED_BROKER=embedded,
               PYTHONUNBUFFERED="1")
    for name in ("INGEST", "DRIFT", "OVERSIGHT", "ALERTS"):
        env[f"VIGIL_{name}_PORT"] = str(runtime.free_port())
    vigil = subprocess.Popen(command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)  # its own group, as in a terminal
    descendants: list[psutil.Process] = []
    try:
        out = _Lines(vigil.stdout)
        out.wait_for("Vigil is up", timeout=180)
        descendants = psutil.Process(vigil.pid).children(recursive=True)
        names = sorted(p.name() for p in descendants)
        assert len(descendants) >= 2, f"expected a broker and redis-server, found {names}"
        assert any("redis" in n for n in names), names

        if sig == signal.SIGINT:
            os.killpg(vigil.pid, sig)  # Ctrl-C: the terminal signals the foreground group
        else:
            vigil.send_signal(sig)
        vigil.wait(timeout=60)
        deadline = time.monotonic() + (15 if sig == signal.SIGKILL else 45)
        while any(_alive(p) for p in descendants) and time.monotonic() < deadline:
            time.sleep(0.1)

        left = [f"{p.pid} {p.name()}" for p in descendants if _alive(p)]
        assert not left, f"still running after {signal.Signals(sig).name}: {left}"
        if sig != signal.SIGKILL:  # a clean stop: each server shut itself down
            assert vigil.returncode in (0, 128 + sig), vigil.returncode
            assert "ready to exit" in (tmp_path / "redis" / "redis.log").read_text()
    finally:
        for p in [*descendants, psutil.Process(vigil.pid) if vigil.poll() is None else None]:
            if p is not None and _alive(p):
                p.kill()
        vigil.wait(timeout=30)
