"""deploy/k8s agrees with the Kubernetes API schemas and with the code.

No cluster runs here, so the manifests are validated against the Kubernetes OpenAPI schemas
`kubernetes-validate` bundles (offline), and checked against what they refer to: the `vigil`
command line, the settings, the ports, the probes, and the consumer groups and topics the
KEDA scalers watch (the KEDA CRD's schema is not bundled: its fields are checked here)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.cli import build_parser
from shared import kafka
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KUBERNETES = "1.31"
SERVICES = ("ingest", "drift", "oversight", "alerts")


def documents() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


DOCS = documents()


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for _, d in DOCS if d["kind"] == kind}


def test_the_kustomization_lists_every_manifest_and_only_those():
    k = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(k["resources"]) == files
    assert k["namespace"] == "vigil" and of_kind("Namespace").keys() == {"vigil"}
    assert [i["name"] for i in k["images"]] == ["vigil"]


@pytest.mark.parametrize("name,doc", [d for d in DOCS if d[1]["apiVersion"] != "keda.sh/v1alpha1"],
                         ids=lambda x: x if isinstance(x, str) else x["kind"] + "/" + x["metadata"]["name"])
def test_each_manifest_validates_against_the_kubernetes_schema(name, doc):
    import kubernetes_validate
    kubernetes_validate.validate(doc, KUBERNETES, strict=True)  # raises on an unknown field or a wrong type


def test_each_service_runs_its_serve_command_on_its_port_with_probes():
    deployments, services = of_kind("Deployment"), of_kind("Service")
    defaults = Settings()
    assert set(deployments) == {f"vigil-{s}" for s in SERVICES} == set(services)
    for s in SERVICES:
        (c,) = deployments[f"vigil-{s}"]["spec"]["template"]["spec"]["containers"]
        args = build_parser().parse_args(c["args"])
        assert (args.command, args.service) == ("serve", s)
        port = getattr(defaults, f"{s}_port")
        assert c["ports"] == [{"name": "http", "containerPort": port}]
        assert {e["name"]: e["value"] for e in c["env"]}[f"VIGIL_{s.upper()}_PORT"] == str(port)
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        ann = deployments[f"vigil-{s}"]["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/port"] == str(port) and ann["prometheus.io/path"] == "/metrics"
        assert services[f"vigil-{s}"]["spec"]["ports"][0]["port"] == port
        assert c["resources"]["requests"] and c["resources"]["limits"]
        pod = deployments[f"vigil-{s}"]["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_every_variable_is_a_setting_and_a_valid_value():
    (config,) = of_kind("ConfigMap").values()
    fields = {f"VIGIL_{name.upper()}" for name in Settings.model_fields}
    env = config["data"]
    assert set(env) <= fields, set(env) - fields
    Settings(**{k.removeprefix("VIGIL_").lower(): v for k, v in env.items()})  # every value parses
    (secret,) = of_kind("Secret").values()
    assert not secret.get("stringData"), "the example Secret sets no channel: an empty one would turn it on"
    for path in K8S.glob("*.yaml"):  # the keys its comments show are settings too
        for line in path.read_text().splitlines():
            if line.strip().startswith("# VIGIL_"):
                assert line.strip()[2:].split(":")[0] in fields, line
    for d in of_kind("Deployment").values():
        (c,) = d["spec"]["template"]["spec"]["containers"]
        assert {e["name"] for e in c["env"]} <= fields


def test_keda_scales_the_workers_on_the_lag_of_their_own_groups_and_topics():
    from services.drift.app import DriftWorker
    from services.oversight.app import OversightWorker
    scaled, defaults = of_kind("ScaledObject"), Settings()
    (config,) = of_kind("ConfigMap").values()
    partitions = int(config["data"]["VIGIL_TOPIC_PARTITIONS"])
    expected = {"vigil-drift": (defaults.drift_group, set(DriftWorker.topics)),
                "vigil-oversight": (defaults.oversight_group, {kafka.TOPICS["reviews"]})}
    assert set(scaled) == set(expected)
    for name, (group, topics) in expected.items():
        s = scaled[name]["spec"]
        assert s["scaleTargetRef"]["name"] == name and name in of_kind("Deployment")
        assert 1 <= s["minReplicaCount"] <= s["maxReplicaCount"] <= partitions
        triggers = s["triggers"]
        assert {t["type"] for t in triggers} == {"kafka"}
        assert {t["metadata"]["consumerGroup"] for t in triggers} == {group}
        assert {t["metadata"]["topic"] for t in triggers} == topics
        assert topics <= set(OversightWorker.topics) | set(DriftWorker.topics)
        for t in triggers:
            assert t["metadata"]["bootstrapServers"] == config["data"]["VIGIL_KAFKA_BOOTSTRAP"]
            assert int(t["metadata"]["lagThreshold"]) > 0
    (hpa,) = of_kind("HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "vigil-ingest"
    pdbs = of_kind("PodDisruptionBudget")
    assert set(pdbs) == {"vigil-drift", "vigil-oversight"}
