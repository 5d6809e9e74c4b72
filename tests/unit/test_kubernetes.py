"""deploy/kubernetes/: every manifest against the real schemas (Kubernetes' OpenAPI through
kubernetes-validate, prometheus-operator's CRDs through cloudcoil's generated models), built
by a real kustomize (kubectl's), and checked for what the files must agree on: the rules are
alerts/'s, the config passes check-config and reads the node where the pod mounts it, ports,
probes and labels line up, and the pod runs non-root on a read-only root."""

from __future__ import annotations

import copy
import functools
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pydantic
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as operator

from exporter import __version__
from exporter.cli import rendered_files
from exporter.collectors.host import HostConfig
from exporter.collectors.oom import DEFAULT_INCLUDE, OomConfig
from exporter.collectors.procfs import Mount
from exporter.config import load_config
from exporter.kuberule import HEADER, prometheus_rule
from exporter.runbooks.catalog import PLACEHOLDER_BASES, PLACEHOLDER_GRAFANA
from tests.support import REPO, run_cli

KUBE = REPO / "deploy" / "kubernetes"
ALERTS = REPO / "alerts"
K8S_VERSION = "1.37"  # the newest Kubernetes kubernetes-validate bundles schemas for
OPERATOR_GROUP = "monitoring.coreos.com/v1"
STATE_DIR = "/var/lib/botwatch"
PORT = 9877

Doc = dict[str, Any]


# Reading the folder ----------------------------------------------------------------------


