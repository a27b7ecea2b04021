"""Deployment files: cluster.yaml, Dockerfile, .dockerignore, docs/kuberay-rayjob.yaml,
docs/cluster.md, bench/gpu_check.sh.

No Docker engine, cloud or GPU here, so these tests check what can be checked offline: Ray's own
validation of the cluster config, the security defaults (token auth, loopback dashboard, no open
ports, no secrets), pinned images, the Dockerfile's structure, the KubeRay manifest and its
NetworkPolicies, and the IAM policy of docs/cluster.md (replayed against the requests the S3 store
really makes). Each security check is also run on a deliberately broken copy, to prove it would
catch the mistake. bench/gpu_check.sh is shellchecked (tests/store/test_deploy_tools.py, with the
Dockerfile's preloads imported in a fresh interpreter), and run end to end on the CPU (DRY_RUN=1:
tests/integration/test_deploy_gpu_check.py).
"""
from __future__ import annotations

import copy
import io
import json
import re
import shlex
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from secret_scan import secret_findings

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RAYJOB = ROOT / "docs" / "kuberay-rayjob.yaml"
HOWTO = ROOT / "docs" / "cluster.md"
PYPROJECT = ROOT / "pyproject.toml"

SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.I)
# Built at run time so that this file itself holds no key-shaped literal (AWS's documented
# example credentials).
FAKE_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"


# --- checkers (pure functions of text or parsed config) -----------------------------------------
def start_commands(config: dict) -> list[str]:
    return list(config.get("head_start_ray_commands", [])) + list(config.get("worker_start_ray_commands", []))


def ray_start_commands(config: dict) -> tuple[list[str], list[str]]:
    """The head's and the workers' commands that run `ray start`."""
    head = [c for c in config.get("head_start_ray_commands", []) if "ray start" in c]
    workers = [c for c in config.get("worker_start_ray_commands", []) if "ray start" in c]
    return head, workers


def cluster_security_problems(config: dict) -> list[str]:
    """Every departure of a cluster launcher config from the security defaults of the README."""
    problems = []
    head, workers = ray_start_commands(config)
    if not head or not workers:
        problems.append("missing ray start command")
    for cmd in head:
        hosts = re.findall(r"--dashboard-host[= ](\S+)", cmd)
        if hosts != ["127.0.0.1"]:
            problems.append(f"dashboard host {hosts or 'unset'}")
    for cmd in start_commands(config):
        if "0.0.0.0" in cmd:
            problems.append("0.0.0.0 in a start command")
    for cmd in head + workers:
        if "RAY_AUTH_MODE=token" not in cmd:
            problems.append("ray start without RAY_AUTH_MODE=token")
    if "--env RAY_AUTH_MODE=token" not in config.get("docker", {}).get("run_options", []):
        problems.append("containers without RAY_AUTH_MODE=token")
    for rule in config["provider"].get("security_group", {}).get("IpPermissions", []):
        if (rule.get("FromPort"), rule.get("ToPort")) != (22, 22):
            problems.append(f"inbound rule opens {rule.get('FromPort')}-{rule.get('ToPort')}")
    for name, node_type in config["available_node_types"].items():
        node = node_type["node_config"]
        if "SecurityGroupIds" in node:
            problems.append(f"{name}: SecurityGroupIds bypasses the SSH-only group")
        if "IamInstanceProfile" not in node:
            problems.append(f"{name}: no IamInstanceProfile (store access needs one)")
    return problems


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        full = (buf + stripped).strip()
        buf = ""
        op, _, args = full.partition(" ")
        out.append((op.upper(), args.strip()))
    return out


def env_arg_names(op: str, args: str) -> list[str]:
    """Variable names set by an ENV or ARG instruction (`A=1 B=2`, or legacy `A 1`)."""
    if "=" not in args.split(" ")[0]:
        return [args.split(" ")[0]]
    return [tok.split("=", 1)[0] for tok in shlex.split(args) if "=" in tok]


