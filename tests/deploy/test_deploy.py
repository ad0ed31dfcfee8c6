"""deploy/: every manifest parses, the compose file refers only to files that exist, Prometheus and
Alertmanager accept their configs (promtool, amtool) as the containers see them, the exporter and
load configs pass their own config borders, and the remote_write block delivers samples to a
real VictoriaMetrics. No container engine runs here: nothing is built or started with Docker."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE_DIR = DEPLOY / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yaml"
KUBERNETES = DEPLOY / "kubernetes"


def manifests() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return data


def kubernetes_objects() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KUBERNETES.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in documents(path):
            yield path, doc


def find(kind: str, name: str) -> dict[str, Any]:
    for _, doc in kubernetes_objects():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes")


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, PurePosixPath]]:
    """(host path, container path) of every bind mount of a compose service."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append(((COMPOSE_DIR / source).resolve(), PurePosixPath(target)))
    return mounts


def container_files(service_name: str, root: Path) -> Path:
    """Lay out the bind mounts of ``service_name`` under ``root`` as the container sees them."""
    for source, target in bind_mounts(compose()["services"][service_name]):
        destination = root / target.relative_to("/")
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy(source, destination)
    return root


# -- every manifest -----------------------------------------------------------------------------
@pytest.mark.parametrize("path", manifests(), ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_under_deploy_is_yaml_of_mappings(path: Path) -> None:
    docs = documents(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(doc, dict) for doc in docs)


def test_every_kubernetes_object_names_its_api_version_kind_and_name() -> None:
    objects = list(kubernetes_objects())
    assert len(objects) >= 7
    for path, doc in objects:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path
        assert doc["metadata"].get("name"), path


def test_the_kustomization_lists_every_manifest_and_only_existing_ones() -> None:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk


# -- compose ------------------------------------------------------------------------------------
def test_compose_bind_mounts_build_context_and_dockerfile_all_exist() -> None:
    data = compose()
    checked = 0
    for name, service in data["services"].items():
        for source, _ in bind_mounts(service):
            assert source.exists(), f"service {name} mounts missing {source}"
            checked += 1
        build = service.get("build")
        if build:
            context = (COMPOSE_DIR / build["context"]).resolve()
            assert (context / "pyproject.toml").exists(), f"{name}: context is not the repo root"
            assert (context / build["dockerfile"]).exists()
    assert checked >= 6


def test_compose_references_between_services_point_at_services_that_exist() -> None:
    services = compose()["services"]
    for name, service in services.items():
        for dependency in service.get("depends_on", []):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        pid = service.get("pid")
        if pid:
            kind, _, other = pid.partition(":")
            assert kind == "service" and other in services, f"{name}: pid {pid}"
    exporter = services["exporter"]
    assert exporter["pid"] == "service:sample-service", "the exporter must be a sidecar"


def test_compose_prometheus_scrapes_the_exporter_and_load_ports_they_listen_on() -> None:
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"][0]
        for job in prometheus["scrape_configs"]
    }
    exporter_config = yaml.safe_load((COMPOSE_DIR / "exporter.yaml").read_text())
    exporter_port = exporter_config["listen"].rsplit(":", 1)[1]
    assert targets["soak-exporter"] == f"exporter:{exporter_port}"
    load_command = " ".join(compose()["services"]["load"]["command"])
    load_port = re.search(r"--metrics-listen=\S+:(\d+)", load_command)
    assert load_port is not None
    assert targets["soak-load"] == f"load:{load_port.group(1)}"


def test_grafana_provisioning_points_at_the_dashboards_mount_and_the_datasource_uid_they_use() -> (
    None
):
    services = compose()["services"]
    mounts = {str(target): source for source, target in bind_mounts(services["grafana"])}
    providers = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/dashboards/soakwatch.yaml").read_text()
    )["providers"]
    dashboards_dir = mounts[providers[0]["options"]["path"]]
    assert sorted(dashboards_dir.glob("*.json")), "no dashboard JSON at the provisioned path"
    datasources = yaml.safe_load(
        (COMPOSE_DIR / "grafana/provisioning/datasources/prometheus.yaml").read_text()
    )["datasources"]
    assert "prometheus" in {d["uid"] for d in datasources}


def test_the_dockerfile_copies_only_paths_that_exist_and_that_its_dockerignore_lets_through() -> (
    None
):
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    allowed = [line[1:].rstrip("/") for line in ignore if line.startswith("!")]
    sources = []
    for line in dockerfile.splitlines():
        parts = line.split()
        if parts[:1] == ["COPY"] and not parts[1].startswith("--from"):
            sources += parts[1:-1]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: missing"
        assert any(source.rstrip("/").startswith(a) for a in allowed), f"{source} is ignored"


