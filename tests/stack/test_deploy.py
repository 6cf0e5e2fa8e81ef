"""Static checks of deploy/: the agent and gateway collectors, their Helm values, the manifests.

Without a cluster: lint, every collector component defined and used, the queues on disk,
and the cross-references between the files (the agent's resolver and the gateways' Service,
the Kafka topics of both tiers, the ports a bridge pod sends to, the values and the configs).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COLLECTORS = {
    name: DEPLOY / "collector" / f"{name}.yaml"
    for name in ("agent", "gateway", "agent-kafka", "gateway-kafka")
}
AGENT_VALUES = DEPLOY / "helm" / "collector-agent.values.yaml"
GATEWAY_VALUES = DEPLOY / "helm" / "collector-gateway.values.yaml"
HEADLESS_SERVICE = DEPLOY / "kubernetes" / "gateway-headless-service.yaml"
BRIDGE_POD = DEPLOY / "kubernetes" / "bridge-pod.yaml"
COMPOSE_FILE = REPO / "docker-compose.yml"
YAMLLINT_FILE = REPO / "collector-config" / "yamllint.yaml"
# Component types of the pinned contrib collector (>= v0.154: `load_balancing`, `otlp_grpc`,
# `otlp_http`); the deprecated spellings are refused.
KNOWN_TYPES = {
    "receivers": {"otlp", "kafka"},
    "processors": {"memory_limiter", "resourcedetection", "resource"},
    "exporters": {"otlp_grpc", "otlp_http", "load_balancing", "kafka"},
    "extensions": {"health_check", "file_storage"},
}
DEPRECATED_EXPORTERS = {"loadbalancing", "otlp", "otlphttp", "loki", "logging"}
NETWORK_EXPORTERS = {"otlp_grpc", "otlp_http", "load_balancing", "kafka"}


def _yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _without_nulls(value: Any) -> Any:
    """What Helm's merge leaves of a map: keys set to null remove the chart's defaults."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    return value


@pytest.fixture(scope="module", params=sorted(COLLECTORS))
def collector(request: pytest.FixtureRequest) -> tuple[str, dict[str, Any]]:
    return request.param, _yaml(COLLECTORS[request.param])


def test_deploy_yaml_lints_clean() -> None:
    """Every YAML file under deploy/ passes yamllint in strict mode (the stack's rules)."""
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(YAMLLINT_FILE), str(DEPLOY)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_component_is_known_defined_and_used(collector: tuple[str, dict[str, Any]]) -> None:
    """Each pipeline's components are defined, of types the pinned contrib has, and none is unused."""
    name, config = collector
    used: dict[str, set[str]] = {section: set() for section in KNOWN_TYPES}
    for pipeline in config["service"]["pipelines"].values():
        for section in ("receivers", "processors", "exporters"):
            used[section].update(pipeline.get(section, []))
    used["extensions"].update(config["service"].get("extensions", []))
    for section, ids in used.items():
        defined = set(config.get(section) or {})
        assert ids == defined, f"{name}: {section} used {sorted(ids)} but defined {sorted(defined)}"
        assert {_type(i) for i in ids} <= KNOWN_TYPES[section], f"{name}: {section}"
    assert not {_type(i) for i in config["exporters"]} & DEPRECATED_EXPORTERS


def test_memory_limiter_first_and_receivers_on_all_interfaces(collector: tuple[str, dict[str, Any]]) -> None:
    """memory_limiter runs first in every pipeline; OTLP receivers listen on 0.0.0.0."""
    name, config = collector
    for pipeline in config["service"]["pipelines"].values():
        assert pipeline["processors"][0] == "memory_limiter", name
    for protocol in (config["receivers"].get("otlp") or {}).get("protocols", {}).values():
        assert protocol["endpoint"].startswith("0.0.0.0:"), name


def test_network_exporters_never_give_up_and_queue_on_disk(collector: tuple[str, dict[str, Any]]) -> None:
    """Every network exporter retries without a deadline and queues in file_storage, except where
    Kafka holds the data (gateway-kafka: synchronous export, offsets marked after success)."""
    name, config = collector
    for exporter_id, exporter in config["exporters"].items():
        if _type(exporter_id) not in NETWORK_EXPORTERS:
            continue
        assert exporter["retry_on_failure"]["max_elapsed_time"] == 0, f"{name}: {exporter_id}"
        queue = exporter["sending_queue"]
        if name == "gateway-kafka":
            assert queue["enabled"] is False
            assert config["receivers"]["kafka"]["message_marking"] == {"after": True, "on_error": False}
            continue
        assert queue["enabled"] is True and queue["storage"] in config["extensions"], f"{name}: {exporter_id}"
        storage = config["extensions"][queue["storage"]]
        assert storage["directory"] == storage["compaction"]["directory"]


def test_agents_detect_the_machine_they_run_on() -> None:
    """Both agents run resourcedetection (env, system host.name, the Kubernetes node) in every pipeline."""
    for name in ("agent", "agent-kafka"):
        config = _yaml(COLLECTORS[name])
        detection = config["processors"]["resourcedetection"]
        assert {"env", "system"} <= set(detection["detectors"]) and detection["override"] is False
        for pipeline in config["service"]["pipelines"].values():
            assert "resourcedetection" in pipeline["processors"], name


