"""deploy/kubernetes: every manifest strictly valid offline against pinned Kubernetes versions, consistent with
the shim it runs (settings, listeners, probes, the admin port's fence, the training Job's push URL), and the
ConfigMap's settings accepted and served by the real shim binary on loopback.

None of this touches a cluster: docs/kubernetes.md says so.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from maintenance_shim.integrations import TRAINING, ProgressSink
from maintenance_shim.integrations._core import ENV_TOKEN, ENV_URL
from maintenance_shim.settings.shim import Settings, load_settings, parse_admin_listen, parse_listener
from maintenance_shim.web.catchall import PUBLIC_RESERVED
from tests.support import ROOT, PortInUse, clean_env, start_on_free_ports, stop_pid, wait_http, wait_listening

KUBE = ROOT / "deploy" / "kubernetes"
# The oldest Kubernetes the manifests are written for (the preStop `sleep` action on by default since 1.30,
# the PodDisruptionBudget's unhealthyPodEvictionPolicy GA in 1.31) and the newest that kubernetes-validate
# ships schemas for here. Both are pinned so that a new kubernetes-validate cannot move them silently.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
# Not in kustomization.yaml on purpose (each file says why).
APPLIED_SEPARATELY = {"secret.yaml", "studio.yaml", "training-job.yaml"}
SHIM_BIN = Path(sys.executable).with_name("maintenance-shim")
SHIM_DRAIN_SECONDS = 5  # app/server.py: uvicorn's timeout_graceful_shutdown
HEALTH_PATH = "/_maintenance/health"
PUSH_PATH = "/_maintenance/progress"
DEFAULT_BACKEND = "nginx.ingress.kubernetes.io/default-backend"
CUSTOM_ERRORS = "nginx.ingress.kubernetes.io/custom-http-errors"


def _load(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


MANIFEST_FILES = sorted(path for path in KUBE.glob("*.y*ml") if path.name != "kustomization.yaml")
DOCS = [(path.name, index, doc) for path in MANIFEST_FILES for index, doc in enumerate(_load(path))]


def _find(kind: str, name: str) -> dict[str, Any]:
    found = [doc for _, _, doc in DOCS if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in {KUBE}, found {len(found)}"
    return found[0]


SHIM = _find("Deployment", "maintenance-shim")
CONFIGMAP = _find("ConfigMap", "maintenance-shim")
SECRET = _find("Secret", "maintenance-shim-admin")
PUBLIC = _find("Service", "maintenance-shim")
ADMIN = _find("Service", "maintenance-shim-admin")
PDB = _find("PodDisruptionBudget", "maintenance-shim")
POLICY = _find("NetworkPolicy", "maintenance-shim")
INGRESS = _find("Ingress", "studio")
JOB = _find("Job", "studio-train")


def _container(workload: dict[str, Any]) -> dict[str, Any]:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def _env(workload: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in _container(workload).get("env", [])}


def _named_ports(workload: dict[str, Any]) -> dict[str, int]:
    return {port["name"]: port["containerPort"] for port in _container(workload)["ports"]}


def _resolve(port: int | str, workload: dict[str, Any]) -> int:
    """A Service targetPort, probe port or NetworkPolicy port: a number, or a container port's name."""
    return port if isinstance(port, int) else _named_ports(workload)[port]


def _selects(selector: dict[str, str], workload: dict[str, Any]) -> bool:
    labels = workload["spec"]["template"]["metadata"]["labels"]
    return all(labels.get(key) == value for key, value in selector.items())


def _settings() -> Settings:
    """The shim's settings from the ConfigMap (plus a real token), as the pod's environment gives them."""
    environ = {**CONFIGMAP["data"], "MAINT_ADMIN_TOKEN": secrets.token_hex(32)}
    return load_settings(env_file=None, environ=environ)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Any attempt to resolve a name or open a connection fails: the schemas must come from the package."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access during offline validation")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield


@pytest.fixture(autouse=True)
def _no_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_settings reads ./maintenance.env when present: never a developer's own file here."""
    monkeypatch.chdir(tmp_path)


# --- strict offline validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("name", "index", "doc"), DOCS, ids=[f"{name}#{index}" for name, index, _ in DOCS])
def test_every_manifest_validates_strictly(name: str, index: int, doc: dict[str, Any], version: str,
                                           offline: None) -> None:
    # validate() raises SchemaNotFoundError for a kind it has no schema for: nothing is let through unchecked.
    assert kubernetes_validate.validate(doc, version, strict=True) == version.rsplit(".", 1)[0]


