"""deploy/kubernetes: every manifest validates against the Kubernetes 1.30 OpenAPI schemas
(kubernetes-validate's bundled copies, strict: unknown fields fail, offline), and the pieces
fit together: the command, the probes, the port, the mounts, the selectors, the secrets, the
resources, the Prometheus job.  No cluster exists here, so this is what "the manifests
validate" means.
"""

from __future__ import annotations

import copy
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from poller.fleet.settings import WorkerConfig

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "kubernetes"
SCRAPE_CONFIG = K8S / "prometheus" / "scrape-config.yaml"
K8S_VERSION = "1.30"

# Peak RSS measured for statefulset.yaml's sizing: one child per tenant at batch_size 10,000
# (147 MiB; make bench: 137) and the worker process itself (81 MiB).
CHILD_MIB = 150
WORKER_MIB = 80

Doc = dict[str, Any]


def kustomization() -> Doc:
    doc: Doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return doc


def manifests() -> list[tuple[str, Doc]]:
    out = []
    for name in kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / name).read_text()):
            if doc:
                out.append((name, doc))
    return out


def one(kind: str) -> Doc:
    found = [d for _, d in manifests() if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def workload() -> Doc:
    return one("StatefulSet")


def pod_spec() -> Doc:
    spec: Doc = workload()["spec"]["template"]["spec"]
    return spec


def container() -> Doc:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    c: Doc = containers[0]
    return c


def worker_yaml() -> Doc:
    doc: Doc = yaml.safe_load(one("ConfigMap")["data"]["worker.yaml"])
    return doc


def worker_config() -> WorkerConfig:
    """worker.yaml through the worker's own model (unknown keys fail), with its ${...}
    references replaced by stand-ins: the secret files exist only in the pod."""
    text = re.sub(r"\$\{[^}]+\}", "stand-in", one("ConfigMap")["data"]["worker.yaml"])
    return WorkerConfig.model_validate(yaml.safe_load(text))


def mib(quantity: str) -> float:
    """A Kubernetes memory quantity in MiB (the suffixes used here)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|M|G)?", quantity)
    assert m, f"unsupported memory quantity {quantity!r}"
    factor = {None: 2**-20, "Ki": 2**-10, "Mi": 1, "Gi": 1024, "M": 1e6 / 2**20, "G": 1e9 / 2**20}
    return float(m.group(1)) * factor[m.group(2)]


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """The schemas must come from the installed package, never from the network."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("schema validation tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


# --------------------------------------------------------------------------- schemas


def test_kustomization_lists_every_manifest_without_namespaces() -> None:
    k = kustomization()
    assert k["kind"] == "Kustomization"
    assert k["namespace"], "the namespace is set by kustomize"
    listed = set(k["resources"])
    on_disk = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == on_disk, "every manifest file is a kustomize resource and vice versa"
    for name, doc in manifests():
        assert "namespace" not in doc["metadata"], f"{name}: namespace comes from kustomize"
        assert doc["kind"] != "Namespace"
    kinds = sorted(d["kind"] for _, d in manifests())
    assert kinds == sorted(
        [
            "ConfigMap",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Secret",
            "Service",
            "ServiceAccount",
            "StatefulSet",
        ]
    )
    assert [i["name"] for i in k["images"]] == [container()["image"]]


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize("name_doc", manifests(), ids=lambda nd: f"{nd[0]}:{nd[1]['kind']}")
def test_manifest_validates_against_the_kubernetes_schema(name_doc: tuple[str, Doc]) -> None:
    name, doc = name_doc
    try:
        assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION
    except kubernetes_validate.ValidationError as e:
        path = ".".join(str(p) for p in e.path)
        pytest.fail(f"{name} ({doc['kind']}): {path}: {e.message}")


@pytest.mark.usefixtures("no_network")
@pytest.mark.parametrize(
    ("where", "mutate"),
    [
        ("a misspelt probe field", lambda c: c["livenessProbe"]["httpGet"].update(pathh="/x")),
        ("a memory limit of the wrong type", lambda c: c["resources"]["limits"].update(memory=[1])),
        ("a container without a name", lambda c: c.pop("name")),
    ],
)
def test_schema_validation_rejects_a_broken_workload(where: str, mutate: Any) -> None:
    """The check above can fail: the same validator rejects a broken copy."""
    doc = copy.deepcopy(workload())
    mutate(doc["spec"]["template"]["spec"]["containers"][0])
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


# --------------------------------------------------------------------------- structure


def test_the_container_runs_the_worker_on_the_mounted_config() -> None:
    c = container()
    command = c["command"] + c.get("args", [])
    assert command[:3] == ["poller", "worker", "--config"], command
    config_path = Path(command[3])
    mount = next(
        m for m in c["volumeMounts"] if config_path.parent == Path(m["mountPath"])
    )  # StopIteration: the config file is on no mount
    volume = next(v for v in pod_spec()["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == one("ConfigMap")["metadata"]["name"]
    assert config_path.name in one("ConfigMap")["data"]


def test_worker_config_serves_the_probed_port_on_all_interfaces() -> None:
    cfg = worker_config()
    assert cfg.metrics.enabled
    assert cfg.metrics.host in ("0.0.0.0", "::"), "probes and scrapes come from outside"
    port = cfg.metrics.port
    ports = {p["name"]: p["containerPort"] for p in container()["ports"]}
    assert ports == {"metrics": port}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = container()[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == port, f"{probe} port"
    annotations = workload()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == "/metrics"
    service_port = one("Service")["spec"]["ports"][0]
    assert ports.get(service_port["targetPort"], service_port["targetPort"]) == port


def test_every_mount_has_a_volume_and_every_volume_an_object() -> None:
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    mounts = container()["volumeMounts"]
    assert {m["name"] for m in mounts} == set(volumes), "mounts and volumes match one to one"
    assert volumes.keys() >= {"config", "worker-secrets", "tenant-secrets", "tmp"}
    objects = {(d["kind"], d["metadata"]["name"]) for _, d in manifests()}
    for v in volumes.values():
        if "configMap" in v:
            assert ("ConfigMap", v["configMap"]["name"]) in objects
        if "secret" in v:
            assert ("Secret", v["secret"]["secretName"]) in objects
        for source in v.get("projected", {}).get("sources", []):
            assert ("Secret", source["secret"]["name"]) in objects
    assert ("ServiceAccount", pod_spec()["serviceAccountName"]) in objects
    # The root filesystem is read-only: /tmp is the one writable place.
    assert {m["mountPath"] for m in mounts if m["name"] == "tmp"} == {"/tmp"}
    assert "emptyDir" in volumes["tmp"]


def _secrets() -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == "Secret"}


def _mount(volume: str) -> Doc:
    found: Doc = next(m for m in container()["volumeMounts"] if m["name"] == volume)
    return found


def test_secret_references_point_at_mounted_placeholder_keys() -> None:
    secrets = _secrets()
    for name, secret in secrets.items():
        assert secret["stringData"] and "data" not in secret, name
        for key, value in secret["stringData"].items():
            assert value.startswith("CHANGE-ME"), f"{name}.{key}: example values are placeholders"
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    worker_mount = _mount("worker-secrets")
    assert worker_mount["mountPath"] == "/var/run/secrets/poller/worker"
    assert worker_mount.get("readOnly") is True
    worker_secret = secrets[volumes["worker-secrets"]["secret"]["secretName"]]
    refs = re.findall(r"\$\{file:([^}]+)\}", str(worker_yaml()))  # values, not comments
    assert refs, "the worker's Kafka password comes from a secret file"
    for ref in refs:
        path = Path(ref)
        assert path.parent == Path(worker_mount["mountPath"]), ref
        assert path.name in worker_secret["stringData"], f"{ref}: no such key in the Secret"
    for key, value in worker_yaml()["kafka"]["options"].items():
        if re.search("password|secret|key$", key):
            assert re.fullmatch(r"\$\{[^}]+\}", str(value)), f"{key}: a literal secret"


def test_each_tenant_has_its_own_secret_and_directory() -> None:
    """Issue 17: one Secret per tenant, projected under the tenant's own directory, and the
    worker restricts each tenant to that directory (tenant_secrets.file_dir)."""
    secrets = _secrets()
    tenant_mount = _mount("tenant-secrets")
    assert tenant_mount.get("readOnly") is True
    file_dir = worker_yaml()["tenant_secrets"]["file_dir"]
    assert file_dir == tenant_mount["mountPath"] + "/{tenant}"
    assert worker_yaml()["tenant_secrets"]["allow_env"] == []
    volumes = {v["name"]: v for v in pod_spec()["volumes"]}
    sources = volumes["tenant-secrets"]["projected"]["sources"]
    assert sources
    for source in sources:
        secret = secrets[source["secret"]["name"]]
        tenant = secret["metadata"]["labels"]["poller.example/tenant"]
        for item in source["secret"]["items"]:
            assert item["key"] in secret["stringData"], item
            assert item["path"].split("/")[0] == tenant, f"{item}: outside {tenant}'s directory"
    worker_keys = set(secrets["poller-worker-secrets"]["stringData"])
    assert worker_keys == {"kafka-sasl-password"}, "the worker's Secret holds no tenant's secret"
    assert worker_config().tenant_secrets is not None  # the worker accepts it as written


def test_selectors_match_the_pods() -> None:
    labels = workload()["spec"]["template"]["metadata"]["labels"]
    selector = workload()["spec"]["selector"]["matchLabels"]
    assert selector.items() <= labels.items()
    pdb = one("PodDisruptionBudget")["spec"]
    assert pdb["selector"]["matchLabels"] == selector
    assert pdb["maxUnavailable"] == 1
    service = one("Service")
    assert service["spec"]["selector"] == selector
    assert service["spec"]["clusterIP"] == "None"
    assert workload()["spec"]["serviceName"] == service["metadata"]["name"]
    spread = pod_spec()["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]
    assert spread == selector


def test_runs_as_non_root_on_a_read_only_root() -> None:
    pod, ctr = pod_spec()["securityContext"], container()["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0
    assert ctr["readOnlyRootFilesystem"] is True
    assert ctr["allowPrivilegeEscalation"] is False
    assert ctr["capabilities"]["drop"] == ["ALL"]
    assert pod_spec()["automountServiceAccountToken"] is False


def test_resources_cover_max_tenants_children_plus_the_worker() -> None:
    res = container()["resources"]
    need = worker_config().max_tenants * CHILD_MIB + WORKER_MIB
    request, limit = mib(res["requests"]["memory"]), mib(res["limits"]["memory"])
    assert request >= need, f"memory request {request} MiB < {need} MiB needed"
    assert limit >= request * 1.25, "headroom above the expected peak"
    assert res["requests"]["cpu"] and res["limits"]["cpu"]


def test_grace_period_outlasts_the_worker_shutdown() -> None:
    """SIGTERM reaches the worker (no shell in between) and it gets time to stop its children
    (SIGKILL after stop_timeout_s) and then to close its consumer."""
    assert container()["command"][0] == "poller", "exec form: the worker itself is PID 1"
    grace = pod_spec()["terminationGracePeriodSeconds"]
    assert grace >= worker_config().stop_timeout_s + 30


def test_static_member_id_is_the_stable_pod_name() -> None:
    """group.instance.id must survive a restart of the pod, so it is the StatefulSet's pod
    name, passed in through the downward API."""
    assert workload()["kind"] == "StatefulSet"
    ref = re.fullmatch(r"\$\{(\w+)\}", str(worker_yaml()["instance_id"]))
    assert ref, "instance_id is an environment reference"
    env = {e["name"]: e for e in container()["env"]}
    assert env[ref.group(1)]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert worker_config().protocol == "classic"  # static membership as configured here


# --------------------------------------------------------------------------- Prometheus


def relabel_keeps(rules: list[Doc], labels: dict[str, str]) -> dict[str, str] | None:
    """Prometheus' keep/replace relabelling (anchored regexes), enough for this job."""
    labels = dict(labels)
    for r in rules:
        value = r.get("separator", ";").join(labels.get(s, "") for s in r["source_labels"])
        m = re.fullmatch(r.get("regex", "(.*)"), value)
        action = r.get("action", "replace")
        if action == "keep":
            if not m:
                return None
        elif action == "replace":
            if m:
                labels[r["target_label"]] = m.expand(r.get("replacement", "$1").replace("$", "\\"))
        else:
            raise AssertionError(f"unexpected relabel action {action}")
    return labels


def test_scrape_job_selects_the_worker_pods_metrics_port() -> None:
    job = yaml.safe_load(SCRAPE_CONFIG.read_text())["scrape_configs"][0]
    assert job["job_name"] == "poller", "prometheus/alerts.yml selects job=poller"
    sd = job["kubernetes_sd_configs"][0]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [kustomization()["namespace"]]
    template = workload()["spec"]["template"]["metadata"]

    def meta(port_name: str, **labels: str) -> dict[str, str]:
        def key(s: str) -> str:
            return re.sub(r"[^a-zA-Z0-9_]", "_", s)

        out = {f"__meta_kubernetes_pod_label_{key(k)}": v for k, v in labels.items()}
        for k, v in template["annotations"].items():
            out[f"__meta_kubernetes_pod_annotation_{key(k)}"] = v
        out |= {
            "__meta_kubernetes_namespace": "poller",
            "__meta_kubernetes_pod_name": "poller-worker-0",
            "__meta_kubernetes_pod_container_port_name": port_name,
            "__metrics_path__": "/metrics",
        }
        return out

    kept = relabel_keeps(job["relabel_configs"], meta("metrics", **template["labels"]))
    assert kept is not None, "the job drops the worker pods"
    assert kept["pod"] == "poller-worker-0" and kept["namespace"] == "poller"
    assert kept["__metrics_path__"] == "/metrics"
    assert relabel_keeps(job["relabel_configs"], meta("metrics", app="other")) is None
    assert relabel_keeps(job["relabel_configs"], meta("http", **template["labels"])) is None


def test_scrape_config_parses_with_promtool(tmp_path: Path) -> None:
    """Debian's promtool is built without Kubernetes discovery, so the job is checked with a
    static target in its place: everything else (relabel rules, regexes) is parsed as is."""
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    if not Path(promtool).exists():
        pytest.fail(
            "promtool is not installed (apt-get install prometheus, or scripts/services up)"
        )
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    for job in config["scrape_configs"]:
        job.pop("kubernetes_sd_configs")
        job["static_configs"] = [{"targets": ["127.0.0.1:9400"]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [promtool, "check", "config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_network_policy_admits_only_prometheus_and_reaches_only_what_the_worker_needs() -> None:
    """Issue 17 item 6: the endpoints have no business being reachable from every pod."""
    policy = one("NetworkPolicy")["spec"]
    pod_labels = workload()["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    (ingress,) = policy["ingress"]
    ports = {p["name"] for p in container()["ports"]}
    assert [p["port"] for p in ingress["ports"]] == ["metrics"] and "metrics" in ports
    (source,) = ingress["from"]
    assert source["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    worker = yaml.safe_load(one("ConfigMap")["data"]["worker.yaml"])
    kafka_port = int(worker["kafka"]["bootstrap_servers"].rsplit(":", 1)[1])
    assert {53, kafka_port, 5432, 3306} <= egress_ports
    assert all(rule.get("to") for rule in policy["egress"]), "every egress rule names its peers"
