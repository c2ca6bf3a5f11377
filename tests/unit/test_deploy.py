"""The deploy files agree with the code and the contract.

docker-compose.yml, deploy/Dockerfile, the Prometheus config and rules and the Grafana
dashboards cannot be run here (no Docker engine), so these tests read them and check them
against what they refer to: the `vigil` command line, the `VIGIL_*` settings, the services'
ports, the broker, and the contract's metric names. When Debian's `promtool` is on PATH it
checks the Prometheus files and every dashboard query; under CI=true it must be there.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from services.cli import build_parser
from tests.prometheus_support import concrete, panels_of
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "vigil.yml"

SERVICES = ("ingest", "drift", "oversight", "alerts")
NOTIFICATION_SETTINGS = ("VIGIL_SLACK_WEBHOOK_URL", "VIGIL_PAGERDUTY_ROUTING_KEY",
                         "VIGIL_WEBHOOK_URL", "VIGIL_SMTP_URL")
# DESIGN.md, "Metrics". shared.metrics.CONTRACT_METRICS, when present, is checked as well.
CONTRACT_METRICS = (
    "vigil_events_ingested_total", "vigil_events_rejected_total", "vigil_feature_psi",
    "vigil_feature_ks_statistic", "vigil_prediction_js_divergence", "vigil_model_performance",
    "vigil_override_rate", "vigil_vendor_latency_ms", "vigil_vendor_sla_compliant",
    "vigil_fairness_gap", "vigil_alerts_fired_total", "vigil_alerts_active",
    "vigil_notifications_total", "vigil_detection_latency_seconds",
)
GRAFANA_BUILTINS = {"__rate_interval": "1m", "__interval": "1m", "__range": "1h",
                    "__range_s": "3600", "__interval_ms": "60000"}


# --- loading ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def prometheus() -> dict:
    return yaml.safe_load(PROMETHEUS.read_text())


@pytest.fixture(scope="module", params=DASHBOARD_FILES, ids=lambda p: p.stem)
def dashboard(request) -> dict:
    return json.loads(request.param.read_text())


@pytest.fixture(scope="module")
def all_dashboards() -> list[dict]:
    return [json.loads(p.read_text()) for p in DASHBOARD_FILES]


def env_of(service: dict) -> dict[str, str | None]:
    """A compose service's environment as a dict (map or list syntax; bare keys -> None)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return {k: v for k, v in pairs}
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def command_of(service: dict) -> list[str]:
    cmd = service.get("command")
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd or []]


def published_ports(service: dict) -> list[tuple[int, int]]:
    """(host port, container port) pairs, from the short or the long port syntax."""
    out = []
    for p in service.get("ports") or []:
        if isinstance(p, dict):
            out.append((int(p["published"]), int(p["target"])))
            continue
        parts = str(p).split("/")[0].split(":")
        if len(parts) < 2:
            continue  # container port only: nothing published on a fixed host port
        out.append((int(parts[-2]), int(parts[-1])))
    return out


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {k: (v or {}).get("condition", "service_started") for k, v in deps.items()}


def setting_field(env_name: str) -> str:
    assert env_name.upper().startswith("VIGIL_"), env_name
    return env_name[len("VIGIL_"):].lower()


def default_port(name: str) -> int:
    return Settings.model_fields[f"{name}_port"].default


def scrape_targets(prometheus: dict) -> set[str]:
    return {t for job in prometheus["scrape_configs"] for sc in job.get("static_configs", [])
            for t in sc["targets"]}


def listeners(value: str) -> dict[str, str]:
    """'PLAINTEXT://kafka:9092,HOST://localhost:9094' -> {'PLAINTEXT': 'kafka:9092', ...}."""
    out = {}
    for item in value.split(","):
        name, _, addr = item.strip().partition("://")
        out[name] = addr
    return out


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def exprs_of(dashboard: dict) -> list[str]:
    return [t["expr"] for p in panels_of(dashboard["panels"]) for t in p.get("targets") or []
            if t.get("expr")]


def vigil_services(services: dict) -> dict[str, dict]:
    return {name: services[name] for name in SERVICES}


# --- compose: the Vigil services ------------------------------------------------------------

def test_compose_runs_each_vigil_service_with_its_own_serve_command(services):
    parser = build_parser()
    for name, svc in vigil_services(services).items():
        args = parser.parse_args(command_of(svc))  # argparse exits (SystemExit) on a bad command
        assert (args.command, args.service) == ("serve", name), f"{name}: command {svc['command']}"