def test_the_manifests_are_the_expected_set() -> None:
    kinds = sorted((doc["kind"], doc["metadata"]["name"]) for _, _, doc in DOCS)
    assert kinds == sorted([
        ("ConfigMap", "maintenance-shim"),
        ("Deployment", "maintenance-shim"),
        ("Deployment", "studio"),
        ("Ingress", "studio"),
        ("Job", "studio-train"),
        ("NetworkPolicy", "maintenance-shim"),
        ("PodDisruptionBudget", "maintenance-shim"),
        ("Secret", "maintenance-shim-admin"),
        ("Service", "maintenance-shim"),
        ("Service", "maintenance-shim-admin"),
        ("Service", "studio"),
    ])
    # Default-backend Service, Ingress and Job's short-name push URL only work within one namespace.
    assert {doc["metadata"].get("namespace") for _, _, doc in DOCS} == {"inference"}


@pytest.mark.parametrize(
    ("case", "path", "value"),
    [
        ("misspelled field", ("spec", "template", "spec", "containers", 0, "readinessprobe"), {}),
        ("number where a string is due", ("metadata", "labels", "app.kubernetes.io/name"), 1),
        ("string where an integer is due", ("spec", "template", "spec", "containers", 0, "ports", 0,
                                            "containerPort"), "8080"),
        ("required field missing", ("spec", "selector"), None),
    ],
)
def test_strict_validation_catches_what_a_cluster_would_reject(case: str, path: tuple[str | int, ...],
                                                               value: object, offline: None) -> None:
    broken = json.loads(json.dumps(SHIM))
    target = broken
    for key in path[:-1]:
        target = target[key]
    if value is None:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


# What the API server checks beyond the OpenAPI schemas (which carry types and required fields, not formats or
# ranges): apimachinery's validation of names, labels, port names and ConfigMap/Secret keys.
DNS_1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
LABEL_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
DNS_1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")


def _labels(doc: dict[str, Any]) -> dict[str, str]:
    labels = dict(doc["metadata"].get("labels", {}))
    template = doc.get("spec", {}).get("template", {})
    labels.update(template.get("metadata", {}).get("labels", {}))
    return labels


def _port_names(doc: dict[str, Any]) -> list[str]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    names = [port["name"] for container in pod.get("containers", []) for port in container.get("ports", [])]
    return names + [port["name"] for port in spec.get("ports", []) if doc["kind"] == "Service"]


@pytest.mark.parametrize(("name", "index", "doc"), DOCS, ids=[f"{name}#{index}" for name, index, _ in DOCS])
def test_names_labels_and_ports_follow_the_api_servers_rules(name: str, index: int, doc: dict[str, Any]) -> None:
    assert len(doc["metadata"]["name"]) <= 63 and DNS_1035.fullmatch(doc["metadata"]["name"])
    for key, value in _labels(doc).items():
        prefix, _, label = key.rpartition("/")
        assert not prefix or (len(prefix) <= 253 and DNS_1123_SUBDOMAIN.fullmatch(prefix)), key
        assert len(label) <= 63 and LABEL_NAME.fullmatch(label), key
        assert isinstance(value, str) and len(value) <= 63 and (not value or LABEL_NAME.fullmatch(value)), key
    for port_name in _port_names(doc):  # IANA_SVC_NAME
        assert len(port_name) <= 15 and re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", port_name), port_name
        assert re.search("[a-z]", port_name), port_name
    for key in {**doc.get("data", {}), **doc.get("stringData", {})}:
        assert CONFIG_KEY.fullmatch(key), key


def test_the_kustomization_lists_the_shim_and_nothing_applied_per_run() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    resources = set(kustomization["resources"])
    assert all((KUBE / name).is_file() for name in resources)
    assert resources | APPLIED_SEPARATELY == {path.name for path in MANIFEST_FILES}
    assert not resources & APPLIED_SEPARATELY


def test_every_maint_variable_is_a_real_setting() -> None:
    names = set(CONFIGMAP["data"]) | {name for name in _env(SHIM) if name.startswith("MAINT_")}
    assert "MAINT_LISTEN" in names and "MAINT_ADMIN_TOKEN" in names
    unknown = {
        name for name in names
        if name[len("MAINT_"):].lower() not in Settings.model_fields and not name.startswith("MAINT_MESSAGE_")
    }
    assert not unknown, f"not shim settings (a typo is silently ignored): {sorted(unknown)}"
    assert all(isinstance(value, str) for value in CONFIGMAP["data"].values())


