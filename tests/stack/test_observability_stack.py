"""Static checks of the bundled observability stack (issue #5).

docker-compose.yml, Dockerfile, collector-config/ (collector, Loki, Jaeger, Grafana) and
docs/stack.md are checked without Docker or network: schema and lint, cross-references between
the files, and the names shared with the package (otel_plugin_logs/conventions.py).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
CONFIG_DIR = REPO / "collector-config"
COLLECTOR_FILE = CONFIG_DIR / "otel-collector.yaml"
LOKI_FILE = CONFIG_DIR / "loki.yaml"
JAEGER_FILE = CONFIG_DIR / "jaeger.yaml"
YAMLLINT_FILE = CONFIG_DIR / "yamllint.yaml"
DATASOURCES_FILE = CONFIG_DIR / "grafana" / "provisioning" / "datasources" / "datasources.yaml"
DASHBOARD_PROVIDER_FILE = CONFIG_DIR / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
DASHBOARD_FILE = CONFIG_DIR / "grafana" / "dashboards" / "plugin-logs.json"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
STACK_DOC = REPO / "docs" / "stack.md"

COLLECTOR_SERVICE = "otel-collector"
# First collector release with the `otlp_grpc` / `otlp_http` exporter names.
RENAMED_EXPORTERS_SINCE = (0, 144, 0)
# Component types of the pinned contrib collector that this stack may use. `loki` (exporter
# removed in v0.131.0), `logging` (removed) and the pre-v0.144.0 names `otlp` / `otlphttp`
# (for exporters) are deliberately absent.
KNOWN_COMPONENT_TYPES = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "resource", "batch", "attributes", "transform", "filter"},
    "exporters": {"otlp_grpc", "otlp_http", "debug"},
    "extensions": {"health_check", "file_storage", "pprof", "zpages"},
}
REMOVED_OR_OLD_EXPORTERS = {"loki", "logging", "otlp", "otlphttp"}
# In-container healthcheck programs that exist in each image: Loki is distroless, the
# collector is FROM scratch (no healthcheck possible), Jaeger and Grafana are Alpine-based.
HEALTHCHECK_PROGRAMS = {
    "loki": ["/usr/bin/loki", "-health"],
    "jaeger": ["wget"],
    "grafana": ["wget"],
}
NEEDED_HOST_PORTS = {4317, 4318, 3000, 16686}


def _load_names() -> ModuleType:
    """Load otel_plugin_logs/conventions.py by path: it only imports typing."""
    path = REPO / "otel_plugin_logs" / "conventions.py"
    spec = importlib.util.spec_from_file_location("_otel_plugin_logs_names_for_stack_tests", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAMES = _load_names()


def _yaml(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), path
    return data


def _loki_name(otel_name: str) -> str:
    """Loki's OTLP ingestion turns an attribute name into a label name: `.` and others -> `_`."""
    return re.sub(r"[^A-Za-z0-9_]", "_", otel_name)


def _component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def _port_of(endpoint: str) -> int:
    if "://" in endpoint:
        port = urlsplit(endpoint).port
        assert port is not None, endpoint
        return port
    return int(endpoint.rsplit(":", 1)[1])


def _parse_port(entry: Any) -> tuple[str, int, int]:
    """Compose `ports` entry -> (host_ip, published port, container port)."""
    if isinstance(entry, dict):
        return str(entry.get("host_ip", "")), int(entry["published"]), int(entry["target"])
    text = str(entry).split("/", 1)[0]
    parts = text.rsplit(":", 2)
    if len(parts) == 3:
        return parts[0], int(parts[1]), int(parts[2])
    if len(parts) == 2:
        return "", int(parts[0]), int(parts[1])
    raise AssertionError(f"port entry without a published port: {entry!r}")


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            source, target = volume.get("source", ""), volume["target"]
        else:
            source, target = str(volume).split(":")[:2]
        mounts.append((source, target))
    return mounts


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _pipeline_ids(collector: dict[str, Any], section: str) -> set[str]:
    ids: set[str] = set()
    for pipeline in collector["service"]["pipelines"].values():
        ids.update(pipeline.get(section, []))
    return ids


