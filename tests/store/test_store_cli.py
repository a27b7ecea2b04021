"""Store problems at the command line: one line naming the problem, non-zero exit, nothing written
(no credential in anything a sweep writes: tests/integration/test_store_credentials.py)."""
from __future__ import annotations

from ray_cluster import free_port
from s3_server import AWS_ENV_TO_CLEAR
from sweep_helpers import cli, tiny_spec


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