def test_the_container_gets_the_configmap_and_the_token_from_the_secret() -> None:
    container = _container(SHIM)
    assert container["envFrom"] == [{"configMapRef": {"name": CONFIGMAP["metadata"]["name"]}}]
    ref = _env(SHIM)[ENV_TOKEN]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == SECRET["metadata"]["name"]
    assert ref["key"] in SECRET["stringData"]
    assert ENV_TOKEN not in CONFIGMAP["data"]


def test_listeners_match_the_container_ports_and_listen_beyond_loopback() -> None:
    settings = _settings()
    ports = _named_ports(SHIM)
    admin = settings.admin_address
    assert admin is not None and admin.path is None
    assert [listener.port for listener in settings.listeners] == [ports["http"]]
    assert admin.port == ports["admin"]
    # 127.0.0.1 inside a pod is unreachable for ingress-nginx, the kubelet's probes and the Job alike.
    assert {listener.host for listener in settings.listeners} | {admin.host} <= {"0.0.0.0", "::"}
    assert set(ports) == {"http", "admin"}


def test_the_public_service_never_exposes_the_admin_port() -> None:
    settings = _settings()
    admin = settings.admin_address
    assert admin is not None
    public_ports = [_resolve(port["targetPort"], SHIM) for port in PUBLIC["spec"]["ports"]]
    # ingress-nginx sends a default backend's traffic to the Service's first port.
    assert public_ports[0] == settings.listeners[0].port
    assert set(public_ports) <= {listener.port for listener in settings.listeners}
    assert admin.port not in public_ports
    assert [_resolve(port["targetPort"], SHIM) for port in ADMIN["spec"]["ports"]] == [admin.port]
    assert ADMIN["spec"]["type"] == "ClusterIP"
    for service in (PUBLIC, ADMIN):
        assert _selects(service["spec"]["selector"], SHIM)
    others = [doc for _, _, doc in DOCS if doc["kind"] == "Service" and doc is not ADMIN and
              _selects(doc["spec"]["selector"], SHIM)]
    assert all(admin.port not in {_resolve(p["targetPort"], SHIM) for p in doc["spec"]["ports"]} for doc in others)


def test_the_probes_ask_the_public_listener_for_health() -> None:
    container = _container(SHIM)
    settings = _settings()
    assert HEALTH_PATH in PUBLIC_RESERVED
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]["httpGet"]
        assert probe["path"] == HEALTH_PATH, kind
        assert _resolve(probe["port"], SHIM) in {listener.port for listener in settings.listeners}, kind


def test_the_pod_runs_unprivileged_on_a_read_only_root() -> None:
    pod = SHIM["spec"]["template"]["spec"]
    container = _container(SHIM)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    # Nothing to write: no MAINT_STATE_DIR, no progress file, no Unix admin socket.
    assert "MAINT_STATE_DIR" not in CONFIGMAP["data"] and "MAINT_PROGRESS_FILE" not in CONFIGMAP["data"]


def _quantity(text: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi)?", str(text))
    assert match, text
    return float(match[1]) * units.get(match[2] or "", 1)


def test_resources_leave_room_above_the_measured_memory() -> None:
    resources = _container(SHIM)["resources"]
    for name in ("cpu", "memory"):
        assert _quantity(resources["requests"][name]) <= _quantity(resources["limits"][name])
    # docs/benchmarks/README.md: 64 MB RSS after load (one process); docs/kubernetes.md: 84-103 MiB peak for the
    # supervisor and server together in one memory cgroup, page cache included.
    assert _quantity(resources["requests"]["memory"]) >= 64 * 2**20
    assert _quantity(resources["limits"]["memory"]) >= 1.5 * 103 * 2**20


def test_one_replica_kept_through_rollouts_and_drains() -> None:
    spec = SHIM["spec"]
    assert spec["replicas"] == 1  # progress pushes reach one pod: a second one would not know the ETA
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert _selects(spec["selector"]["matchLabels"], SHIM)
    assert PDB["spec"]["minAvailable"] == 1
    assert _selects(PDB["spec"]["selector"]["matchLabels"], SHIM)
    pod = spec["template"]["spec"]
    pre_stop = _container(SHIM)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pre_stop + SHIM_DRAIN_SECONDS


# --- ingress-nginx ------------------------------------------------------------------------------------------