def _iter_loki_targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def _datasources_by_uid() -> dict[str, dict[str, Any]]:
    return {ds["uid"]: ds for ds in _yaml(DATASOURCES_FILE)["datasources"]}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = compose["services"]
    return result


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return _yaml(COLLECTOR_FILE)


@pytest.fixture(scope="module")
def loki() -> dict[str, Any]:
    return _yaml(LOKI_FILE)


@pytest.fixture(scope="module")
def jaeger() -> dict[str, Any]:
    return _yaml(JAEGER_FILE)


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


# --- schema and lint ---------------------------------------------------------------------


def test_compose_file_validates_against_the_compose_spec() -> None:
    """docker-compose.yml validates against the compose-spec JSON schema (check-jsonschema)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "check_jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            str(COMPOSE_FILE),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_all_stack_yaml_files_lint_clean() -> None:
    """docker-compose.yml and every YAML file in collector-config/ pass yamllint in strict mode."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "-c",
            str(YAMLLINT_FILE),
            str(COMPOSE_FILE),
            str(CONFIG_DIR),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_json_parses_as_the_plugin_logs_dashboard(dashboard: dict[str, Any]) -> None:
    """The provisioned dashboard file is valid JSON titled "Plugin logs" with unique panel ids."""
    assert dashboard["title"] == "Plugin logs"
    assert dashboard["uid"]
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


# --- docker-compose.yml --------------------------------------------------------------------


def test_every_image_is_pinned_to_a_version_tag(services: dict[str, Any]) -> None:
    """Each pulled image names an explicit version tag (no `latest`, no missing tag)."""
    for name, service in services.items():
        if "build" in service:
            continue
        image = service["image"]
        assert ":" in image.rsplit("/", 1)[-1], f"{name}: {image} has no tag"
        tag = image.rsplit(":", 1)[1]
        assert tag != "latest", f"{name}: {image} is not pinned"
        assert re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"


def test_collector_image_supports_the_component_names_used(services: dict[str, Any]) -> None:
    """The pinned collector is contrib and at least v0.144.0, where otlp_grpc/otlp_http exist."""
    image = services[COLLECTOR_SERVICE]["image"]
    assert image.startswith("otel/opentelemetry-collector-contrib:")
    version = tuple(int(part) for part in image.rsplit(":", 1)[1].lstrip("v").split("."))
    assert version >= RENAMED_EXPORTERS_SINCE


def test_only_the_needed_ports_are_published_on_localhost(services: dict[str, Any]) -> None:
    """Published host ports are exactly 4317, 4318, 3000 and 16686, each bound to 127.0.0.1."""
    published = []
    for service in services.values():
        for entry in service.get("ports", []):
            host_ip, host_port, _ = _parse_port(entry)
            assert host_ip == "127.0.0.1", entry
            published.append(host_port)
    assert sorted(published) == sorted(NEEDED_HOST_PORTS)


def test_published_collector_ports_are_its_otlp_receivers(
    services: dict[str, Any], collector: dict[str, Any]
) -> None:
    """The collector publishes exactly its OTLP gRPC and HTTP receiver ports, unchanged."""
    protocols = collector["receivers"]["otlp"]["protocols"]
    receiver_ports = {_port_of(protocols["grpc"]["endpoint"]), _port_of(protocols["http"]["endpoint"])}
    mappings = {_parse_port(entry)[1:] for entry in services[COLLECTOR_SERVICE]["ports"]}
    assert mappings == {(port, port) for port in receiver_ports}
    assert _port_of(protocols["grpc"]["endpoint"]) == 4317
    assert _port_of(protocols["http"]["endpoint"]) == 4318


