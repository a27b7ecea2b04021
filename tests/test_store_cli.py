"""Store problems at the command line: one line naming the problem, non-zero exit, nothing written;
and no credential value in anything a sweep writes."""
from __future__ import annotations

from pathlib import Path

import pytest
from ray_cluster import free_port
from s3_server import AWS_ENV_TO_CLEAR
from sweep_helpers import cli, env_with, tiny_spec

from orchestrator.plan import make_plan
from orchestrator.spec import load_spec
from sweepcore.records import read_results
from sweepcore.store import open_store


def s3_env(server, **over) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_TO_CLEAR}
    env.update(server.env())
    env.update(over)
    return env


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_unreachable_endpoint(s3_server, tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    spec = tiny_spec(tmp_path, "unreach")
    line = one_error_line(cli("run", str(spec), "--store", "s3://bucket/x", "--endpoint", endpoint,
                              env=s3_env(s3_server), timeout=60))
    assert endpoint in line and "unreachable" in line


def test_wrong_credentials_write_nothing(s3_server, tmp_path):
    bucket = s3_server.make_bucket()
    spec = tiny_spec(tmp_path, "badcreds")
    env = s3_env(s3_server, AWS_SECRET_ACCESS_KEY="not-the-secret-0123456789")
    line = one_error_line(cli("run", str(spec), "--store", f"s3://{bucket}/x", env=env, timeout=60))
    assert "credentials rejected" in line and "not-the-secret" not in line
    assert s3_server.client().list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_missing_bucket_is_not_created(s3_server, tmp_path):
    spec = tiny_spec(tmp_path, "nobucket")
    line = one_error_line(cli("status", "nobucket", "--store", "s3://no-such-bucket-x/p",
                              env=s3_env(s3_server), timeout=60))
    assert "bucket 'no-such-bucket-x' does not exist" in line
    line = one_error_line(cli("run", str(spec), "--store", "s3://no-such-bucket-x/p",
                              env=s3_env(s3_server), timeout=60))
    assert "no-such-bucket-x" in line
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert "no-such-bucket-x" not in names


def test_secret_in_uri_is_refused_without_echoing_it(s3_server, tmp_path):
    spec = tiny_spec(tmp_path, "secreturi")
    secret = s3_server.secret_key
    for uri in (f"s3://{s3_server.access_key}:{secret}@bucket/p", f"s3://bucket/p?secret_key={secret}"):
        line = one_error_line(cli("run", str(spec), "--store", uri, env=s3_env(s3_server), timeout=60))
        assert "must not contain credentials" in line
        assert secret not in line


def test_local_store_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    spec = tiny_spec(tmp_path, "filestore")
    line = one_error_line(cli("run", str(spec), "--store", str(target), timeout=60))
    assert str(target) in line
    assert target.read_text() == "x"


@pytest.mark.integration
def test_no_credential_in_anything_a_sweep_writes(ray_head, s3_server, tmp_path, monkeypatch):
    bucket = s3_server.make_bucket()
    uri = f"s3://{bucket}/leak"
    spec = tiny_spec(tmp_path, "leak", treatments=["base", "transfer"], layers=[1])
    proc = cli("run", str(spec), "--store", uri, "--address", ray_head.address,
               env=env_with(ray_head, s3_env(s3_server)))
    assert proc.returncode == 0, proc.stderr
    secrets = [s3_server.secret_key.encode(), s3_server.access_key.encode()]
    objects = s3_server.objects()
    written = [k for k in objects if k.startswith(f"{bucket}/")]
    assert any(k.endswith(".parquet") for k in written) and any("/ckpt/" in k or "/bases/" in k
                                                              for k in written)
    assert any("spec.yaml" in k for k in written)
    for name, body in objects.items():
        for secret in secrets:
            assert secret not in body, f"credential found in s3://{name}"
    # Ray's own logs and the CLI's output on this machine
    for path in Path(ray_head.temp_dir).rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000 and not path.is_symlink():
            try:
                data = path.read_bytes()
            except OSError:
                continue
            for secret in secrets:
                assert secret not in data, f"credential found in {path}"
    for secret in secrets:
        assert secret.decode() not in proc.stdout + proc.stderr
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    assert read_results(open_store(uri)).num_rows == len(make_plan(load_spec(spec))) == 3