def test_the_ingress_falls_back_to_the_public_service() -> None:
    annotations = INGRESS["metadata"]["annotations"]
    assert annotations[DEFAULT_BACKEND] == PUBLIC["metadata"]["name"]
    # With custom-http-errors listing 503, ingress-nginx would intercept the shim's own 503 and ask again for /.
    assert CUSTOM_ERRORS not in annotations
    assert INGRESS["spec"]["ingressClassName"] == "nginx"
    backends = [path["backend"]["service"] for rule in INGRESS["spec"]["rules"] for path in rule["http"]["paths"]]
    studio = _find("Deployment", "studio")
    for backend in backends:
        service = _find("Service", backend["name"])
        assert backend["port"]["name"] in {port["name"] for port in service["spec"]["ports"]}
        assert _selects(service["spec"]["selector"], studio)
        assert not _selects(service["spec"]["selector"], SHIM)
    assert _container(studio)["readinessProbe"]  # not ready while loading: ingress-nginx keeps the shim


# --- the training Job and the admin port's fence ------------------------------------------------------------


def test_the_job_pushes_to_the_admin_service_with_the_secret() -> None:
    env = _env(JOB)
    url = urlsplit(env[ENV_URL]["value"])
    name, namespace = ADMIN["metadata"]["name"], ADMIN["metadata"]["namespace"]
    assert url.scheme == "http"
    assert url.hostname in {name, f"{name}.{namespace}", f"{name}.{namespace}.svc",
                            f"{name}.{namespace}.svc.cluster.local"}
    if url.hostname == name:
        assert JOB["metadata"]["namespace"] == namespace
    assert url.port == ADMIN["spec"]["ports"][0]["port"]
    assert url.path in ("", "/")
    assert env[ENV_TOKEN]["valueFrom"]["secretKeyRef"] == _env(SHIM)[ENV_TOKEN]["valueFrom"]["secretKeyRef"]
    assert JOB["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_only_the_jobs_pods_reach_the_admin_port() -> None:
    spec = POLICY["spec"]
    assert _selects(spec["podSelector"]["matchLabels"], SHIM)
    assert "Ingress" in spec["policyTypes"]
    admin_port = _named_ports(SHIM)["admin"]
    admitted = []
    for rule in spec["ingress"]:
        assert rule.get("ports"), "a rule without ports opens every port"
        ports = {_resolve(port["port"], SHIM) for port in rule["ports"]}
        if admin_port not in ports:
            continue
        assert rule.get("from"), "the admin port open to everyone"
        for peer in rule["from"]:
            assert set(peer) == {"podSelector"}, "only pods of this namespace"
            admitted.append(peer["podSelector"]["matchLabels"])
    assert admitted and all(_selects(selector, JOB) for selector in admitted)
    assert not any(_selects(selector, SHIM) or _selects(selector, _find("Deployment", "studio"))
                   for selector in admitted)
    public = {_resolve(port["port"], SHIM) for rule in spec["ingress"] for port in rule["ports"]}
    assert _named_ports(SHIM)["http"] in public


# --- the real shim with the ConfigMap's settings ------------------------------------------------------------


def _check(environ: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SHIM_BIN), "check"], env=clean_env(environ), cwd=cwd, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.e2e
def test_maintenance_shim_check_accepts_the_configmap(tmp_path: Path) -> None:
    result = _check({**CONFIGMAP["data"], "MAINT_ADMIN_TOKEN": secrets.token_hex(32)}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "configuration OK: listen 0.0.0.0:8080=studio:page" in result.stdout
    assert "push" in result.stdout


@pytest.mark.e2e
def test_the_placeholder_token_stops_the_shim(tmp_path: Path) -> None:
    result = _check({**CONFIGMAP["data"], **SECRET["stringData"]}, tmp_path)
    assert result.returncode == 2
    assert "MAINT_ADMIN_TOKEN" in result.stderr
    assert SECRET["stringData"]["MAINT_ADMIN_TOKEN"] not in result.stderr


def _loopback_env(token: str, free: Iterator[int]) -> tuple[dict[str, str], dict[int, int]]:
    """The ConfigMap with every host 127.0.0.1 and every port one from `free`; returns it and old -> new ports."""
    data = dict(CONFIGMAP["data"])
    ports: dict[int, int] = {}
    listen = []
    for item in data["MAINT_LISTEN"].split(","):
        listener = parse_listener(item)
        ports[listener.port] = next(free)
        listen.append(f"127.0.0.1:{ports[listener.port]}={listener.service}:{listener.kind}")
    admin = parse_admin_listen(data["MAINT_ADMIN_LISTEN"])
    assert admin is not None
    ports[admin.port] = next(free)
    data.update(MAINT_LISTEN=",".join(listen), MAINT_ADMIN_LISTEN=f"127.0.0.1:{ports[admin.port]}",
                MAINT_ADMIN_TOKEN=token)
    return data, ports


def _get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, Any, bytes]:
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def _status_step(base: str) -> int:
    status, _, body = _get(base + "/_maintenance/status")
    assert status == 200
    return int(json.loads(body)["progress"]["step"])


