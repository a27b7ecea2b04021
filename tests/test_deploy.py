"""Deployment files: cluster.yaml, Dockerfile, .dockerignore, docs/kuberay-rayjob.yaml,
docs/cluster.md, bench/gpu_check.sh.

No Docker engine, cloud or GPU here, so these tests check what can be checked offline: Ray's own
validation of the cluster config, the security defaults (token auth, loopback dashboard, no open
ports, no secrets), the Dockerfile's structure, and the KubeRay manifest. Each security check is
also run on a deliberately broken copy, to prove it would catch the mistake.
"""
from __future__ import annotations

import copy
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CLUSTER = ROOT / "cluster.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
RAYJOB = ROOT / "docs" / "kuberay-rayjob.yaml"
HOWTO = ROOT / "docs" / "cluster.md"
GPU_CHECK = ROOT / "bench" / "gpu_check.sh"
DEPLOY_FILES = [CLUSTER, DOCKERFILE, DOCKERIGNORE, RAYJOB, HOWTO, GPU_CHECK]

SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL", re.I)
# AWS access key ids, 40-character secret keys (mixed case and digits), private keys, and
# 64-hex Ray auth tokens (`ray get-auth-token --generate` makes those).
SECRET_PATTERNS = {
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "40-character secret": re.compile(
        r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]*[a-z])(?=[A-Za-z0-9/+]*[A-Z])(?=[A-Za-z0-9/+]*[0-9])"
        r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "hex token": re.compile(r"(?<!sha256:)(?<![0-9a-fA-F])[0-9a-f]{64}(?![0-9a-fA-F])"),
}
# Built at run time so that this file itself holds no key-shaped literal (AWS's documented
# example credentials).
FAKE_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
FAKE_SECRET = "wJalrXUtnFEMI/K7MDENG/" + "bPxRfiCYEXAMPLEKEY"


# --- checkers (pure functions of text or parsed config) -----------------------------------------
def secret_findings(text: str) -> list[str]:
    """Names of the secret patterns found in `text`."""
    found = [name for name, rx in SECRET_PATTERNS.items() if rx.search(text)]
    if "aws_secret_access_key" in text.lower():
        found.append("aws_secret_access_key")
    return found


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


@pytest.fixture(scope="module")
def rayjob() -> dict:
    return yaml.safe_load(RAYJOB.read_text())


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
    rayjob = yaml.safe_load(text)
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


def test_gpu_check_script_is_valid_bash_within_8_minutes():
    text = GPU_CHECK.read_text()
    subprocess.run(["bash", "-n", str(GPU_CHECK)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(GPU_CHECK)], check=True)
    budget = int(re.search(r"BUDGET_S=\$\{BUDGET_S:-(\d+)\}", text).group(1))
    assert budget <= 8 * 60 - 10  # each step's timeout is capped by what is left of it
    assert "build_model(SETTINGS)" in text and '"arch": "caffenet"' in text
    assert "--set resources.gpus=0.25" in text and 'gpu_check.log' in text
    assert secret_findings(text) == []
