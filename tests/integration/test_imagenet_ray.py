"""ImageNet prepared on Ray: into S3 with the bytes of the pure functions; failed shards exit 1 and the
same command finishes them."""

from imagenet_tree import SHARD
from s3_server import use_server_env
from sweep_helpers import assert_one_failed_shard, cli, env_with

from sweepcore.store import open_store
from workers.imagenet import load as imagenet_load


def test_cli_prepares_on_ray_into_s3_with_the_same_content_as_the_pure_functions(
        prepared, ray_head, s3_server, monkeypatch):
    uri = f"s3://{s3_server.make_bucket()}/p"
    proc = cli("data", "prepare", "imagenet", "--src", str(prepared["src"]), "--store", uri,
               "--shard-size", str(SHARD), "--format", "raw", "--address", ray_head.address,
               env=env_with(ray_head, s3_server.env()), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    digest = prepared["manifest"]["hash"]
    assert (f"imagenet {digest}: 4 classes, 24 train + 8 val images in 5 + 2 shards (7 prepared now, 0 reused), "
            "2 files skipped") in proc.stdout
    use_server_env(s3_server, monkeypatch)
    store = open_store(uri)
    manifest = imagenet_load.read_manifest(store, digest)
    assert manifest["shards"] == prepared["manifest"]["shards"]  # same bytes: same sha256 per shard
    assert manifest["sha256"] == prepared["manifest"]["sha256"]


def test_failed_shards_exit_1_with_one_line_and_the_same_command_finishes_them(prepared, ray_head, tmp_path):
    store = tmp_path / "store"
    blocked = store / f"{prepared['jobs'][1].stem}.npy"
    blocked.mkdir(parents=True)  # a folder where the shard's images go: its task fails, the others do not
    args = ("data", "prepare", "imagenet", "--src", str(prepared["src"]), "--store", str(store),
            "--shard-size", str(SHARD), "--format", "raw", "--address", ray_head.address)
    proc = cli(*args, env=env_with(ray_head), timeout=300)
    assert_one_failed_shard(proc, 7, "imagenet")
    digest = prepared["manifest"]["hash"]
    assert not (store / "datasets" / "imagenet" / digest / "manifest.json").exists()  # nothing merged
    assert len(list((store / "datasets" / "imagenet" / digest).glob("*/shard-*.json"))) == 6
    blocked.rmdir()
    again = cli(*args, env=env_with(ray_head), timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(1 prepared now, 6 reused)" in again.stdout
    assert imagenet_load.read_manifest(open_store(str(store)), digest)["shards"] == prepared["manifest"]["shards"]