def _pod_shim(token: str, free: Iterator[int], tmp_path: Path) -> tuple[subprocess.Popen[bytes], dict[int, int]]:
    """The shim started with the pod's settings on loopback ports; PortInUse (stopped) when one was taken."""
    environ, ports = _loopback_env(token, free)
    log = tmp_path / "shim.log"
    with log.open("wb") as handle:
        proc = subprocess.Popen([str(SHIM_BIN), "serve"], env=clean_env(environ), cwd=tmp_path, stdout=handle,
                                stderr=subprocess.STDOUT)
    try:
        wait_listening(proc.pid, list(ports.values()), lambda: log.read_text(errors="replace"), "the shim")
    except (PortInUse, AssertionError):
        stop_pid(proc)
        raise
    return proc, ports


@pytest.mark.e2e
def test_the_shim_serves_the_pod_settings_and_takes_the_jobs_pushes(tmp_path: Path) -> None:
    token = secrets.token_hex(32)
    proc, ports = start_on_free_ports(lambda picked: _pod_shim(token, iter(picked), tmp_path),
                                      len(CONFIGMAP["data"]["MAINT_LISTEN"].split(",")) + 1)
    public = f"http://127.0.0.1:{ports[_named_ports(SHIM)['http']]}"
    stopped_in: float | None = None
    try:
        wait_http(public + HEALTH_PATH, timeout=90)
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            status, _, _ = _get(public + _container(SHIM)[kind]["httpGet"]["path"])
            assert status == 200, kind
        status, headers, _ = _get(public + "/gallery", {"Accept": "text/html", "Accept-Language": "ja"})
        assert status == 503
        assert headers["Retry-After"].isdigit()
        assert headers["Cache-Control"] == "no-store"
        assert headers["Content-Language"] == "ja"
        assert "Accept-Language" in headers["Vary"]
        status, headers, body = _get(public + "/api/v1/generate")  # MAINT_JSON_PATHS
        assert status == 503 and headers["Content-Type"].startswith("application/json")
        assert "detail" in json.loads(body)
        assert _get(public + PUSH_PATH, method="PUT")[0] == 404  # the write path is not on the public port

        # The Job's environment, its Service host and port swapped for the loopback admin listener.
        job_env = {name: item.get("value", "") for name, item in _env(JOB).items()}
        job_env[ENV_TOKEN] = token
        url = urlsplit(job_env[ENV_URL])
        service_port = next(port for port in ADMIN["spec"]["ports"] if port["port"] == url.port)
        pod_port = _resolve(service_port["targetPort"], SHIM)
        job_env[ENV_URL] = url._replace(netloc=f"127.0.0.1:{ports[pod_port]}").geturl()
        # A shell trainer: maintenance-shim progress --url "$MAINT_PUSH_URL".
        pushed = subprocess.run([str(SHIM_BIN), "progress", "--step", "10", "--total", "100", "--url",
                                 job_env[ENV_URL]], env=clean_env(job_env), cwd=tmp_path, capture_output=True,
                                text=True, timeout=30)
        assert pushed.returncode == 0, pushed.stderr
        assert _status_step(public) == 10
        # The callbacks' path: MAINT_PUSH_URL and MAINT_ADMIN_TOKEN from the environment.
        sink = ProgressSink("kubernetes test", environ=job_env)
        assert sink.enabled
        sink.report(20, 100, TRAINING)
        sink.close()
        assert _status_step(public) == 20
        started = time.monotonic()
        stop_pid(proc, grace=30)
        stopped_in = time.monotonic() - started
    finally:
        stop_pid(proc)
    output = (tmp_path / "shim.log").read_text(errors="replace")
    assert proc.returncode == 0, output
    pod = SHIM["spec"]["template"]["spec"]
    pre_stop = _container(SHIM)["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert stopped_in is not None and stopped_in < pod["terminationGracePeriodSeconds"] - pre_stop, output
