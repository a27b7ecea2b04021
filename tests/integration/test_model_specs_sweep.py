"""A ResNet and a factory sweep (`model.arch: resnet`, `model.factory` from tests/user_models.py) run on
the tests' Ray head to committed rows."""
import pytest
import yaml


@pytest.mark.parametrize("model,ns", [
    ({"arch": "resnet", "widths": [4, 8], "blocks": [1, 1], "dropout": 0.0}, [1, 2]),
    ({"factory": "user_models:tiny_cnn"}, [1, 3]),
])
def test_a_resnet_and_a_factory_sweep_run_to_committed_rows(ray_head, tmp_path, model, ns):
    from sweep_helpers import cli, env_with, tiny_spec

    from sweepcore.records import read_results
    from sweepcore.store import open_store
    name = "resnet" if "arch" in model else "factory"
    spec = tiny_spec(tmp_path, name, layers=ns, treatments=["base", "selffer", "transfer+"])
    raw = yaml.safe_load(spec.read_text())
    spec.write_text(yaml.safe_dump({**raw, "model": model}))  # not merged with the tiny CaffeNet shape
    env = env_with(ray_head, {"PYTHONPATH": ray_head.env["PYTHONPATH"]})  # the driver probes the factory too
    proc = cli("run", str(spec), "--store", str(tmp_path / "store"), "--address", ray_head.address, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = read_results(open_store(str(tmp_path / "store"))).to_pylist()
    assert len(rows) == 2 + 2 * len(ns) and {r["status"] for r in rows} == {"ok"}
    assert sorted({r["n"] for r in rows}) == [0, *ns]
    settings = [yaml.safe_load(r["settings_json"])["model"] for r in rows]
    assert {s["arch"] for s in settings} == {"resnet" if name == "resnet" else "factory"}
    assert {s["frozen_bn"] for s in settings} == {"frozen"}