def dockerfile_problems(text: str) -> list[str]:
    """Departures of a Dockerfile from what the cluster launcher and the security defaults need."""
    ins = dockerfile_instructions(text)
    ops = [op for op, _ in ins]
    problems = []
    froms = [args for op, args in ins if op == "FROM"]
    if not froms:
        return ["no FROM"]
    image = froms[-1].split()[0]
    tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
    if not tag or tag == "latest":
        problems.append(f"base image not pinned: {image}")
    if "cuda" not in image.lower():
        problems.append(f"base image is not a CUDA image: {image}")
    if not any(op == "RUN" and re.search(r"pip install\b[^&;]*\s\.(?=\s|$|\[)", a) for op, a in ins):
        problems.append("project not installed with pip")
    users = [args for op, args in ins if op == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("runs as root")
    for op, args in ins:
        if op in ("ENV", "ARG"):
            for name in env_arg_names(op, args):
                if SECRET_NAME.search(name):
                    problems.append(f"{op} {name} looks like a secret")
    if "CMD" not in ops:
        problems.append("no CMD")
    if "ENTRYPOINT" in ops:
        problems.append("ENTRYPOINT breaks `docker run IMAGE bash` of the cluster launcher")
    if not any(op == "ENV" and "HOME=/home/ray" in args for op, args in ins):
        problems.append("HOME not set in the image config")
    for op, args in ins:
        if op == "COPY":
            srcs = [s for s in args.split()[:-1] if not s.startswith("--")]
            dirs = [s for s in srcs if (ROOT / s.rstrip("/")).is_dir()]
            if dirs and len(srcs) > 1:
                problems.append(f"COPY {args}: several sources flatten directories")
    return problems + secret_findings(text)


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def manifest_docs(text: str) -> list[dict]:
    """The objects of a multi-document manifest (the RayJob and its NetworkPolicies)."""
    return [d for d in yaml.safe_load_all(text) if d]


def rayjob_doc(text: str) -> dict:
    jobs = [d for d in manifest_docs(text) if d.get("kind") == "RayJob"]
    assert len(jobs) == 1, f"{len(jobs)} RayJob objects in the manifest"
    return jobs[0]


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return rayjob_doc(RAYJOB.read_text())


# --- cluster.yaml -------------------------------------------------------------------------------
def test_cluster_yaml_passes_rays_own_validation(cluster):
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(copy.deepcopy(cluster))  # as written
    prepared = prepare_config(copy.deepcopy(cluster))  # what `ray up` does: defaults, then validate
    validate_config(prepared)
    # Our empty setup lists must replace Ray's defaults (a nightly Ray wheel and a pip install).
    assert prepared["setup_commands"] == [] and prepared["head_setup_commands"] == []


def test_rays_validation_rejects_a_wrong_field(cluster):
    import jsonschema
    from ray.autoscaler._private.util import validate_config

    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["head"]["resources"] = {"CPU": "none"}
    with pytest.raises(jsonschema.ValidationError):
        validate_config(broken)


def test_head_runs_no_trials(cluster):
    head = cluster["available_node_types"][cluster["head_node_type"]]
    assert head["resources"] == {"CPU": 0}
    assert "InstanceMarketOptions" not in head["node_config"]  # a reclaimed head stops the sweep


def test_gpu_worker_types_are_4_and_8_gpus_on_spot(cluster):
    workers = {n: t for n, t in cluster["available_node_types"].items() if n != cluster["head_node_type"]}
    assert sorted(t["resources"]["GPU"] for t in workers.values()) == [4, 8]
    for name, t in workers.items():
        assert t["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot", name
        assert t["min_workers"] == 0 and t["max_workers"] >= 1, name
    assert sum(t["max_workers"] for t in workers.values()) >= cluster["max_workers"]
    assert "--gpus all" in cluster["docker"]["worker_run_options"]


def test_cluster_security_defaults_hold(cluster):
    assert cluster_security_problems(cluster) == []
    assert secret_findings(CLUSTER.read_text()) == []


@pytest.mark.parametrize("mutate, problem", [
    (lambda t: t.replace("--dashboard-host=127.0.0.1", "--dashboard-host=0.0.0.0"), "dashboard host ['0.0.0.0']"),
    (lambda t: t.replace("--dashboard-host=127.0.0.1", ""), "dashboard host unset"),
    (lambda t: t.replace("RAY_AUTH_MODE=token ray start --address", "ray start --address"),
     "ray start without RAY_AUTH_MODE=token"),
    (lambda t: t.replace("provider:\n", "provider:\n  security_group:\n    IpPermissions:\n"
                         "      - {FromPort: 8265, ToPort: 8265, IpProtocol: tcp}\n", 1),
     "inbound rule opens 8265-8265"),
])
def test_cluster_security_check_catches(mutate, problem):
    broken = yaml.safe_load(mutate(CLUSTER.read_text()))
    assert problem in cluster_security_problems(broken)


def test_secret_scan_catches_planted_keys():
    text = CLUSTER.read_text()
    assert secret_findings(text + f"\n# {FAKE_KEY_ID}\n") == ["AWS access key id"]
    assert secret_findings(text + f"\n# {FAKE_SECRET}\n") == ["40-character secret"]
    assert "aws_secret_access_key" in secret_findings(text + "\n# aws_secret_access_key: x\n")
    assert secret_findings(text + "\n# " + "ab12" * 16 + "\n") == ["hex token"]
    # ...but an image pinned by digest is not a secret.
    assert secret_findings(text + "\n# ghcr.io/o/transfer-sweep@sha256:" + "ab12" * 16 + "\n") == []


def test_token_file_is_mounted_where_ray_looks_for_it(cluster):
    opts = cluster["docker"]["run_options"]
    token_path = next(o.split("=", 1)[1] for o in opts if o.startswith("--env RAY_AUTH_TOKEN_PATH="))
    mounted_dirs = list(cluster["file_mounts"])
    assert str(Path(token_path).parent) in mounted_dirs
    assert cluster["file_mounts"][str(Path(token_path).parent)].startswith("~/")  # from the user's machine


def test_container_region_matches_provider(cluster):
    assert f"--env AWS_DEFAULT_REGION={cluster['provider']['region']}" in cluster["docker"]["run_options"]


# --- Dockerfile and .dockerignore ----------------------------------------------------------------
def test_dockerfile_structure():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


def test_dockerfile_copies_files_that_exist():
    for op, args in dockerfile_instructions(DOCKERFILE.read_text()):
        if op == "COPY" and not args.startswith("--from"):
            for src in args.split()[:-1]:
                assert (ROOT / src).exists(), f"COPY source {src} missing: docker build would fail"


@pytest.mark.parametrize("mutate, problem", [
    (lambda t: t + "\nENV AWS_SECRET_ACCESS_KEY=changeme\n", "ENV AWS_SECRET_ACCESS_KEY looks like a secret"),
    (lambda t: t + "\nARG HF_TOKEN\n", "ARG HF_TOKEN looks like a secret"),
    (lambda t: t + "\nUSER root\n", "runs as root"),
    (lambda t: t.replace("USER ray", "# no user"), "runs as root"),
    (lambda t: re.sub(r"FROM (\S+):\S+", r"FROM \1", t), "base image not pinned: pytorch/pytorch"),
    (lambda t: t + '\nENTRYPOINT ["transfer-sweep"]\n',
     "ENTRYPOINT breaks `docker run IMAGE bash` of the cluster launcher"),
    (lambda t: t.replace("COPY workers/ workers/\n", "").replace("COPY orchestrator/ orchestrator/",
                                                                  "COPY orchestrator workers ./"),
     "COPY orchestrator workers ./: several sources flatten directories"),
])
def test_dockerfile_check_catches(mutate, problem):
    assert problem in dockerfile_problems(mutate(DOCKERFILE.read_text()))


def test_dockerignore_keeps_data_and_secrets_out():
    entries = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")}
    for needed in (".venv", "data", "store", ".git"):
        assert needed in entries, needed
    for pattern in ("*.pt", "*.parquet", "__pycache__", "*.pem", "auth_token"):
        assert pattern in entries or f"**/{pattern}" in entries, pattern


# --- KubeRay RayJob -----------------------------------------------------------------------------
def _containers(rayjob: dict) -> list[dict]:
    spec = rayjob["spec"]["rayClusterSpec"]
    groups = [spec["headGroupSpec"]] + spec["workerGroupSpecs"]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_rayjob_runs_the_standard_sweep_and_cleans_up(rayjob):
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    entry = rayjob["spec"]["entrypoint"].split()
    assert entry[:3] == ["transfer-sweep", "run", "/app/sweeps/standard.yaml"]
    assert (ROOT / "sweeps" / "standard.yaml").is_file()  # the image copies sweeps/ to /app/sweeps
    assert entry[entry.index("--store") + 1].startswith("s3://")
    assert rayjob["spec"]["shutdownAfterJobFinishes"] is True


def test_rayjob_head_is_cpu_only_and_workers_have_4_gpus(rayjob):
    spec = rayjob["spec"]["rayClusterSpec"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    gpus = [g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]
            for g in spec["workerGroupSpecs"]]
    assert gpus == [4]


def rayjob_problems(text: str) -> list[str]:
    """Departures of the RayJob manifest from the security defaults."""
    rayjob = rayjob_doc(text)
    spec = rayjob["spec"]["rayClusterSpec"]
    problems = []
    if spec["headGroupSpec"].get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(f"head service {spec['headGroupSpec']['serviceType']}")
    if re.search(r"^\s*(type|serviceType):\s*(LoadBalancer|NodePort)", text, re.M):
        problems.append("a Service published outside the cluster")
    if spec.get("authOptions", {}).get("mode") != "token":
        problems.append("no token auth")
    for c in _containers(rayjob):
        secret_refs = [e for e in c.get("envFrom", []) if "secretRef" in e]
        secret_refs += [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        if not secret_refs:
            problems.append(f"{c['name']}: no credentials from a Secret")
        for e in c.get("env", []):
            if SECRET_NAME.search(e["name"]) and "value" in e:
                problems.append(f"{c['name']}: literal {e['name']}")
        if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
            problems.append(f"{c['name']}: privilege escalation allowed")
    # The usage comment names AWS_SECRET_ACCESS_KEY as a Secret key; values are what matter here.
    return problems + [f for f in secret_findings(text) if f != "aws_secret_access_key"]


def test_rayjob_security():
    assert rayjob_problems(RAYJOB.read_text()) == []


@pytest.mark.parametrize("mutate, problem", [
    (lambda t: t.replace("serviceType: ClusterIP", "serviceType: LoadBalancer"), "head service LoadBalancer"),
    (lambda t: t.replace("      mode: token", "      mode: disabled"), "no token auth"),
    (lambda t: t.replace("              envFrom:\n", "              env:\n"
                         "                - {name: AWS_SECRET_ACCESS_KEY, value: changeme}\n"
                         "              envFrom:\n", 1), "ray-head: literal AWS_SECRET_ACCESS_KEY"),
    (lambda t: t.replace("entrypoint: transfer-sweep", f"entrypoint: AWS_ACCESS_KEY_ID={FAKE_KEY_ID} transfer-sweep"),
     "AWS access key id"),
])
def test_rayjob_security_check_catches(mutate, problem):
    assert problem in rayjob_problems(mutate(RAYJOB.read_text()))


def test_rayjob_and_cluster_use_the_same_image(rayjob, cluster):
    assert {c["image"] for c in _containers(rayjob)} == {cluster["docker"]["image"]}


def test_every_node_pulls_the_same_pinned_image(rayjob, cluster):
    # The pin decides what runs; pulling it on every node start keeps a stale local copy of the
    # same tag from running instead. The same policy on both platforms.
    assert cluster["docker"]["pull_before_run"] is True
    assert {c.get("imagePullPolicy") for c in _containers(rayjob)} == {"Always"}


# --- images: pinned, never :latest ----------------------------------------------------------------
# Where the cluster launcher takes images from (docker.*, and per node type); Kubernetes: `image`.
IMAGE_KEYS = ("image", "head_image", "worker_image")


def project_version() -> str:
    return re.search(r'(?m)^version\s*=\s*"([^"]+)"', PYPROJECT.read_text()).group(1)


def image_refs(node) -> list[str]:
    """Every image reference in a parsed config or manifest, wherever it is nested."""
    if isinstance(node, dict):
        found = [v for k, v in node.items() if k in IMAGE_KEYS and isinstance(v, str)]
        return found + [r for v in node.values() for r in image_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in image_refs(v)]
    return []


def image_pin_problems(ref: str, version: str) -> list[str]:
    """Why `ref` could name different images over time (none: it is pinned). Accepted: a digest
    (`name@sha256:<64 hex>`, tag optional), or a tag `<version>` / `<version>-<commit>`."""
    name, _, digest = ref.partition("@")
    tag = name.rpartition("/")[2].partition(":")[2]  # the last part: a registry may have a :port
    if digest:
        return [] if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) else [f"{ref}: malformed digest"]
    if not tag:
        return [f"{ref}: no tag (pulls :latest)"]
    if tag == "latest":
        return [f"{ref}: :latest"]
    if tag != version and not tag.startswith(version + "-"):
        return [f"{ref}: tag is not <version>-<commit> for version {version}"]
    return []


def deploy_image_problems(cluster_text: str, rayjob_text: str) -> list[str]:
    version = project_version()
    problems = []
    for where, parsed in (("cluster.yaml", yaml.safe_load(cluster_text)),
                          ("kuberay-rayjob.yaml", manifest_docs(rayjob_text))):
        refs = image_refs(parsed)
        if not refs:
            problems.append(f"{where}: no image reference")
        problems += [f"{where}: {p}" for ref in refs for p in image_pin_problems(ref, version)]
    return problems


def test_images_are_pinned():
    assert deploy_image_problems(CLUSTER.read_text(), RAYJOB.read_text()) == []


def _image() -> str:
    return yaml.safe_load(CLUSTER.read_text())["docker"]["image"]


def _repo() -> str:
    return _image().partition("@")[0].rpartition(":")[0]


@pytest.mark.parametrize("target, mutate, problem", [
    # the files as they were: `:latest` everywhere
    ("cluster", lambda t: t.replace(_image(), _repo() + ":latest"), "cluster.yaml: {repo}:latest: :latest"),
    ("rayjob", lambda t: t.replace(_image(), _repo() + ":latest"), "kuberay-rayjob.yaml: {repo}:latest: :latest"),
    # only one of the two pods
    ("rayjob", lambda t: t.replace("image: " + _image(), "image: " + _repo() + ":latest", 1),
     "kuberay-rayjob.yaml: {repo}:latest: :latest"),
    ("rayjob", lambda t: t.replace("image: " + _image(), "image: " + _repo(), 1),
     "kuberay-rayjob.yaml: {repo}: no tag (pulls :latest)"),
    ("cluster", lambda t: t.replace(_image(), _repo()), "cluster.yaml: {repo}: no tag (pulls :latest)"),
    # an override the launcher prefers to docker.image
    ("cluster", lambda t: t.replace("docker:\n", f"docker:\n  worker_image: {_repo()}:latest\n", 1),
     "cluster.yaml: {repo}:latest: :latest"),
    ("cluster", lambda t: t.replace(_image(), _repo() + ":3f2a9c1"),
     "cluster.yaml: {repo}:3f2a9c1: tag is not <version>-<commit>"),
    ("cluster", lambda t: t.replace(_image(), _repo() + "@sha256:abc"),
     "cluster.yaml: {repo}@sha256:abc: malformed digest"),
])
def test_image_pin_check_catches(target, mutate, problem):
    cluster_text, rayjob_text = CLUSTER.read_text(), RAYJOB.read_text()
    if target == "cluster":
        cluster_text = mutate(cluster_text)
    else:
        rayjob_text = mutate(rayjob_text)
    problems = deploy_image_problems(cluster_text, rayjob_text)
    assert any(p.startswith(problem.format(repo=_repo())) for p in problems), problems


def test_image_pinned_by_digest_is_accepted():
    digest = _repo() + ":" + project_version() + "-3f2a9c1d8e4b@sha256:" + "ab12" * 16
    text = CLUSTER.read_text().replace(_image(), digest)
    assert deploy_image_problems(text, RAYJOB.read_text().replace(_image(), digest)) == []
    assert image_pin_problems(_repo() + "@sha256:" + "ab12" * 16, project_version()) == []


# --- KubeRay NetworkPolicy ----------------------------------------------------------------------
JOB_NAMESPACE = {"kubernetes.io/metadata.name": "sweeps"}
# The manifest ships the operator's namespace as `default` (a CHANGE line).
OPERATOR_NAMESPACE = {"kubernetes.io/metadata.name": "default"}
# The operator's pod labels: KubeRay's Helm chart, and its kustomize files (ray-operator/config).
OPERATOR_PODS = {
    "helm": {"app.kubernetes.io/name": "kuberay-operator", "app.kubernetes.io/instance": "kuberay-operator",
             "app.kubernetes.io/component": "kuberay-operator"},
    "kustomize": {"app.kubernetes.io/name": "kuberay", "app.kubernetes.io/component": "kuberay-operator"},
}
RAY_PORTS = (6379, 8265, 8076, 10002, 52365)  # GCS, dashboard, object manager, a worker, the agent


def kuberay_pod_labels(rayjob: dict) -> dict[str, dict[str, str]]:
    """group -> the labels KubeRay (>= 1.5) puts on that group's pods: its own, then the template's
    (all but ray.io/cluster, node-type and group may be overridden). KubeRay names the cluster of a
    RayJob <job name>-<5 random characters>, so no selector can name it in advance."""
    cluster_name = rayjob["metadata"]["name"] + "-x7k2q"
    spec = rayjob["spec"]["rayClusterSpec"]
    groups = [("head", "headgroup", spec["headGroupSpec"])]
    groups += [("worker", g["groupName"], g) for g in spec["workerGroupSpecs"]]
    pods = {}
    for node_type, group, g in groups:
        labels = {"ray.io/is-ray-node": "yes", "ray.io/cluster": cluster_name, "ray.io/node-type": node_type,
                  "ray.io/group": group, "app.kubernetes.io/name": "kuberay",
                  "app.kubernetes.io/created-by": "kuberay-operator"}
        for key, value in ((g["template"].get("metadata") or {}).get("labels") or {}).items():
            if key not in ("ray.io/cluster", "ray.io/node-type", "ray.io/group"):
                labels[key] = str(value)
        pods[group] = labels
    return pods


def submitter_pod_labels(rayjob: dict) -> dict[str, str]:
    """K8sJobMode: KubeRay runs `ray job submit` in a Kubernetes Job named after the RayJob; these
    are the labels Kubernetes gives its pods (KubeRay < 1.7 adds none of its own to them)."""
    name = rayjob["metadata"]["name"]
    return {"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": "0000"}


def selector_matches(selector: dict | None, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (an empty selector matches everything)."""
    selector = selector or {}
    if any(labels.get(k) != str(v) for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], [str(v) for v in e.get("values", [])]
        ok = {"In": key in labels and labels[key] in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[op]
        if not ok:
            return False
    return True


def _empty_selector(selector) -> bool:
    return not selector or not (selector.get("matchLabels") or selector.get("matchExpressions"))


def _network_policies(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d.get("kind") == "NetworkPolicy"]


def _port_numbers(docs: list[dict]) -> dict[str, int]:
    """Named container ports of the manifest (a NetworkPolicy may name a port)."""
    rayjob = next(d for d in docs if d.get("kind") == "RayJob")
    return {p["name"]: p["containerPort"] for c in _containers(rayjob) for p in c.get("ports", []) if "name" in p}


def _port_matches(rule_port: dict, port: int, named: dict[str, int]) -> bool:
    """A NetworkPolicyPort (TCP): no port is every port; a number, a range up to endPort, or a name."""
    if rule_port.get("protocol", "TCP") != "TCP":
        return False
    first = rule_port.get("port")
    if first is None:
        return True
    first = named.get(first) if isinstance(first, str) else first
    return first is not None and first <= port <= rule_port.get("endPort", first)


def ingress_admitted(docs: list[dict], target: dict[str, str], source: dict[str, str],
                     source_namespace: dict[str, str], port: int) -> bool:
    """Would the NetworkPolicies of `docs` (applied in the job's namespace) let a pod with labels
    `source` in a namespace with labels `source_namespace` reach `port` of the pod `target`?"""
    named = _port_numbers(docs)
    selecting = [p for p in _network_policies(docs)
                 if selector_matches(p["spec"].get("podSelector"), target)
                 and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])]
    if not selecting:
        return True  # a pod no policy selects is open: that is what this check exists to rule out
    for policy in selecting:
        for rule in policy["spec"].get("ingress") or []:
            if rule.get("ports") and not any(_port_matches(p, port, named) for p in rule["ports"]):
                continue
            peers = rule.get("from") or []
            if not peers:
                return True
            for peer in peers:
                if "ipBlock" in peer:
                    return True
                ns_ok = (selector_matches(peer["namespaceSelector"], source_namespace)
                         if "namespaceSelector" in peer else source_namespace == JOB_NAMESPACE)
                if ns_ok and selector_matches(peer.get("podSelector"), source):
                    return True
    return False


def networkpolicy_problems(docs: list[dict]) -> list[str]:
    """Departures of the KubeRay manifest's NetworkPolicies from: every Ray pod of the job is
    selected; Ray pods of the job reach each other on every port; the head's dashboard (8265) is
    reached by the submitter and the operator too; nothing else reaches anything; and no rule is
    written to admit from everywhere."""
    policies = _network_policies(docs)
    if not policies:
        return ["no NetworkPolicy"]
    rayjob = next(d for d in docs if d.get("kind") == "RayJob")
    pods = kuberay_pod_labels(rayjob)
    head = pods["headgroup"]
    problems = []
    for policy in policies:
        name, spec = policy["metadata"]["name"], policy["spec"]
        if not any(selector_matches(spec.get("podSelector"), labels) for labels in pods.values()):
            problems.append(f"{name} selects none of the job's Ray pods")
        if "Ingress" not in spec.get("policyTypes", ["Ingress"]):
            problems.append(f"{name} does not restrict ingress")
        for rule in spec.get("ingress") or []:
            if not rule.get("from"):
                problems.append(f"{name}: an ingress rule without `from` admits from everywhere")
            for peer in rule.get("from") or []:
                if "ipBlock" in peer:
                    problems.append(f"{name}: an ipBlock admits by address, {peer['ipBlock'].get('cidr')}")
                elif _empty_selector(peer.get("podSelector")):
                    problems.append(f"{name}: a peer admits every pod of "
                                    + ("a namespace" if "namespaceSelector" not in peer else "its namespaces"))
    for group, labels in pods.items():
        if not any(selector_matches(p["spec"].get("podSelector"), labels) for p in policies):
            problems.append(f"{group} pods are not selected by any NetworkPolicy")
    # what must get through
    for group, target in pods.items():
        for src_group, source in pods.items():
            for port in RAY_PORTS:
                if not ingress_admitted(docs, target, source, JOB_NAMESPACE, port):
                    problems.append(f"{group} refuses {src_group} on {port}")
    if not ingress_admitted(docs, head, submitter_pod_labels(rayjob), JOB_NAMESPACE, 8265):
        problems.append("head refuses the submitter on 8265")
    for install, operator in OPERATOR_PODS.items():
        if not ingress_admitted(docs, head, operator, OPERATOR_NAMESPACE, 8265):
            problems.append(f"head refuses the KubeRay operator ({install}) on 8265")
    # what must not
    other_job = dict(head, **{"ray.io/cluster": "other-abcde", "app.kubernetes.io/instance": "other"})
    outsiders = {"another pod of the namespace": ({"app": "notebook"}, JOB_NAMESPACE),
                 "a Ray pod of another job": (other_job, JOB_NAMESPACE),
                 "an operator-labelled pod elsewhere": (OPERATOR_PODS["helm"], {"kubernetes.io/metadata.name": "dev"}),
                 "a pod of another namespace": ({"app": "x"}, {"kubernetes.io/metadata.name": "dev"})}
    for group, target in pods.items():
        for who, (source, namespace) in outsiders.items():
            for port in RAY_PORTS:
                if ingress_admitted(docs, target, source, namespace, port):
                    problems.append(f"{group} admits {who} on {port}")
                    break
    for port in (6379, 10002):
        if ingress_admitted(docs, head, submitter_pod_labels(rayjob), JOB_NAMESPACE, port):
            problems.append(f"head admits the submitter on {port}")
    for group, target in pods.items():
        if group != "headgroup" and ingress_admitted(docs, target, submitter_pod_labels(rayjob),
                                                     JOB_NAMESPACE, 8265):
            problems.append(f"{group} admits the submitter")
    return problems


def test_networkpolicy_isolates_the_job():
    assert networkpolicy_problems(manifest_docs(RAYJOB.read_text())) == []


def _policy(docs: list[dict], index: int = 0) -> dict:
    return _network_policies(docs)[index]["spec"]


def _drop_policies(docs):  # the manifest as it was: a RayJob, no NetworkPolicy
    return [d for d in docs if d.get("kind") != "NetworkPolicy"]


def _select_by_job_name(docs):  # ray.io/cluster is <job name>-<random> for a RayJob
    for p in _network_policies(docs):
        p["spec"]["podSelector"] = {"matchLabels": {"ray.io/cluster": "transfer-sweep-standard"}}
    return docs


def _no_template_labels(docs):
    rayjob = docs[0]["spec"]["rayClusterSpec"]
    for g in [rayjob["headGroupSpec"]] + rayjob["workerGroupSpecs"]:
        g["template"].pop("metadata", None)
    return docs


def _set(path_fn):
    def mutate(docs):
        path_fn(docs)
        return docs
    return mutate


@pytest.mark.parametrize("mutate, problem", [
    (_drop_policies, "no NetworkPolicy"),
    (_select_by_job_name, "selects none of the job's Ray pods"),
    (_no_template_labels, "headgroup pods are not selected by any NetworkPolicy"),
    (_set(lambda d: _policy(d)["ingress"][0].pop("from")), "an ingress rule without `from` admits from everywhere"),
    (_set(lambda d: _policy(d)["ingress"][0].update({"from": []})), "admits from everywhere"),
    (_set(lambda d: _policy(d)["ingress"].append({})), "admits from everywhere"),
    (_set(lambda d: _policy(d)["ingress"][0].update({"from": [{"podSelector": {}}]})),
     "a peer admits every pod of a namespace"),
    (_set(lambda d: _policy(d, 1)["ingress"][0]["from"].append({"namespaceSelector": {}})),
     "a peer admits every pod of its namespaces"),
    (_set(lambda d: _policy(d, 1)["ingress"][0]["from"].append({"ipBlock": {"cidr": "0.0.0.0/0"}})),
     "an ipBlock admits by address"),
    (_set(lambda d: _policy(d, 1)["ingress"][0].pop("ports")), "head admits the submitter on 6379"),
    (_set(lambda d: _policy(d, 1)["ingress"][0]["from"].pop(0)), "head refuses the submitter on 8265"),
    (_set(lambda d: _policy(d, 1)["ingress"][0]["from"].pop(1)), "head refuses the KubeRay operator (helm) on 8265"),
    (_set(lambda d: _policy(d, 1)["ingress"][0]["from"][1]["podSelector"]["matchLabels"].update(
        {"app.kubernetes.io/name": "kuberay-operator"})), "head refuses the KubeRay operator (kustomize) on 8265"),
    (_set(lambda d: _policy(d, 1).update({"podSelector": _policy(d)["podSelector"]})), "gpu4 admits the submitter"),
    (_set(lambda d: _policy(d)["ingress"][0].update({"ports": [{"port": 6379}]})), "headgroup refuses gpu4 on 10002"),
    (_set(lambda d: _policy(d)["ingress"][0]["from"][0]["podSelector"]["matchLabels"].pop(
        "app.kubernetes.io/instance")), "headgroup admits a Ray pod of another job"),
])
def test_networkpolicy_check_catches(mutate, problem):
    docs = mutate(copy.deepcopy(manifest_docs(RAYJOB.read_text())))
    problems = networkpolicy_problems(docs)
    assert any(problem in p for p in problems), problems


# --- docs and the GPU check ---------------------------------------------------------------------
def test_howto_covers_the_cycle_and_every_command_names_a_store():
    text = HOWTO.read_text()
    for cmd in ("ray up cluster.yaml", "ray dashboard cluster.yaml", "ray down cluster.yaml",
                "docker build", "docker push"):
        assert cmd in text, cmd
    lines = re.sub(r"\\\n\s*", " ", text).splitlines()  # join shell continuations
    used = {}
    for line in lines:
        m = re.match(r"\s*transfer-sweep (\w+) ", line)
        if m:
            used[m.group(1)] = line
    assert {"submit", "status", "resume", "logs", "report"} <= set(used)
    for sub, line in used.items():
        assert "--store " in line, line
    assert "--address http://127.0.0.1:8265" in used["submit"]
    assert secret_findings(text) == []


# --- the store's IAM policy (docs/cluster.md) ----------------------------------------------------
IAM_BUCKET, IAM_PREFIX = "BUCKET", "transfer-sweep"


def store_policy_json(text: str) -> str:
    """The JSON of the worker role's policy in docs/cluster.md (its first ```json block)."""
    return re.search(r"```json\n(.*?)```", text, re.S).group(1)


def _iam_like(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM's wildcard match (StringLike, Action, Resource): `*` any run, `?` one character,
    against the whole value."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.S | (re.I if ignore_case else 0)) is not None


_IAM_STRING_OPERATORS = {"StringLike": _iam_like, "StringEquals": lambda a, b: a == b}


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def iam_allows(policy: dict, action: str, resource: str, context: dict[str, str]) -> bool:
    """IAM's evaluation of an identity policy for one request: allowed if a statement allows it and
    none denies it. A condition on a key the request does not carry is false (no ...IfExists)."""
    allowed = False
    for st in _as_list(policy["Statement"]):
        unsupported = {"NotAction", "NotResource", "NotPrincipal"} & set(st)
        assert not unsupported, f"this check does not model {unsupported}"
        if not any(_iam_like(a, action, ignore_case=True) for a in _as_list(st["Action"])):
            continue
        if not any(_iam_like(r, resource) for r in _as_list(st["Resource"])):
            continue
        holds = True
        for operator, keys in st.get("Condition", {}).items():
            assert operator in _IAM_STRING_OPERATORS, f"this check does not model {operator}"
            for key, values in keys.items():
                value = context.get(key)
                holds &= value is not None and any(_IAM_STRING_OPERATORS[operator](v, value)
                                                   for v in _as_list(values))
        if holds:
            if st["Effect"] == "Deny":
                return False
            allowed = True
    return allowed


class RecordingS3:
    """Just enough of boto3's S3 client for S3Store, in memory, recording each request the way IAM
    sees it: (action, resource ARN, condition keys)."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.meta = SimpleNamespace(endpoint_url="https://s3.invalid", region_name="us-east-1")

    @staticmethod
    def _error(code: str, op: str):
        import botocore.exceptions
        return botocore.exceptions.ClientError({"Error": {"Code": code, "Message": code}}, op)

    def _object(self, action: str, bucket: str, key: str) -> None:
        self.requests.append((action, f"arn:aws:s3:::{bucket}/{key}", {}))

    def list_objects_v2(self, Bucket, Prefix="", MaxKeys=1000, **_):
        self.requests.append(("s3:ListBucket", f"arn:aws:s3:::{Bucket}", {"s3:prefix": Prefix} if Prefix else {}))
        keys = sorted(k for k in self.objects if k.startswith(Prefix))[:MaxKeys]
        return {"Contents": [{"Key": k} for k in keys], "KeyCount": len(keys)}

    def get_paginator(self, name):
        assert name == "list_objects_v2", name
        return SimpleNamespace(paginate=lambda **kw: [self.list_objects_v2(**kw)])

    def put_object(self, Bucket, Key, Body, IfNoneMatch=None, **_):
        self._object("s3:PutObject", Bucket, Key)  # a create-only PUT needs nothing more
        if IfNoneMatch == "*" and Key in self.objects:
            raise self._error("PreconditionFailed", "PutObject")
        self.objects[Key] = bytes(Body)

    def head_object(self, Bucket, Key, **_):
        self._object("s3:GetObject", Bucket, Key)  # HEAD is authorised as GetObject
        if Key not in self.objects:
            raise self._error("404", "HeadObject")
        return {}

    def get_object(self, Bucket, Key, **_):
        self._object("s3:GetObject", Bucket, Key)
        if Key not in self.objects:
            raise self._error("NoSuchKey", "GetObject")
        return {"Body": io.BytesIO(self.objects[Key])}

    def delete_object(self, Bucket, Key, **_):
        self._object("s3:DeleteObject", Bucket, Key)
        self.objects.pop(Key, None)


def store_requests() -> list[tuple[str, str, dict[str, str]]]:
    """Every kind of request the S3 store makes, recorded from the store itself: opening it (the
    listing check and the create-only probe), writes, commits, reads, existence checks, listings
    of the root and of folders, deletes."""
    from sweepcore.store import open_store
    store = open_store(f"s3://{IAM_BUCKET}/{IAM_PREFIX}", endpoint=f"https://{uuid.uuid4().hex}.invalid",
                       check=False)
    client = store._client = RecordingS3()
    store.check()
    store.write_bytes("sweeps/demo/spec.yaml", b"name: demo\n")
    assert store.commit_bytes("results/demo/k.parquet", b"result")
    assert not store.commit_bytes("results/demo/k.parquet", b"again")
    assert store.read_bytes("sweeps/demo/spec.yaml") == b"name: demo\n"
    assert store.exists("results/demo/k.parquet") and not store.exists("trials/demo/none.json")
    with pytest.raises(FileNotFoundError):
        store.read_bytes("trials/demo/none.json")
    assert store.list("") and store.list("results") and store.list("results/demo")
    store.delete("sweeps/demo/spec.yaml")
    return client.requests


# Requests no role of the store may make: another bucket, another prefix, the bare prefix as an
# object key, a sibling that merely starts with the prefix, the whole bucket, bucket settings.
OUTSIDE_REQUESTS = [
    ("s3:ListBucket", f"arn:aws:s3:::{IAM_BUCKET}", {}),
    ("s3:ListBucket", f"arn:aws:s3:::{IAM_BUCKET}", {"s3:prefix": ""}),
    ("s3:ListBucket", f"arn:aws:s3:::{IAM_BUCKET}", {"s3:prefix": "other/"}),
    ("s3:ListBucket", f"arn:aws:s3:::{IAM_BUCKET}", {"s3:prefix": f"{IAM_PREFIX}-old/"}),
    ("s3:ListBucket", "arn:aws:s3:::OTHER", {"s3:prefix": f"{IAM_PREFIX}/"}),
    ("s3:GetObject", f"arn:aws:s3:::{IAM_BUCKET}/other/x", {}),
    ("s3:GetObject", f"arn:aws:s3:::{IAM_BUCKET}/{IAM_PREFIX}-old/x", {}),
    ("s3:PutObject", f"arn:aws:s3:::{IAM_BUCKET}/{IAM_PREFIX}", {}),
    ("s3:PutObject", f"arn:aws:s3:::OTHER/{IAM_PREFIX}/x", {}),
    ("s3:DeleteObject", f"arn:aws:s3:::{IAM_BUCKET}/other/x", {}),
    ("s3:PutObjectAcl", f"arn:aws:s3:::{IAM_BUCKET}/{IAM_PREFIX}/x", {}),
    ("s3:DeleteBucket", f"arn:aws:s3:::{IAM_BUCKET}", {}),
    ("s3:PutBucketPolicy", f"arn:aws:s3:::{IAM_BUCKET}", {}),
]


def _describe(request) -> str:
    action, resource, context = request
    return " ".join([action, resource] + [f"{k}={v}" for k, v in context.items()])


def store_policy_problems(policy_json: str, requests) -> list[str]:
    policy = json.loads(policy_json)
    problems = [f"denied: {_describe(r)}" for r in requests if not iam_allows(policy, *r)]
    return problems + [f"allowed: {_describe(r)}" for r in OUTSIDE_REQUESTS if iam_allows(policy, *r)]


def _without_conditions(policy_json: str) -> str:
    policy = json.loads(policy_json)
    for st in policy["Statement"]:
        st.pop("Condition", None)
    return json.dumps(policy)


@pytest.fixture(scope="module")
def requests_of_the_store():
    return store_requests()


def test_store_requests_cover_every_kind(requests_of_the_store):
    seen = {(a, c.get("s3:prefix", "") == IAM_PREFIX) for a, _, c in requests_of_the_store}
    assert seen >= {("s3:ListBucket", True), ("s3:ListBucket", False), ("s3:GetObject", False),
                    ("s3:PutObject", False), ("s3:DeleteObject", False)}
    assert any(f"/{IAM_PREFIX}/_probe/" in r for a, r, _ in requests_of_the_store if a == "s3:DeleteObject")


def test_store_policy_allows_what_the_store_does_and_nothing_outside_its_prefix(requests_of_the_store):
    assert store_policy_problems(store_policy_json(HOWTO.read_text()), requests_of_the_store) == []


@pytest.mark.parametrize("mutate, problem", [
    # the policy as it was: `transfer-sweep/*` does not match the bare prefix that opening the store lists
    (lambda t: re.sub(r'"s3:prefix": \[[^\]]*\]', '"s3:prefix": "transfer-sweep/*"', t),
     "denied: s3:ListBucket arn:aws:s3:::BUCKET s3:prefix=transfer-sweep"),
    (lambda t: t.replace(', "s3:DeleteObject"', ""),
     "denied: s3:DeleteObject arn:aws:s3:::BUCKET/transfer-sweep/_probe/"),
    (lambda t: t.replace('"s3:GetObject", ', ""), "denied: s3:GetObject"),
    (lambda t: t.replace("BUCKET/transfer-sweep/*", "BUCKET/*"), "allowed: s3:GetObject arn:aws:s3:::BUCKET/other/x"),
    (lambda t: re.sub(r'"s3:prefix": \[[^\]]*\]', '"s3:prefix": "transfer-sweep*"', t),
     "allowed: s3:ListBucket arn:aws:s3:::BUCKET s3:prefix=transfer-sweep-old/"),
    (lambda t: _without_conditions(t), "allowed: s3:ListBucket arn:aws:s3:::BUCKET"),
    (lambda t: t.replace('"s3:GetObject", "s3:PutObject", "s3:DeleteObject"', '"s3:*"'), "allowed: s3:PutObjectAcl"),
])
def test_store_policy_check_catches(mutate, problem, requests_of_the_store):
    text = store_policy_json(HOWTO.read_text())
    mutated = mutate(text)
    assert mutated != text
    problems = store_policy_problems(mutated, requests_of_the_store)
    assert any(p.startswith(problem) for p in problems), problems
