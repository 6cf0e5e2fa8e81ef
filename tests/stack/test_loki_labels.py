"""The Loki index labels that collector-config/loki.yaml really produces, against what the docs say.

Loki decides per resource attribute with the first matching rule: the distributor's
``default_resource_attributes_as_index_labels`` (unless a tenant sets ``ignore_defaults``),
then ``limits_config.otlp_config.resource_attributes.attributes_config`` in order; an
attribute no rule matches is structured metadata (Loki 3.7, pkg/loghttp/push/otlp_config.go).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
LOKI_FILE = REPO / "collector-config" / "loki.yaml"
DOCS = (REPO / "README.md", REPO / "docs" / "stack.md")
# Loki 3.7's built-in list, used when the config does not set its own.
LOKI_DEFAULT_INDEX_ATTRIBUTES = (
    "service.name",
    "service.namespace",
    "service.instance.id",
    "deployment.environment",
    "deployment.environment.name",
    "cloud.region",
    "cloud.availability_zone",
    "k8s.cluster.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.container.name",
    "container.name",
    "k8s.replicaset.name",
    "k8s.deployment.name",
    "k8s.statefulset.name",
    "k8s.daemonset.name",
    "k8s.cronjob.name",
    "k8s.job.name",
)
# Every resource attribute a plugin's records can carry here: the bridge's, the SDK's, the
# collector's `resource` processor, and the deploy/ agent's resourcedetection.
RESOURCE_ATTRIBUTES = (
    "service.name",
    "service.namespace",
    "service.instance.id",
    "plugin.name",
    "plugin.version",
    "process.pid",
    "telemetry.sdk.language",
    "telemetry.sdk.name",
    "telemetry.sdk.version",
    "deployment.environment.name",
    "host.name",
    "os.type",
    "k8s.pod.name",
    "k8s.namespace.name",
    "k8s.node.name",
)
LOKI_HELM_VALUES = REPO / "deploy" / "helm" / "loki.values.yaml"


def _loki() -> dict[str, Any]:
    data = yaml.safe_load(LOKI_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _rules(loki: dict[str, Any]) -> list[dict[str, Any]]:
    resource = loki["limits_config"]["otlp_config"]["resource_attributes"]
    defaults = (
        loki.get("distributor", {})
        .get("otlp_config", {})
        .get("default_resource_attributes_as_index_labels", list(LOKI_DEFAULT_INDEX_ATTRIBUTES))
    )
    first = [] if resource.get("ignore_defaults") else [{"action": "index_label", "attributes": defaults}]
    return first + list(resource.get("attributes_config", []))


def _matches(rule: dict[str, Any], attribute: str) -> bool:
    if attribute in rule.get("attributes", []):
        return True
    pattern = rule.get("regex")
    return bool(pattern) and re.fullmatch(pattern, attribute) is not None


def effective_index_labels(loki: dict[str, Any]) -> set[str]:
    """The Loki label names the resource attributes above end up as, first rule winning."""
    labels = set()
    for attribute in RESOURCE_ATTRIBUTES:
        action = next((r["action"] for r in _rules(loki) if _matches(r, attribute)), "structured_metadata")
        if action == "index_label":
            labels.add(re.sub(r"[^A-Za-z0-9_]", "_", attribute))
    return labels


def documented_index_labels(path: Path) -> set[str]:
    """The labels the 'Index labels' list of a document names."""
    text = path.read_text(encoding="utf-8")
    section = text[text.index("Index labels (use them in the `{...}` selector):") :]
    section = section[: section.index("Everything else is structured metadata")]
    return set(re.findall(r"^- `([a-z_]+)`", section, flags=re.MULTILINE))


def test_loki_index_labels_are_exactly_the_documented_ones() -> None:
    """First match wins: the config indexes exactly the labels README and docs/stack.md list."""
    effective = effective_index_labels(_loki())
    for doc in DOCS:
        assert effective == documented_index_labels(doc), doc.name


def test_loki_helm_values_index_the_same_labels_as_the_compose_stack() -> None:
    """deploy/helm/loki.values.yaml's structuredConfig gives the same index labels as loki.yaml."""
    values = yaml.safe_load(LOKI_HELM_VALUES.read_text(encoding="utf-8"))
    assert effective_index_labels(values["loki"]["structuredConfig"]) == effective_index_labels(_loki())


def test_loki_keeps_per_run_attributes_out_of_the_stream_labels() -> None:
    """service.instance.id, process.pid and k8s.pod.name (one value per run) are never index labels."""
    effective = effective_index_labels(_loki())
    assert not effective & {"service_instance_id", "process_pid", "k8s_pod_name", "host_name"}