def test_package_default_urls_reach_the_published_ports(
    services: dict[str, Any], collector: dict[str, Any], jaeger: dict[str, Any]
) -> None:
    """The package's default OTLP, Grafana and Jaeger URLs hit localhost ports mapped to the right services."""
    published = {
        _parse_port(entry)[1]: (name, _parse_port(entry)[2])
        for name, service in services.items()
        for entry in service.get("ports", [])
    }
    protocols = collector["receivers"]["otlp"]["protocols"]
    expected = {
        NAMES.DEFAULT_OTLP_GRPC_ENDPOINT: (COLLECTOR_SERVICE, _port_of(protocols["grpc"]["endpoint"])),
        NAMES.DEFAULT_OTLP_HTTP_ENDPOINT: (COLLECTOR_SERVICE, _port_of(protocols["http"]["endpoint"])),
        NAMES.GRAFANA_URL: ("grafana", 3000),
        NAMES.JAEGER_URL: ("jaeger", _port_of(jaeger["extensions"]["jaeger_query"]["http"]["endpoint"])),
    }
    for url, target in expected.items():
        parts = urlsplit(url)
        assert parts.hostname == "localhost", url
        assert published.get(parts.port) == target, url


def test_every_mounted_file_exists_in_the_repo(services: dict[str, Any]) -> None:
    """Every bind mount of the compose file points at a file or directory present in the repo."""
    checked = 0
    for name, service in services.items():
        for source, _ in _bind_mounts(service):
            if source.startswith((".", "/")):
                assert (REPO / source).resolve().exists(), f"{name}: {source} is missing"
                checked += 1
    assert checked >= 5


def test_named_volumes_are_declared_and_used(compose: dict[str, Any], services: dict[str, Any]) -> None:
    """Every named volume a service mounts is declared at top level, and every declared one is mounted."""
    declared = set(compose.get("volumes") or {})
    used = {
        source
        for service in services.values()
        for source, _ in _bind_mounts(service)
        if source and not source.startswith((".", "/"))
    }
    assert used == declared
    assert {"collector-queue", "loki-data", "grafana-data"} <= declared


def test_depends_on_uses_conditions_the_targets_can_meet(services: dict[str, Any]) -> None:
    """Each depends_on names an existing service with a condition; service_healthy targets have a healthcheck."""
    assert services["demo"]["depends_on"][COLLECTOR_SERVICE]["condition"] == "service_started"
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends_on.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert spec["condition"] in {
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            }
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (
                    f"{name} waits for {target}, which has no healthcheck"
                )


def test_healthchecks_run_programs_that_exist_in_their_images(services: dict[str, Any]) -> None:
    """Healthchecks exec a program present in the image (no shell); the scratch collector has none."""
    assert "healthcheck" not in services[COLLECTOR_SERVICE]
    for name, program in HEALTHCHECK_PROGRAMS.items():
        test = services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", f"{name}: exec form needed (the image may have no shell)"
        assert test[1 : 1 + len(program)] == program, f"{name}: {test}"


def test_loki_health_probe_and_clients_use_loki_http_port(
    services: dict[str, Any], loki: dict[str, Any], collector: dict[str, Any]
) -> None:
    """`loki -health` probes localhost:3100, Loki listens there, and the collector and Grafana use it."""
    assert loki["server"]["http_listen_port"] == 3100
    assert services["loki"]["healthcheck"]["test"] == ["CMD", "/usr/bin/loki", "-health"]
    loki_exporter = next(
        cfg for cid, cfg in collector["exporters"].items() if _component_type(cid) == "otlp_http"
    )
    assert urlsplit(loki_exporter["endpoint"]).port == 3100
    assert urlsplit(_datasources_by_uid()["loki"]["url"]).port == 3100