# -- Prometheus and Alertmanager configs --------------------------------------------------------
@pytest.mark.requires_binary("promtool", "prometheus")
def test_promtool_accepts_the_prometheus_config_with_the_rules_as_compose_mounts_them(
    tmp_path: Path,
) -> None:
    root = container_files("prometheus", tmp_path)
    config = root / "etc/prometheus/prometheus.yml"
    done = subprocess.run(
        ["promtool", "check", "config", str(config)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout  # the generated rules; the run id is scraped
    assert re.search(r"SUCCESS: \d+ rules found", done.stdout), done.stdout


@pytest.mark.requires_binary("amtool", "prometheus-alertmanager")
def test_amtool_accepts_the_alertmanager_config_and_its_templates(tmp_path: Path) -> None:
    root = container_files("alertmanager", tmp_path)
    done = subprocess.run(
        ["amtool", "check-config", str(root / "etc/alertmanager/alertmanager.yml")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 templates" in done.stdout


def test_alertmanager_inhibits_only_alerts_that_the_generated_rules_define() -> None:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    rules = yaml.safe_load((REPO / "rules" / "prometheus" / "soak.rules.yaml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    named = set()
    for inhibit in config["inhibit_rules"]:
        for matcher in inhibit["source_matchers"] + inhibit["target_matchers"]:
            found = re.fullmatch(r'alertname=~?"(.+)"', matcher)
            if found:
                named.update(found.group(1).split("|"))
    assert named and named <= alerts


def compose_interpolate(text: str, environ: dict[str, str]) -> str:
    """What docker compose makes of ``${NAME:-default}`` (no container engine here to ask)."""

    def value(match: re.Match[str]) -> str:
        return environ.get(match.group(1)) or match.group(2)

    return re.sub(r"\$\{(\w+):-([^}]*)\}", value, text)


def test_compose_passes_the_load_driver_a_run_id_from_soak_run_id_with_a_default() -> None:
    from soakwatch.load.config import load_config

    command = compose()["services"]["load"]["command"]
    (run_id_flag,) = [arg for arg in command if arg.startswith("--run-id=")]
    assert run_id_flag == "--run-id=${SOAK_RUN_ID:-compose-demo}"
    default = compose_interpolate(run_id_flag, {}).removeprefix("--run-id=")
    chosen = compose_interpolate(run_id_flag, {"SOAK_RUN_ID": "nightly-43"})
    assert chosen == "--run-id=nightly-43"
    config = load_config(COMPOSE_DIR / "load.yaml", flags={"run_id": default})
    assert config.run_id == "compose-demo"


def test_nothing_under_deploy_records_soak_run_info_so_the_driver_is_its_only_source() -> None:
    recorded = []
    for path in manifests():
        for doc in documents(path):
            groups = doc.get("groups") or doc.get("spec", {}).get("groups") or []
            for group in groups if isinstance(groups, list) else []:
                recorded += [r["record"] for r in group.get("rules", []) if "record" in r]
    assert "soak:memory_growth:slope_bytes_per_hour" in recorded  # the scan does find rules
    assert "soak_run_info" not in recorded


# -- Kubernetes ---------------------------------------------------------------------------------
def test_the_exporter_is_a_sidecar_in_a_shared_process_namespace() -> None:
    deployment = find("Deployment", "sample-service")
    spec = deployment["spec"]["template"]["spec"]
    assert spec["shareProcessNamespace"] is True
    assert {c["name"] for c in spec["containers"]} == {"service", "soak-exporter"}
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    monitor = find("PodMonitor", "soakwatch")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    exporter = next(c for c in spec["containers"] if c["name"] == "soak-exporter")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] in {
        p["name"] for p in exporter["ports"]
    }


def test_the_load_job_runs_n_indexed_shards_in_parallel_each_told_its_index() -> None:
    job = find("Job", "soak-load")["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] > 1
    container = job["template"]["spec"]["containers"][0]
    shard = next(a for a in container["args"] if a.startswith("--shard="))
    assert shard == f"--shard=$(SHARD_INDEX)/{job['completions']}"
    env = {e["name"]: e for e in container["env"]}
    assert "job-completion-index" in env["SHARD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert "--run-id=$(SOAK_RUN_ID)" in container["args"]
    assert env["SOAK_RUN_ID"]["valueFrom"]["configMapKeyRef"] == {
        "name": "soak-run",
        "key": "run-id",
    }


@pytest.mark.requires_binary("kubectl", "kubernetes-client")
def test_the_built_load_job_reads_its_run_id_from_the_generated_configmap() -> None:
    from soakwatch.load.config import parse_run_id

    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    built = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
    (job,) = [d for d in built if d["kind"] == "Job" and d["metadata"]["name"] == "soak-load"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    reference = env["SOAK_RUN_ID"]["valueFrom"]["configMapKeyRef"]
    # The generated name carries a hash of the run id, and the Job refers to exactly it.
    assert reference["name"].startswith("soak-run-")
    (configmap,) = [
        d for d in built if d["kind"] == "ConfigMap" and d["metadata"]["name"] == reference["name"]
    ]
    assert configmap["metadata"]["namespace"] == job["metadata"]["namespace"] == "soak"
    assert parse_run_id(configmap["data"][reference["key"]]) == "k8s-demo"


# -- the configs inside pass their own borders --------------------------------------------------
def test_the_exporter_configs_of_compose_and_kubernetes_pass_the_exporter_config_border(
    tmp_path: Path,
) -> None:
    from soakwatch.exporter.config import load_config

    compose_config = load_config(COMPOSE_DIR / "exporter.yaml")
    assert compose_config.services[0].match.pid == 1
    k8s_file = tmp_path / "exporter.yaml"
    k8s_file.write_text(find("ConfigMap", "soak-exporter")["data"]["exporter.yaml"])
    k8s_config = load_config(k8s_file)
    assert k8s_config.services[0].match.cmdline is not None
    assert k8s_config.listen.port == 9464


def test_the_load_configs_of_compose_and_kubernetes_pass_the_load_config_border(
    tmp_path: Path,
) -> None:
    from soakwatch.load.config import load_config

    assert load_config(COMPOSE_DIR / "load.yaml").scenarios
    k8s_file = tmp_path / "load.yaml"
    k8s_file.write_text(find("ConfigMap", "soak-load")["data"]["load.yaml"])
    assert load_config(k8s_file, flags={"shard": "3/4"}).shard == (3, 4)


# -- remote_write, for real ---------------------------------------------------------------------
@pytest.mark.slow
def test_the_remote_write_block_delivers_soak_series_to_victoriametrics_and_drops_others(
    prometheus_factory: Callable[..., Any], victoriametrics_server: Any
) -> None:
    deploy_config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (remote,) = deploy_config["remote_write"]
    remote = {**remote, "url": f"{victoriametrics_server.url}/api/v1/write"}
    prometheus = prometheus_factory(scrape_self=True)
    config = yaml.safe_load(prometheus.config_path.read_text())
    config["remote_write"] = [remote]
    # This Prometheus's samples, told apart from other tests' data in the shared store.
    marker = prometheus.data_dir.name
    config["global"]["external_labels"] = {"soak_test": marker}
    # A recording rule gives a soak:* series to forward; prometheus_* must stay behind.
    rules = prometheus.data_dir / "forward.rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "t", "rules": [{"record": "soak:test:up", "expr": "up"}]}]}
        )
    )
    config["rule_files"] = [str(rules)]
    prometheus.reload(yaml.safe_dump(config))
    deadline = time.monotonic() + 30
    found: list[Any] = []
    while time.monotonic() < deadline and not found:
        victoriametrics_server.flush()
        found = victoriametrics_server.query(f'soak:test:up{{soak_test="{marker}"}}')
        time.sleep(0.5)
    assert found, "nothing arrived through remote_write in 30 s"
    assert victoriametrics_server.query(f'up{{soak_test="{marker}"}}')
    # Prometheus's own series were scraped all along, but the relabelling kept them home.
    assert prometheus.query('prometheus_build_info{job="prometheus"}')
    response = requests.get(
        f"{victoriametrics_server.url}/api/v1/series",
        params={"match[]": f'{{__name__=~"prometheus_.*",soak_test="{marker}"}}'},
        timeout=10,
    )
    assert response.json()["data"] == []


def test_the_commands_the_containers_run_are_console_scripts_or_modules_that_exist() -> None:
    import importlib.util

    import tomllib

    scripts = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"])
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    entrypoint = re.search(r'^ENTRYPOINT \["([^"]+)"', dockerfile, re.MULTILINE)
    assert entrypoint is not None and entrypoint.group(1) in scripts
    commands = [s.get("entrypoint") for s in compose()["services"].values() if "build" in s]
    for _, doc in kubernetes_objects():
        template = doc.get("spec", {}).get("template", {}).get("spec", {})
        commands += [c.get("command") for c in template.get("containers", [])]
    for command in filter(None, commands):
        if command[0] == "python":
            module = command[command.index("-m") + 1]
            assert importlib.util.find_spec(module) is not None, module
        else:
            assert command[0] in scripts, command
