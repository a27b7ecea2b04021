"""The shard cache across processes: concurrent trials on a node download a file once."""
import multiprocessing
import threading

from jpeg_shards import _fetch_in_process


def test_concurrent_trials_on_a_node_download_a_file_once(tmp_path):
    counter = tmp_path / "downloads"
    counter.touch()
    root = tmp_path / "cache"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_fetch_in_process, args=(root, counter)) for _ in range(3)]
    threads = [threading.Thread(target=_fetch_in_process, args=(root, counter)) for _ in range(2)]
    for p in procs + threads:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for t in threads:
        t.join(60)
    assert counter.read_text() == "x" and (root / "datasets/x/shard.bin").read_bytes() == b"shard bytes"