def test_agent_load_balances_by_service_onto_the_gateways_headless_service() -> None:
    """The agent routes by service.name to the gateway pods: its DNS resolver is the headless
    Service, on the port the gateways' OTLP gRPC receiver listens on."""
    exporter = _yaml(COLLECTORS["agent"])["exporters"]["load_balancing"]
    assert exporter["routing_key"] == "service"
    dns = exporter["resolver"]["dns"]
    service = _yaml(HEADLESS_SERVICE)
    assert service["spec"]["clusterIP"] == "None"
    metadata = service["metadata"]
    assert dns["hostname"] == f"{metadata['name']}.{metadata['namespace']}.svc.cluster.local"
    gateway_port = int(
        _yaml(COLLECTORS["gateway"])["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].split(":")[1]
    )
    assert dns["port"] == gateway_port == service["spec"]["ports"][0]["port"]
    assert service["spec"]["selector"]["app.kubernetes.io/instance"] == "otel-gateway"
    assert "otel-gateway" in GATEWAY_VALUES.read_text(encoding="utf-8").split("helm install", 1)[1]


def test_gateways_send_logs_to_loki_over_otlp_and_traces_over_otlp_grpc() -> None:
    """Both gateways: logs to Loki's /otlp with otlp_http, traces with otlp_grpc, to the same backends."""
    targets = []
    for name in ("gateway", "gateway-kafka"):
        config = _yaml(COLLECTORS[name])
        pipelines = config["service"]["pipelines"]
        (logs,) = pipelines["logs"]["exporters"]
        (traces,) = pipelines["traces"]["exporters"]
        assert _type(logs) == "otlp_http" and _type(traces) == "otlp_grpc"
        loki = config["exporters"][logs]["endpoint"]
        assert urlsplit(loki).path == "/otlp"
        targets.append((loki, config["exporters"][traces]["endpoint"]))
    assert targets[0] == targets[1]


def test_kafka_tiers_agree_on_brokers_topics_and_encoding() -> None:
    """What agent-kafka writes (brokers, topic, encoding per signal) is what gateway-kafka reads."""
    exporter = _yaml(COLLECTORS["agent-kafka"])["exporters"]["kafka"]
    receiver = _yaml(COLLECTORS["gateway-kafka"])["receivers"]["kafka"]
    assert exporter["brokers"] == receiver["brokers"]
    for signal in ("logs", "traces"):
        assert exporter[signal] == receiver[signal], signal
    assert exporter["partition_logs_by_resource_attributes"] is True


@pytest.mark.parametrize(
    ("values_file", "config_name", "mode"),
    [
        (AGENT_VALUES, "agent", "daemonset"),
        (GATEWAY_VALUES, "gateway", "statefulset"),
    ],
)
def test_helm_values_carry_the_collector_config_and_its_queue_volume(
    values_file: Path, config_name: str, mode: str
) -> None:
    """The chart values' config is deploy/collector/<tier>.yaml once the chart defaults are nulled,
    the queue directory is a mounted volume, and the image is the contrib tag compose pins."""
    values = _yaml(values_file)
    config = _yaml(COLLECTORS[config_name])
    assert values["mode"] == mode
    assert _without_nulls(values["config"]) == config
    directory = config["extensions"]["file_storage"]["directory"]
    mounts = {m["mountPath"]: m["name"] for m in values["extraVolumeMounts"]}
    volumes = {v["name"] for v in values.get("extraVolumes", [])} | {
        t["metadata"]["name"] for t in values.get("statefulset", {}).get("volumeClaimTemplates", [])
    }
    assert mounts[directory] in volumes
    compose_image = _yaml(COMPOSE_FILE)["services"]["otel-collector"]["image"]
    assert f"{values['image']['repository']}:{values['image']['tag']}" == compose_image
    enabled = {name for name, port in values["ports"].items() if port.get("enabled")}
    receiver_ports = {
        int(p["endpoint"].rsplit(":", 1)[1]) for p in config["receivers"]["otlp"]["protocols"].values()
    }
    assert {values["ports"][name]["containerPort"] for name in enabled} == receiver_ports


def test_bridge_pod_sends_to_its_nodes_agent_and_keeps_its_runtime_dir_on_a_volume() -> None:
    """OTEL_EXPORTER_OTLP_ENDPOINT is the node IP on the agent's hostPort; the runtime dir is a volume."""
    pod = _yaml(BRIDGE_POD)
    (container,) = pod["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.hostIP"
    endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"]
    assert re.fullmatch(r"http://\$\(NODE_IP\):\d+", endpoint)
    agent_ports = _yaml(AGENT_VALUES)["ports"]
    assert urlsplit(endpoint.replace("$(NODE_IP)", "node")).port == agent_ports["otlp"]["hostPort"]
    for reference in re.findall(r"\$\((\w+)\)", " ".join(str(e.get("value", "")) for e in env.values())):
        assert reference in env, reference
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    runtime_dir = env["OTEL_PLUGIN_LOGS_RUNTIME_DIR"]["value"]
    assert mounts[runtime_dir] in {v["name"] for v in pod["spec"]["volumes"]}


def test_readme_many_machines_section_names_the_deploy_files() -> None:
    """README's 'Many machines' section names every file under deploy/ and what each tier buffers."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Many machines") :]
    section = section[: section.index("\n## ", 4)]
    for path in sorted(DEPLOY.rglob("*.yaml")):
        assert str(path.relative_to(REPO)) in section, path
    for word in ("buffers", "cardinality", "load_balancing", "Kafka"):
        assert word in section, word
