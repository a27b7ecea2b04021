# One CUDA PyTorch image for the Ray head and the GPU workers (cluster.yaml and
# docs/kuberay-rayjob.yaml both use it). Build and push (docs/cluster.md):
#   docker build -t ghcr.io/OWNER/transfer-sweep:$(git rev-parse --short HEAD) .
#   docker push ghcr.io/OWNER/transfer-sweep:$(git rev-parse --short HEAD)
# The image holds code only: no data (it comes from the store), no credentials (they come from
# an IAM instance profile or a Kubernetes Secret at run time), no Ray auth token.

# Pinned tag: torch 2.10.0 (past the weights_only advisories, see pyproject.toml), CUDA 12.8 + cuDNN 9
# runtime, a CUDA build of torch already installed. The
# head runs no trials but uses the same image, so both sides always run the same code.
FROM pytorch/pytorch:2.10.0-cuda12.8-cudnn9-runtime

LABEL org.opencontainers.image.title="transfer-sweep" \
      org.opencontainers.image.description="Layer-wise transfer sweeps on Ray (head and GPU workers)"

# rsync and openssh-client are needed by the Ray cluster launcher: it copies files into the
# container with `rsync -e 'docker exec'`, and the autoscaler on the head sets up workers over
# SSH. procps gives `ps`/`pkill` to `ray stop`.
RUN apt-get update \
 && apt-get install -y --no-install-recommends rsync openssh-client procps \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The Ray version must equal the one on the machine that runs `ray up` and submits jobs.
ARG RAY_VERSION=2.60.0

# Dependencies first, from pyproject.toml alone, so that a code change does not reinstall them.
# torchvision (0.25 pairs with torch 2.10) only for nvJPEG: trials decode JPEG shards on the GPU with it
# (docs/performance.md); the base image normally has it already.
# Keep the base image's CUDA torch: the constraint makes pip fail loudly, instead of silently
# downloading a different multi-GB torch, if pyproject.toml ever asks for another version.
COPY pyproject.toml README.md ./
RUN python -c "import torch; print('torch==' + torch.__version__)" > /tmp/constraints.txt \
 && echo "ray==${RAY_VERSION}" >> /tmp/constraints.txt \
 && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
 && pip install --no-cache-dir -c /tmp/constraints.txt -r /tmp/requirements.txt \
 && { python -c "import torchvision.io" 2>/dev/null \
      || pip install --no-cache-dir -c /tmp/constraints.txt "torchvision==0.25.*"; } \
 && python -c "from torchvision.io import decode_jpeg" \
 && rm /tmp/constraints.txt /tmp/requirements.txt

# Then the project itself. One COPY per directory: `COPY a b ./` would copy the *contents* of
# a and b into /app. The last two commands are a smoke test of the installed distribution.
COPY orchestrator/ orchestrator/
COPY workers/ workers/
COPY sweepcore/ sweepcore/
COPY sweeps/ sweeps/
RUN pip install --no-cache-dir --no-deps . \
 && python -c "import torch, ray, orchestrator.cli, workers.trial, sweepcore.store; print('torch', torch.__version__, 'ray', ray.__version__)" \
 && transfer-sweep --help > /dev/null

# Non-root user `ray`, uid 1000, home /home/ray: the conventions of Ray's own images, which the
# cluster launcher and KubeRay expect. uid 1000 also matches the `ubuntu` user of the EC2 host,
# so files the launcher syncs to the host (the Ray auth token) are readable in the container
# without chown. Unlike rayproject/ray we install no sudo: code running in a trial (ours and
# every library it imports) then cannot become root in the container. The launcher only needs
# sudo to fix the ownership of mounted files, which the matching uid makes unnecessary.
# The code in /app stays owned by root: read-only for the process that runs trials.
RUN if id -u 1000 >/dev/null 2>&1; then userdel --remove "$(id -un 1000)"; fi \
 && useradd --create-home --uid 1000 --shell /bin/bash ray \
 && install -d -o ray -g ray -m 700 /home/ray/.ray
USER ray
# Explicit HOME: the cluster launcher reads it from the image config (`docker inspect`) to place
# `~/` mounts; without it, it assumes /root, which user ray cannot read.
ENV HOME=/home/ray
# Ray's idle workers import Tune and the trainable before a trial comes (trial slots start warm: see
# orchestrator/execution/session.py, PRELOAD_MODULES, which this list must equal).
ENV RAY_preload_python_modules=ray.tune,orchestrator.execution.trainable

# No ENTRYPOINT: the cluster launcher starts the container as `docker run ... IMAGE bash` and
# KubeRay replaces the command with `ray start ...`; an ENTRYPOINT would swallow both.
# No HEALTHCHECK: Ray's launcher and KubeRay's probes check the Ray processes themselves.
CMD ["transfer-sweep", "--help"]