def test_compose_builds_every_vigil_service_from_the_one_dockerfile(services):
    built = {name for name, svc in services.items() if "build" in svc}
    assert built == set(SERVICES), f"services built from the repo: {sorted(built)}"
    for name in SERVICES:
        build = services[name]["build"]
        context = ROOT / build["context"]
        assert context.resolve() == ROOT, f"{name}: build context {build['context']} is not the repo root"
        assert (context / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE, name
    assert len({services[n].get("image") for n in SERVICES}) == 1, "one image for all four services"


def test_every_vigil_env_name_in_compose_and_dockerfile_is_a_setting(services):
    names = {k for svc in services.values() for k in env_of(svc) if k.upper().startswith("VIGIL_")}
    names |= set(re.findall(r"\$\{(VIGIL_[A-Z0-9_]+)", COMPOSE.read_text()))
    names |= set(re.findall(r"\b(VIGIL_[A-Z0-9_]+)=", DOCKERFILE.read_text()))
    assert names, "no VIGIL_* settings found"
    unknown = sorted(n for n in names if setting_field(n) not in Settings.model_fields)
    assert not unknown, f"not fields of shared.settings.Settings: {unknown}"


def test_compose_env_values_are_valid_settings(services):
    for name, svc in vigil_services(services).items():
        values = {setting_field(k): v for k, v in env_of(svc).items()
                  if k.upper().startswith("VIGIL_") and v is not None and "${" not in v}
        Settings(**values)  # raises a ValidationError naming the bad setting


def test_published_ports_match_settings_defaults_and_prometheus_targets(services, prometheus):
    targets = scrape_targets(prometheus)
    for name, svc in vigil_services(services).items():
        port = default_port(name)
        env = env_of(svc)
        assert int(env.get(f"VIGIL_{name.upper()}_PORT", port)) == port, f"{name}: port setting"
        assert (port, port) in published_ports(svc), f"{name}: publish {port}:{port}, got {svc.get('ports')}"
        assert f"{name}:{port}" in targets, f"prometheus does not scrape {name}:{port}"
        assert env.get("VIGIL_HOST") == "0.0.0.0", f"{name}: must listen beyond loopback in a container"


def test_prometheus_targets_are_compose_services_on_their_ports(services, prometheus):
    for target in scrape_targets(prometheus):
        host, _, port = target.rpartition(":")
        if host == "localhost":
            continue  # Prometheus itself
        assert host in services, f"scrape target {target}: no compose service {host}"
        if host in SERVICES:
            assert int(port) == default_port(host), target


def test_prometheus_scrapes_metrics_every_15s_and_loads_the_rules(prometheus):
    assert prometheus["global"]["scrape_interval"] == "15s"
    vigil_jobs = [j for j in prometheus["scrape_configs"]
                  if any(t.split(":")[0] in SERVICES for sc in j.get("static_configs", [])
                         for t in sc["targets"])]
    assert vigil_jobs
    for job in vigil_jobs:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert job.get("scrape_interval", prometheus["global"]["scrape_interval"]) == "15s"
    rule_files = [PROMETHEUS.parent / f for f in prometheus.get("rule_files", [])]
    assert RULES in rule_files


# --- compose: Kafka and Redis ---------------------------------------------------------------

def test_kafka_is_one_kraft_node_that_the_services_bootstrap_from(services):
    kafka = {n: s for n, s in services.items() if str(s.get("image", "")).startswith("apache/kafka:")}
    assert list(kafka) == ["kafka"], f"one Apache Kafka service named kafka, got {list(kafka)}"
    svc = kafka["kafka"]
    env = env_of(svc)
    assert {r.strip() for r in env["KAFKA_PROCESS_ROLES"].split(",")} == {"broker", "controller"}
    assert f"{env['KAFKA_NODE_ID']}@" in env["KAFKA_CONTROLLER_QUORUM_VOTERS"]
    bound = listeners(env["KAFKA_LISTENERS"])
    advertised = listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.strip().split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound and controller not in advertised
    assert set(bound) <= set(protocols), "every listener needs a security protocol"
    for name, svc_ in vigil_services(services).items():
        bootstrap = env_of(svc_)["VIGIL_KAFKA_BOOTSTRAP"]
        for addr in bootstrap.split(","):
            host, _, port = addr.strip().rpartition(":")
            assert host in ("kafka", svc.get("hostname")), f"{name}: bootstrap {addr} is not the kafka service"
            listener = next((ln for ln, a in advertised.items() if a == addr.strip()), None)
            assert listener, f"{name}: {addr} is not an advertised listener ({advertised})"
            assert bound[listener].rpartition(":")[2] == port, f"listener {listener} is not bound on {port}"
        assert depends_on(svc_).get("kafka") == "service_healthy", f"{name}: wait for a healthy broker"
    assert "kafka-broker-api-versions.sh" in " ".join(svc["healthcheck"]["test"])


def test_redis_is_durable_and_the_services_use_it(services):
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    assert "--appendonly" in command_of(redis) and "yes" in command_of(redis)
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    for name, svc in vigil_services(services).items():
        url = urlsplit(env_of(svc)["VIGIL_REDIS_URL"])
        assert url.scheme == "redis" and url.hostname == "redis", f"{name}: {url.geturl()}"
        assert depends_on(svc).get("redis") == "service_healthy", name


def test_alerts_service_takes_notification_channels_from_the_host(services):
    env = env_of(services["alerts"])
    for name in NOTIFICATION_SETTINGS:
        assert name in env, f"alerts: {name} missing"
        value = env[name]
        # A bare key passes the host's value through, or leaves it unset; ${NAME...} likewise.
        assert value is None or value.startswith("${" + name), f"alerts: {name}={value!r} is hard-coded"


# --- Dockerfile ---------------------------------------------------------------------------

def test_dockerfile_installs_the_project_and_runs_vigil_as_non_root():
    steps = dockerfile_instructions(DOCKERFILE.read_text())
    kinds = [k for k, _ in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert json.loads(dict(steps)["ENTRYPOINT"]) == ["vigil"]
    args = build_parser().parse_args(json.loads(dict(steps)["CMD"]))
    assert (args.command, args.service) == ("serve", "ingest")
    users = [a for k, a in steps if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    assert kinds.index("USER") < kinds.index("ENTRYPOINT")

    copies = [(i, a.split()) for i, (k, a) in enumerate(steps) if k == "COPY"]
    sources = {src: i for i, words in copies for src in words[:-1] if not src.startswith("--")}
    installs = [i for i, (k, a) in enumerate(steps)
                if k == "RUN" and re.search(r"pip install (--no-deps )?\.(\s|$|&)", a)]
    assert installs, "no `pip install .` of the project"
    assert "pyproject.toml" in sources
    # Cache-friendly: pyproject.toml (the dependencies) before the code, the code before the install.
    code = [sources[s] for s in sources if s.rstrip("/").split("/")[0] in ("shared", "services", ".")]
    assert code and sources["pyproject.toml"] < min(code) < installs[-1]
    for src in sources:
        if not any(ch in src for ch in "*?["):
            assert (ROOT / src).exists(), f"COPY {src}: no such path in the repo"


def test_dockerfile_copies_every_package_the_project_installs():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "vigil" in project["project"]["scripts"]
    patterns = project["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()
                and any(fnmatch.fnmatch(p.name, pat) for pat in patterns)}
    copied = {w.rstrip("/").split("/")[0] for k, a in dockerfile_instructions(DOCKERFILE.read_text())
              if k == "COPY" for w in a.split()[:-1]}
    assert packages and packages <= copied, f"packages not copied into the image: {packages - copied}"


# --- Grafana ------------------------------------------------------------------------------

def test_the_five_dashboards_are_what_deploy_grafana_dashboards_py_writes():
    import importlib.util
    spec = importlib.util.spec_from_file_location("dashboards", GRAFANA / "dashboards.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    BUILT, render = code.DASHBOARDS, code.render
    assert [p.stem for p in DASHBOARD_FILES] == sorted(BUILT) and len(BUILT) == 5
    for p in DASHBOARD_FILES:
        assert p.read_text() == render(p.stem), f"{p.name} differs from its code: run python deploy/grafana/dashboards.py"


def test_dashboards_have_a_panel_for_every_contract_metric(all_dashboards):
    try:
        from shared.metrics import CONTRACT_METRICS as code_metrics
    except ImportError:
        code_metrics = ()
    exprs = "\n".join(e for d in all_dashboards for e in exprs_of(d))
    recorded = {r["record"]: r["expr"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]
                if "record" in r}
    exprs += "\n".join(e for name, e in recorded.items() if name in exprs)  # a panel on a recording rule
    missing = [m for m in sorted(set(CONTRACT_METRICS) | set(code_metrics))
               if not re.search(rf"(?<![\w:]){m}(?:_bucket|_sum|_count)?(?![\w:])", exprs)]
    assert not missing, f"no dashboard panel queries {missing}"


def test_dashboards_refer_only_to_exported_metrics_and_recorded_rules(dashboard):
    from shared.metrics import REGISTRY
    exported = {"up"}
    for family in REGISTRY.collect():
        exported |= {family.name, f"{family.name}_total", f"{family.name}_bucket", f"{family.name}_sum",
                     f"{family.name}_count"}
    recorded = {r["record"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "record" in r}
    functions = {"sum", "max", "min", "rate", "increase", "sqrt", "sort_desc", "histogram_quantile", "by", "on",
                 "le", "deriv", "avg", "count", "offset", "and", "or", "unless", "without", "ignoring"}
    for expr in exprs_of(dashboard):
        bare = re.sub(r'\{[^}]*\}|"[^"]*"|\[[^\]]*\]|\b(by|on|without|ignoring|group_left|group_right)\s*\([^)]*\)',
                      " ", expr)  # drop matchers, strings, ranges and label lists
        names = set(re.findall(r"(?<![\w:$])([a-z_:][\w:]*)", bare)) - functions
        unknown = names - exported - recorded
        assert not unknown, f"{dashboard['uid']}: {expr!r} queries {unknown}, which no Vigil service exports"


def test_dashboard_is_a_provisionable_grafana_dashboard(dashboard):
    assert dashboard["uid"] and dashboard["title"]
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    for v in variables.values():  # each is filled from a metric a Vigil service exports
        query = v["query"] if isinstance(v["query"], str) else v["query"]["query"]
        assert re.fullmatch(r"label_values\(vigil_\w+(\{[^}]*\})?,\s*" + v["name"] + r"\)", query), query
    panels = list(panels_of(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"panel {p['title']!r} is wider than the grid"
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & cell, f"panel {p['title']!r} overlaps another"
        cells |= cell
    for expr in exprs_of(dashboard):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= set(variables) | set(GRAFANA_BUILTINS), f"unknown variable in {expr}"


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards(services, all_dashboards):
    datasources = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (prom,) = [d for d in datasources if d["type"] == "prometheus"]
    url = urlsplit(prom["url"])
    assert url.hostname in services and "prometheus" in services[url.hostname]["image"]
    uids = {t.get("datasource", {}).get("uid") for d in all_dashboards for p in panels_of(d["panels"])
            for t in [p, *(p.get("targets") or [])] if isinstance(t.get("datasource"), dict)}
    assert uids == {prom["uid"]}, f"panels use datasources {uids}, provisioned {prom['uid']}"

    grafana = services["grafana"]
    mounts = {}
    for v in grafana["volumes"]:
        src, dst = v.split(":")[:2]
        mounts[dst] = (ROOT / src).resolve() if src.startswith(".") else src
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning").resolve()
    (provider,) = yaml.safe_load(PROVIDERS.read_text())["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARDS.resolve()


def test_prometheus_container_loads_the_checked_config(services):
    prom = services["prometheus"]
    config = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    src = mounts[str(Path(config).parent)]
    assert (ROOT / src / Path(config).name).resolve() == PROMETHEUS.resolve()


# --- promtool -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("promtool is not on PATH under CI: install Debian's `prometheus` package "
                    "(apt-get install -y prometheus) so the Prometheus files are checked")
    pytest.skip("promtool not on PATH (apt-get install prometheus)")


def run_promtool(promtool: str, *args: str) -> None:
    res = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, f"promtool {' '.join(args)}:\n{res.stdout}\n{res.stderr}"


def test_promtool_accepts_the_prometheus_config(promtool):
    run_promtool(promtool, "check", "config", str(PROMETHEUS))


def test_promtool_accepts_the_rules(promtool):
    run_promtool(promtool, "check", "rules", str(RULES))


def test_promtool_parses_every_dashboard_query(promtool, dashboard, tmp_path):
    variables = {v["name"]: v.get("allValue") or ".*" for v in dashboard["templating"]["list"]}
    values = {**GRAFANA_BUILTINS, **variables}
    rules = []
    for i, expr in enumerate(exprs_of(dashboard)):
        rules.append({"record": f"vigil_dashboard:query_{i}", "expr": concrete(expr, values)})
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    run_promtool(promtool, "check", "rules", str(path))
