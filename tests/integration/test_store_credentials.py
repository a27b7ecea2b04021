"""No credential value in anything a sweep writes: a sweep on the tests' Ray head against SeaweedFS,
then every object, log and temp file is searched for the keys."""
from __future__ import annotations

from pathlib import Path

from s3_server import AWS_ENV_TO_CLEAR
from sweep_helpers import cli, env_with, tiny_spec

from orchestrator.spec import load_spec
from orchestrator.spec.plan import make_plan
from sweepcore.records import read_results
from sweepcore.store import open_store


def s3_env(server, **over) -> dict:
    import os
    env = {k: v for k, v in os.environ.items() if k not in AWS_ENV_TO_CLEAR}
    env.update(server.env())
    env.update(over)
    return env


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