def test_demo_service_runs_the_demo_against_the_collector(
    services: dict[str, Any], collector: dict[str, Any]
) -> None:
    """The demo service builds this repo, runs `demo --duration 0` and sends OTLP gRPC to otel-collector."""
    demo = services["demo"]
    build = demo["build"]
    assert (REPO / build["context"] / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    command = demo["command"]
    assert "demo" in command
    assert command[command.index("--duration") + 1] == "0"
    env = _env(demo)
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    assert endpoint.scheme == "http"
    assert endpoint.hostname == COLLECTOR_SERVICE
    assert endpoint.port == _port_of(collector["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])
    assert env["OTEL_SERVICE_NAME"] == "plugin-host"


def test_dockerfile_installs_the_package_and_runs_its_console_script() -> None:
    """The Dockerfile builds on Python 3.11, pip-installs the repo and runs `otel-plugin-logs`."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert bases
    assert all(base.startswith("python:3.11") for base in bases)
    assert re.search(r"^RUN pip (wheel|install)\b.*\s\.$", text, flags=re.MULTILINE)
    assert re.search(r'^ENTRYPOINT \["otel-plugin-logs"\]$', text, flags=re.MULTILINE)
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, flags=re.MULTILINE)
    ignored = {line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()}
    assert not ignored & {"pyproject.toml", "otel_plugin_logs", "otel_plugin_logs/", "README.md", "*"}


# --- collector-config/otel-collector.yaml --------------------------------------------------


def test_every_collector_component_referenced_is_defined(collector: dict[str, Any]) -> None:
    """Every receiver, processor, exporter and extension named in service is defined in its section."""
    for section in ("receivers", "processors", "exporters"):
        missing = _pipeline_ids(collector, section) - set(collector.get(section) or {})
        assert not missing, f"undefined {section}: {missing}"
    missing = set(collector["service"].get("extensions", [])) - set(collector.get("extensions") or {})
    assert not missing, f"undefined extensions: {missing}"


def test_every_defined_collector_component_is_used(collector: dict[str, Any]) -> None:
    """Every defined receiver, processor, exporter and extension appears in a pipeline or service.extensions."""
    for section in ("receivers", "processors", "exporters"):
        unused = set(collector.get(section) or {}) - _pipeline_ids(collector, section)
        assert not unused, f"unused {section}: {unused}"
    unused = set(collector.get("extensions") or {}) - set(collector["service"].get("extensions", []))
    assert not unused, f"unused extensions: {unused}"


def test_collector_uses_only_current_component_names(collector: dict[str, Any]) -> None:
    """No removed (`loki`, `logging`) or pre-v0.144 (`otlp`, `otlphttp`) exporter; all types known to the pin."""
    exporter_types = {_component_type(cid) for cid in collector["exporters"]}
    assert not exporter_types & REMOVED_OR_OLD_EXPORTERS
    for section, known in KNOWN_COMPONENT_TYPES.items():
        types = {_component_type(cid) for cid in collector.get(section) or {}}
        assert types <= known, f"{section}: unexpected {types - known}"


def test_collector_receivers_listen_on_all_interfaces(collector: dict[str, Any]) -> None:
    """OTLP receivers bind 0.0.0.0 (the default, localhost, is unreachable from outside the container)."""
    for protocol in collector["receivers"]["otlp"]["protocols"].values():
        assert protocol["endpoint"].startswith("0.0.0.0:")


def test_memory_limiter_runs_first_in_every_pipeline(collector: dict[str, Any]) -> None:
    """Each pipeline starts with memory_limiter, and stamps the resource with the resource processor."""
    for name, pipeline in collector["service"]["pipelines"].items():
        processors = [_component_type(p) for p in pipeline.get("processors", [])]
        assert processors[:1] == ["memory_limiter"], name
        assert "resource" in processors, name


def test_network_exporters_queue_on_disk_and_never_give_up(collector: dict[str, Any]) -> None:
    """Loki and Jaeger exporters use a persistent file_storage queue and retries with max_elapsed_time 0."""
    storages = {cid for cid in collector["service"]["extensions"] if _component_type(cid) == "file_storage"}
    network = {cid: cfg for cid, cfg in collector["exporters"].items() if _component_type(cid) != "debug"}
    assert len(network) == 2
    for cid, cfg in network.items():
        queue = cfg["sending_queue"]
        assert queue.get("enabled", True) is True, cid
        assert queue["storage"] in storages, cid
        retry = cfg["retry_on_failure"]
        assert retry.get("enabled", True) is True, cid
        assert str(retry["max_elapsed_time"]) in {"0", "0s"}, cid


def test_logs_go_to_loki_over_otlp_http_and_traces_to_jaeger(
    collector: dict[str, Any], services: dict[str, Any]
) -> None:
    """Logs are exported to http://loki:3100/otlp (otlp_http), traces to jaeger:4317 (otlp_grpc, insecure)."""
    pipelines = collector["service"]["pipelines"]
    exporters = collector["exporters"]
    logs = [cid for cid in pipelines["logs"]["exporters"] if _component_type(cid) == "otlp_http"]
    traces = [cid for cid in pipelines["traces"]["exporters"] if _component_type(cid) == "otlp_grpc"]
    assert len(logs) == 1
    assert len(traces) == 1
    assert exporters[logs[0]]["endpoint"] == "http://loki:3100/otlp"
    assert exporters[traces[0]]["endpoint"] == "jaeger:4317"
    assert exporters[traces[0]]["tls"]["insecure"] is True
    # Jaeger stores no logs (UNIMPLEMENTED), Loki no traces.
    assert traces[0] not in pipelines["logs"]["exporters"]
    assert logs[0] not in pipelines["traces"]["exporters"]
    assert {"loki", "jaeger"} <= set(services)


def test_collector_health_check_and_queue_directory_are_wired(
    collector: dict[str, Any], services: dict[str, Any]
) -> None:
    """health_check listens on 0.0.0.0:13133 and file_storage writes to the collector-queue volume."""
    extensions = collector["extensions"]
    assert extensions["health_check"]["endpoint"] == "0.0.0.0:13133"
    mounts = dict(_bind_mounts(services[COLLECTOR_SERVICE]))
    assert extensions["file_storage"]["directory"] == mounts["collector-queue"]


# --- collector-config/loki.yaml and jaeger.yaml -------------------------------------------


def test_loki_schema_supports_otlp_ingestion(loki: dict[str, Any], services: dict[str, Any]) -> None:
    """Loki uses schema v13 on tsdb with structured metadata, stored under the loki-data volume."""
    latest = loki["schema_config"]["configs"][-1]
    assert latest["schema"] == "v13"
    assert latest["store"] == "tsdb"
    assert latest["object_store"] == "filesystem"
    assert loki["limits_config"]["allow_structured_metadata"] is True
    mounts = dict(_bind_mounts(services["loki"]))
    assert loki["common"]["path_prefix"] == mounts["loki-data"]


def test_loki_promotes_the_plugin_name_to_the_dashboard_label(loki: dict[str, Any]) -> None:
    """Resource attribute plugin.name becomes the Loki index label plugin_name (the package's contract)."""
    configs = loki["limits_config"]["otlp_config"]["resource_attributes"]["attributes_config"]
    indexed = {
        attr for cfg in configs if cfg["action"] == "index_label" for attr in cfg.get("attributes", [])
    }
    assert NAMES.RESOURCE_PLUGIN_NAME in indexed
    assert _loki_name(NAMES.RESOURCE_PLUGIN_NAME) == NAMES.LOKI_PLUGIN_LABEL


def test_jaeger_receives_otlp_on_the_port_the_collector_exports_to(
    jaeger: dict[str, Any], collector: dict[str, Any]
) -> None:
    """Jaeger's OTLP gRPC receiver port is the collector's trace exporter port; its pipeline refs are defined."""
    exporter = next(cfg for cid, cfg in collector["exporters"].items() if _component_type(cid) == "otlp_grpc")
    assert _port_of(jaeger["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]) == _port_of(
        exporter["endpoint"]
    )
    for section in ("receivers", "processors", "exporters"):
        assert _pipeline_ids(jaeger, section) <= set(jaeger[section])
    assert set(jaeger["service"]["extensions"]) <= set(jaeger["extensions"])
    backends = jaeger["extensions"]["jaeger_storage"]["backends"]
    assert jaeger["extensions"]["jaeger_query"]["storage"]["traces"] in backends
    assert jaeger["exporters"]["jaeger_storage_exporter"]["trace_storage"] in backends
    assert urlsplit(_datasources_by_uid()["jaeger"]["url"]).port == _port_of(
        jaeger["extensions"]["jaeger_query"]["http"]["endpoint"]
    )


# --- Grafana provisioning and dashboard ----------------------------------------------------


def test_datasources_are_loki_and_jaeger_with_fixed_uids() -> None:
    """The provisioned data sources have uids `loki` and `jaeger` and point at the compose services."""
    by_uid = _datasources_by_uid()
    assert by_uid["loki"]["type"] == "loki"
    assert by_uid["jaeger"]["type"] == "jaeger"
    assert urlsplit(by_uid["loki"]["url"]).hostname == "loki"
    assert urlsplit(by_uid["jaeger"]["url"]).hostname == "jaeger"


def test_every_referenced_datasource_uid_exists(dashboard: dict[str, Any]) -> None:
    """Every data source uid used by a panel, query, variable, derived field or trace link is provisioned."""
    by_uid = _datasources_by_uid()
    referenced = set()
    for panel, target in _iter_loki_targets(dashboard):
        referenced.update({panel["datasource"]["uid"], target["datasource"]["uid"]})
    for variable in dashboard["templating"]["list"]:
        if "datasource" in variable:
            referenced.add(variable["datasource"]["uid"])
    for field in by_uid["loki"]["jsonData"]["derivedFields"]:
        if "datasourceUid" in field:
            referenced.add(field["datasourceUid"])
    referenced.add(by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]["datasourceUid"])
    assert referenced == {"loki", "jaeger"}
    assert referenced <= set(by_uid)


def test_grafana_template_dollars_are_escaped_in_provisioning() -> None:
    """Provisioning YAML writes every Grafana `$` as `$$`, so Grafana's env expansion leaves it alone."""

    def strings(node: Any) -> list[str]:
        if isinstance(node, dict):
            return [s for value in node.values() for s in strings(value)]
        if isinstance(node, list):
            return [s for value in node for s in strings(value)]
        return [node] if isinstance(node, str) else []

    for path in (DATASOURCES_FILE, DASHBOARD_PROVIDER_FILE):
        for value in strings(_yaml(path)):
            assert "$" not in value.replace("$$", ""), f"{path.name}: {value}"
    assert any("$${__value.raw}" in value for value in strings(_yaml(DATASOURCES_FILE)))


def test_log_lines_link_to_jaeger_and_traces_link_back_to_logs() -> None:
    """trace_id of a log line links to the trace (Grafana and Jaeger UI); a span links to the trace's logs."""
    by_uid = _datasources_by_uid()
    fields = by_uid["loki"]["jsonData"]["derivedFields"]
    for field in fields:
        assert field["matcherType"] == "label"
        assert field["matcherRegex"] == "trace_id"
    assert any(field.get("datasourceUid") == "jaeger" for field in fields)
    assert any(field["url"].startswith(NAMES.JAEGER_URL + "/trace/") for field in fields)
    trace_to_logs = by_uid["jaeger"]["jsonData"]["tracesToLogsV2"]
    assert trace_to_logs["datasourceUid"] == "loki"
    assert trace_to_logs["customQuery"] is True
    assert 'trace_id="$${__span.traceId}"' in trace_to_logs["query"]


def test_dashboard_filters_on_the_label_the_package_produces(dashboard: dict[str, Any]) -> None:
    """The plugin variable lists label plugin_name, and every query selects streams by it."""
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "plugin")
    assert variable["query"] == f"label_values({NAMES.LOKI_PLUGIN_LABEL})"
    selector = f'{{{NAMES.LOKI_PLUGIN_LABEL}=~"$plugin"}}'
    targets = _iter_loki_targets(dashboard)
    assert targets
    for panel, target in targets:
        assert selector in target["expr"], panel["title"]


def test_dashboard_shows_volume_by_plugin_and_level_and_errors(dashboard: dict[str, Any]) -> None:
    """One panel counts records by plugin and level, one lists ERROR-and-above and exception records."""
    exprs = [target["expr"] for _, target in _iter_loki_targets(dashboard)]
    assert any(
        f"sum by ({NAMES.LOKI_PLUGIN_LABEL}, severity_number)" in e and "count_over_time" in e for e in exprs
    )
    assert any("severity_number >= 17" in e and "exception_type" in e for e in exprs)
    assert not any("severity_text" in e for e in exprs)  # level names differ between sources


def test_dashboard_bridge_panels_filter_on_the_bridge_attributes(dashboard: dict[str, Any]) -> None:
    """Bridge panels filter scope otel_plugin_logs.bridge and bridge_event, and sum bridge_count."""
    event = _loki_name(NAMES.BRIDGE_EVENT_ATTRIBUTE)
    bridge = [e for _, t in _iter_loki_targets(dashboard) if event in (e := t["expr"])]
    assert len(bridge) >= 2
    for expr in bridge:
        assert f'scope_name="{NAMES.BRIDGE_SCOPE_NAME}"' in expr
        for match in re.finditer(event + r'=~"([^"]+)"', expr):
            assert set(match.group(1).split("|")) <= set(NAMES.BRIDGE_EVENTS)
    assert any(f"unwrap {_loki_name(NAMES.BRIDGE_COUNT_ATTRIBUTE)}" in expr for expr in bridge)


def test_grafana_is_anonymous_admin_without_login_form(services: dict[str, Any]) -> None:
    """Grafana lets anyone in as Admin, shows no login form, and opens on the provisioned dashboard."""
    env = _env(services["grafana"])
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Admin"
    assert env["GF_AUTH_DISABLE_LOGIN_FORM"] == "true"
    mounts = {target: source for source, target in _bind_mounts(services["grafana"])}
    home = Path(env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert (REPO / mounts[str(home.parent)] / home.name).resolve() == DASHBOARD_FILE


def test_dashboard_provider_reads_the_mounted_dashboard_directory(services: dict[str, Any]) -> None:
    """The dashboard provider's path is where compose mounts the dashboard JSON directory."""
    providers = _yaml(DASHBOARD_PROVIDER_FILE)["providers"]
    mounts = {target: source for source, target in _bind_mounts(services["grafana"])}
    for provider in providers:
        assert provider["type"] == "file"
        source = mounts[provider["options"]["path"]]
        assert (REPO / source).resolve() == DASHBOARD_FILE.parent
    assert mounts["/etc/grafana/provisioning/datasources"]
    assert mounts["/etc/grafana/provisioning/dashboards"]


# --- docs/stack.md -------------------------------------------------------------------------


def test_stack_doc_gives_commands_urls_and_logql_examples() -> None:
    """docs/stack.md shows the commands, the URLs, and LogQL for a plugin's errors and for one trace."""
    text = STACK_DOC.read_text(encoding="utf-8")
    assert text.startswith("## See it in Grafana and Jaeger")
    for needle in (
        "docker compose up -d",
        f"OTEL_EXPORTER_OTLP_ENDPOINT={NAMES.DEFAULT_OTLP_GRPC_ENDPOINT} otel-plugin-logs demo",
        NAMES.GRAFANA_URL,
        NAMES.JAEGER_URL,
        "Plugin logs",
    ):
        assert needle in text, needle
    label = NAMES.LOKI_PLUGIN_LABEL
    assert re.search(r"\{" + label + r'="[^"]+"\} \\?\| severity_number >= 17', text)
    assert re.search(r'\\?\| trace_id="[0-9a-f]{32}"', text)