def manifest_files() -> list[Path]:
    return sorted(p for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")


def documents(path: Path) -> list[Doc]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def kustomization() -> Doc:
    tree = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert isinstance(tree, dict)
    return tree


def resolve(directory: Path) -> list[Doc]:
    """The objects a kustomization's `resources:` name: files read, directories recursed."""
    tree = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    docs: list[Doc] = []
    for entry in tree.get("resources", []):
        path = directory / entry
        assert path.exists(), f"{directory.name}/kustomization.yaml: {entry} does not exist"
        docs += resolve(path) if path.is_dir() else documents(path)
    return docs


@functools.cache
def _folder() -> tuple[Doc, ...]:
    return tuple(resolve(KUBE))


def the(kind: str) -> Doc:
    """The folder's one object of `kind`: a copy, free to change."""
    found = [doc for doc in _folder() if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} objects"
    return copy.deepcopy(found[0])


def identity(doc: Doc) -> tuple[str, str, str]:
    return doc["apiVersion"], doc["kind"], doc["metadata"]["name"]


def kustomize_build(directory: Path) -> list[Doc]:
    """A real kustomize: kubectl's built-in one (no cluster is contacted)."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # kubectl ships with this machine image, not with a Debian mirror CI can reach.
        return _kustomize_like(directory)
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _kustomize_like(directory: Path) -> list[Doc]:
    """What kustomize does with the three fields used here: resources, namespace, images."""
    tree = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    docs: list[Doc] = []
    for entry in tree.get("resources", []):
        path = directory / entry
        docs += _kustomize_like(path) if path.is_dir() else documents(path)
    for doc in docs:
        if "namespace" in tree and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = tree["namespace"]
        pod = doc.get("spec", {}).get("template", {}).get("spec", {})
        for cont in pod.get("initContainers", []) + pod.get("containers", []):
            for image in tree.get("images", []):
                if cont["image"].rsplit(":", 1)[0] == image["name"]:
                    cont["image"] = f"{image.get('newName', image['name'])}:{image['newTag']}"
    return docs


def pod_spec() -> Doc:
    spec: Doc = the("DaemonSet")["spec"]["template"]["spec"]
    return spec


def container() -> Doc:
    containers = pod_spec()["containers"]
    assert len(containers) == 1
    found: Doc = containers[0]
    return found


def effective(cont: Doc, key: str) -> Any:
    """A security setting as the kubelet applies it: the container's, else the pod's."""
    own = cont.get("securityContext", {})
    return own[key] if key in own else pod_spec().get("securityContext", {}).get(key)


def volumes() -> dict[str, Doc]:
    return {v["name"]: v for v in pod_spec()["volumes"]}


def mount_of(host_path: str) -> Doc:
    names = [n for n, v in volumes().items() if v.get("hostPath", {}).get("path") == host_path]
    assert len(names) == 1, f"{len(names)} volumes of hostPath {host_path}"
    mounts = [m for m in container()["volumeMounts"] if m["name"] == names[0]]
    assert len(mounts) == 1
    found: Doc = mounts[0]
    return found


def configmap_text() -> str:
    text: str = the("ConfigMap")["data"]["botwatch.yml"]
    return text


# Schema validation ------------------------------------------------------------------------


def operator_problems(doc: Doc) -> list[str]:
    """What prometheus-operator's CRD schema refuses in `doc` (cloudcoil's models of it).

    The models ignore unknown keys, so what the model does not give back is refused too:
    a misspelt key would otherwise pass here and be dropped by the API server.
    """
    model = getattr(operator, doc["kind"])
    try:
        parsed = model.model_validate(doc)
    except pydantic.ValidationError as exc:
        return [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
    back = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True)
    return _differences(doc, back, "")


def _differences(given: Any, kept: Any, at: str) -> list[str]:
    if isinstance(given, dict) and isinstance(kept, dict):
        lines = [f"{at}.{k}: unknown field" for k in given if k not in kept]
        for k in given.keys() & kept.keys():
            lines += _differences(given[k], kept[k], f"{at}.{k}")
        return lines
    if isinstance(given, list) and isinstance(kept, list) and len(given) == len(kept):
        return [
            line
            for i, (g, k) in enumerate(zip(given, kept, strict=True))
            for line in _differences(g, k, f"{at}[{i}]")
        ]
    return [] if given == kept else [f"{at}: {given!r} is read as {kept!r}"]


def validate(doc: Doc) -> list[str]:
    """Problems with one object: Kubernetes' own schema (strict) or the operator's CRD."""
    if doc["apiVersion"] == OPERATOR_GROUP:
        return operator_problems(doc)
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'.'.join(map(str, exc.path))}: {exc.message}"]
    return []


def test_every_manifest_matches_the_kubernetes_or_the_operator_schema() -> None:
    kinds = []
    for path in manifest_files():
        for doc in documents(path):
            assert validate(doc) == [], f"{path.name}: {identity(doc)}"
            kinds.append(doc["kind"])
    assert sorted(kinds) == [
        "ConfigMap",
        "DaemonSet",
        "Namespace",
        "PrometheusRule",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    ]


def test_every_object_kustomize_builds_matches_its_schema_too() -> None:
    for doc in kustomize_build(KUBE):
        assert validate(doc) == [], identity(doc)


def test_the_schemas_refuse_unknown_fields_and_wrong_values() -> None:
    daemonset = the("DaemonSet")
    daemonset["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRoot"] = True
    assert validate(daemonset) == [
        "spec.template.spec.containers.0.securityContext: Additional properties are not "
        "allowed ('readOnlyRoot' was unexpected)"
    ]
    service = the("Service")
    service["spec"]["ports"][0]["port"] = "9877"
    assert validate(service) != []

    monitor = the("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["scrapeInterval"] = "30s"
    assert validate(monitor) == [".spec.endpoints[0].scrapeInterval: unknown field"]
    monitor = the("ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "30 seconds"
    assert [line.split(":")[0] for line in validate(monitor)] == ["spec.endpoints.0.interval"]
    rule = the("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "2 minutes"
    assert [line.split(":")[0] for line in validate(rule)] == ["spec.groups.0.rules.0.for"]
    rule = the("PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["annotation"] = {"summary": "x"}
    assert validate(rule) == [".spec.groups[0].rules[0].annotation: unknown field"]


# kustomize --------------------------------------------------------------------------------


def test_the_kustomization_lists_every_manifest_once_and_each_exists() -> None:
    listed = kustomization()["resources"]
    assert len(listed) == len(set(listed))
    assert sorted(listed) == [p.name for p in manifest_files()]
    for name in listed:
        assert (KUBE / name).is_file(), name
    assert set(kustomization()) <= {"apiVersion", "kind", "namespace", "resources", "images"}


def test_kustomize_builds_every_object_in_the_namespace_with_the_versioned_image() -> None:
    built = kustomize_build(KUBE)
    assert sorted(map(identity, built)) == sorted(map(identity, resolve(KUBE)))
    namespace = kustomization()["namespace"]
    for doc in built:
        expected = None if doc["kind"] == "Namespace" else namespace
        assert doc["metadata"].get("namespace") == expected, identity(doc)
    assert the("Namespace")["metadata"]["name"] == namespace

    (image,) = kustomization()["images"]
    assert image["newTag"] == __version__  # the package's version, bumped with it
    assert image["newName"].endswith("/botwatch-exporter")
    spec = next(d for d in built if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    for cont in spec["initContainers"] + spec["containers"]:
        assert cont["image"] == f"{image['newName']}:{__version__}", cont["name"]
    # In the folder, both containers name the image exactly as the images: entry does.
    for cont in pod_spec()["initContainers"] + pod_spec()["containers"]:
        assert cont["image"] == image["name"]


def test_an_overlay_overrides_the_image_as_the_readme_says(tmp_path: Path) -> None:
    overlay = tmp_path / "overlays" / "prod"
    overlay.mkdir(parents=True)
    base = os.path.relpath(KUBE, overlay)  # kustomize refuses an absolute path
    (overlay / "kustomization.yaml").write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\n"
        "kind: Kustomization\n"
        f"resources: [{base}]\n"
        "images:\n"
        f"  - name: {kustomization()['images'][0]['name']}\n"
        "    newName: ghcr.io/acme/botwatch-exporter\n"
        '    newTag: "9.9.9"\n',
        encoding="utf-8",
    )
    built = kustomize_build(overlay)
    spec = next(d for d in built if d["kind"] == "DaemonSet")["spec"]["template"]["spec"]
    images = {c["image"] for c in spec["initContainers"] + spec["containers"]}
    assert images == {"ghcr.io/acme/botwatch-exporter:9.9.9"}
    readme = (KUBE / "README.md").read_text(encoding="utf-8")
    assert f"- name: {kustomization()['images'][0]['name']}\n" in readme
    assert "kubectl apply -k deploy/kubernetes" in readme


# The PrometheusRule -----------------------------------------------------------------------


def rule_files() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(ALERTS.glob("*.rules.yml"))}


def test_the_prometheusrule_holds_exactly_the_groups_and_rules_of_alerts() -> None:
    expected = [
        group
        for name, text in sorted(rule_files().items())
        for group in yaml.safe_load(text)["groups"]
    ]
    assert len(expected) >= 3
    assert the("PrometheusRule")["spec"]["groups"] == expected
    committed = (KUBE / "prometheusrule.yaml").read_text(encoding="utf-8")
    assert committed == prometheus_rule(rule_files())
    assert committed.startswith(HEADER)
    assert "`botwatch-exporter render`" in HEADER


def test_render_writes_the_prometheusrule_from_the_rule_files_it_writes() -> None:
    files = rendered_files(dict(PLACEHOLDER_BASES), PLACEHOLDER_GRAFANA)
    rules = {n: t for n, t in files.items() if n.startswith("alerts/")}
    assert files["deploy/kubernetes/prometheusrule.yaml"] == prometheus_rule(rules)
    assert files["deploy/kubernetes/prometheusrule.yaml"] == prometheus_rule(rule_files())


def test_render_with_links_writes_them_into_the_prometheusrule(tmp_path: Path) -> None:
    base = "https://git.example.com/ops/runbooks/-/blob/main/trader-bot.md"
    result = run_cli("render", f"--runbook-base=trader-bot={base}", f"--out={tmp_path}")
    assert result.returncode == 0, result.stderr
    written = (tmp_path / "deploy/kubernetes/prometheusrule.yaml").read_text(encoding="utf-8")
    assert f"wrote {tmp_path / 'deploy/kubernetes/prometheusrule.yaml'}" in result.stdout
    rules = {
        p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "alerts").glob("*.rules.yml")
    }
    assert written == prometheus_rule(rules)
    assert f"runbook_url: {base}#" in written


RULES_A = "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up == 0\n    for: 1m\n"
RULES_B = (
    "groups:\n- name: b1\n  interval: 30s\n  rules:\n  - record: x:y\n    expr: sum(up)\n"
    "- name: b2\n  rules:\n  - alert: B\n    expr: vector(1)\n    labels: {severity: info}\n"
)


def test_prometheus_rule_keeps_groups_in_file_name_order_whatever_the_input_order() -> None:
    text = prometheus_rule({"b.rules.yml": RULES_B, "a.rules.yml": RULES_A})
    assert text == prometheus_rule({"a.rules.yml": RULES_A, "b.rules.yml": RULES_B})
    assert text.startswith(HEADER)
    tree = yaml.safe_load(text)
    assert tree["apiVersion"] == "monitoring.coreos.com/v1"
    assert tree["kind"] == "PrometheusRule"
    assert tree["metadata"]["name"] == "botwatch-exporter"
    assert tree["spec"]["groups"] == (
        yaml.safe_load(RULES_A)["groups"] + yaml.safe_load(RULES_B)["groups"]
    )
    assert [g["name"] for g in tree["spec"]["groups"]] == ["a", "b1", "b2"]
    assert tree["spec"]["groups"][1]["interval"] == "30s"
    assert operator_problems(tree) == []
    assert yaml.safe_load(prometheus_rule({}))["spec"]["groups"] == []


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (
            {"a.rules.yml": RULES_A, "c.rules.yml": RULES_A},
            "c.rules.yml: group 'a' is also in a.rules.yml: group names must be unique across "
            "the rule files",
        ),
        (
            {"a.rules.yml": RULES_A + RULES_A.removeprefix("groups:\n")},
            "a.rules.yml: group 'a' is also in a.rules.yml: group names must be unique across "
            "the rule files",
        ),
        ({"x.yml": "rules: []\n"}, "x.yml: a rule file is a mapping with one key, groups"),
        (
            {"x.yml": "groups:\n- rules: []\n"},
            "x.yml: every group needs a name and a list of rules",
        ),
        ({"x.yml": "groups: [\n"}, "x.yml: not YAML: "),
    ],
)
def test_prometheus_rule_refuses_what_prometheus_would(files: dict[str, str], error: str) -> None:
    with pytest.raises(ValueError, match="^" + re.escape(error)):
        prometheus_rule(files)


# The config --------------------------------------------------------------------------------


def test_the_configmap_config_passes_check_config(tmp_path: Path) -> None:
    path = tmp_path / "botwatch.yml"
    path.write_text(configmap_text(), encoding="utf-8")
    result = run_cli("check-config", str(path))
    assert (result.returncode, result.stdout) == (0, f"{path}: OK (collectors: host, oom)\n")
    # The same check fails on a typo, so a pass above means something.
    path.write_text(configmap_text().replace("rootfs:", "rootf:"), encoding="utf-8")
    assert run_cli("check-config", str(path)).returncode == 2


def test_the_config_reads_the_node_where_the_pod_mounts_it(tmp_path: Path) -> None:
    path = tmp_path / "botwatch.yml"
    path.write_text(configmap_text(), encoding="utf-8")
    config = load_config(path, environ={}).config
    host, oom = config.collector_configs()["host"], config.collector_configs()["oom"]
    assert isinstance(host, HostConfig)
    assert isinstance(oom, OomConfig)
    assert host.procfs == oom.procfs == Path(mount_of("/proc")["mountPath"])
    assert oom.sysfs == Path(mount_of("/sys")["mountPath"])
    assert host.rootfs == Path(mount_of("/")["mountPath"])
    assert str(config.state_dir) == STATE_DIR == mount_of(STATE_DIR)["mountPath"]
    assert oom.kernel_log is False  # CAP_SYSLOG is not to be had without root
    # The node's disks are reported, the kubelet's and the runtimes' per-pod mounts are not.
    filesystems = host.filesystems

    def selected(mountpoint: str) -> bool:
        return filesystems.selects(Mount("/dev/x", mountpoint, "ext4", frozenset()))

    assert all(map(selected, ["/", "/var", "/var/lib/kubelet", "/var/lib/botwatch"]))
    assert not any(
        map(
            selected,
            [
                "/var/lib/kubelet/pods/0a1b/volumes/kubernetes.io~csi/pvc-1/mount",
                "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc/rootfs",
                "/var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes/abc/shm",
                "/var/lib/docker/overlay2/abc/merged",
                "/proc",
                "/sys/fs/cgroup",
            ],
        )
    )
    # The default cgroup selection, plus the kubelet's pods under the cgroupfs driver.
    assert oom.cgroups.include.pattern.startswith(DEFAULT_INCLUDE + "|")
    for cgroup in [
        "/system.slice/kubelet.service",
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b.slice/"
        "cri-containerd-" + "a" * 64 + ".scope",
        "/kubepods/burstable/pod8f1c2d3e-0000-4000-8000-000000000000/" + "b" * 64,
        "/kubepods/pod8f1c2d3e-0000-4000-8000-000000000000/" + "c" * 64,
    ]:
        assert oom.cgroups.selects(cgroup), cgroup
    assert not oom.cgroups.selects("/kubepods/burstable/pod8f1c2d3e-0000-4000-8000-000000000000")


def test_the_container_loads_the_configmap_file() -> None:
    cont = container()
    config_mounts = [m for m in cont["volumeMounts"] if "configMap" in volumes()[m["name"]]]
    assert len(config_mounts) == 1
    volume = volumes()[config_mounts[0]["name"]]["configMap"]
    assert volume["name"] == the("ConfigMap")["metadata"]["name"]
    (key,) = the("ConfigMap")["data"]
    assert cont["command"] == ["botwatch-exporter"]
    assert cont["args"] == ["run", f"--config.file={config_mounts[0]['mountPath']}/{key}"]
    assert config_mounts[0]["readOnly"] is True


# What the objects must agree on -------------------------------------------------------------


def test_ports_probes_and_labels_agree() -> None:
    daemonset, service, monitor = the("DaemonSet"), the("Service"), the("ServiceMonitor")
    cont = container()
    (port,) = cont["ports"]
    assert (port["name"], port["containerPort"], port.get("protocol", "TCP")) == (
        "metrics",
        PORT,
        "TCP",
    )
    assert cont["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "metrics"}
    assert cont["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "metrics"}
    config = yaml.safe_load(configmap_text())
    assert config["web"]["listen_address"] == f":{PORT}"

    (service_port,) = service["spec"]["ports"]
    assert service_port == {
        "name": "metrics",
        "port": PORT,
        "targetPort": "metrics",
        "protocol": "TCP",
    }
    assert service["spec"]["clusterIP"] == "None"  # every pod a target of its own

    pod_labels = daemonset["spec"]["template"]["metadata"]["labels"]
    selector = daemonset["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    assert service["spec"]["selector"] == selector
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == (service_port["name"], "/metrics")
    assert "namespaceSelector" not in monitor["spec"]  # the Service's own namespace
    # With no jobLabel the targets' job is the Service's name: BotwatchScrapeFailing's
    # up{job=~...} must match it, or a dead botwatch would never page.
    assert "jobLabel" not in monitor["spec"]
    scrape_failing = next(
        rule
        for group in the("PrometheusRule")["spec"]["groups"]
        for rule in group["rules"]
        if rule.get("alert") == "BotwatchScrapeFailing"
    )
    job = re.search(r'job=~"([^"]+)"', scrape_failing["expr"])
    assert job is not None
    assert re.fullmatch(job.group(1), service["metadata"]["name"])

    account = the("ServiceAccount")
    assert pod_spec()["serviceAccountName"] == account["metadata"]["name"]


def test_hostpath_mounts_are_read_only_except_the_state_dir() -> None:
    host_paths = {n: v["hostPath"] for n, v in volumes().items() if "hostPath" in v}
    assert sorted(h["path"] for h in host_paths.values()) == ["/", "/proc", "/sys", STATE_DIR]
    for cont in pod_spec()["initContainers"] + pod_spec()["containers"]:
        for mount in cont["volumeMounts"]:
            if mount["name"] not in host_paths:
                continue
            path = host_paths[mount["name"]]["path"]
            if path == STATE_DIR:
                assert not mount.get("readOnly", False), cont["name"]
                assert mount["mountPath"] == STATE_DIR
            else:
                assert mount.get("readOnly") is True, f"{cont['name']}: {path}"
                assert mount.get("mountPropagation", "None") in ("None", "HostToContainer")
    # The init container touches the state directory and nothing else of the node.
    (init,) = pod_spec()["initContainers"]
    assert [m["name"] for m in init["volumeMounts"]] == [mount_of(STATE_DIR)["name"]]
    assert host_paths[mount_of(STATE_DIR)["name"]]["type"] == "DirectoryOrCreate"
    assert not any("emptyDir" in volumes()[m["name"]] for m in [mount_of(STATE_DIR)])


def test_the_container_runs_as_non_root_on_a_read_only_root_with_no_capabilities() -> None:
    cont = container()
    assert effective(cont, "runAsNonRoot") is True
    assert effective(cont, "runAsUser") not in (None, 0)
    assert effective(cont, "readOnlyRootFilesystem") is True
    assert effective(cont, "allowPrivilegeEscalation") is False
    assert not effective(cont, "privileged")
    assert cont["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec()["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for key in ("hostPID", "hostNetwork", "hostIPC"):
        assert not pod_spec().get(key, False), key
    assert pod_spec()["automountServiceAccountToken"] is False
    for key in ("requests", "limits"):
        assert set(cont["resources"][key]) == {"cpu", "memory"}, key


def test_only_the_init_container_is_root_and_only_to_hand_over_the_state_dir() -> None:
    (init,) = pod_spec()["initContainers"]
    context = init["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    # It gives the directory to the user botwatch runs as.
    uid, gid = effective(container(), "runAsUser"), effective(container(), "runAsGroup")
    assert f'os.chown("{STATE_DIR}", {uid}, {gid})' in init["command"][-1]
    assert set(init["resources"]) == {"requests", "limits"}
