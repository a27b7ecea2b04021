"""ImageNet through the command line: a bad source is one line and exit 2; a second prepare commits
nothing and never imports torch."""
import json
import subprocess
import sys

from imagenet_tree import ROOT, SHARD, _snapshot


def test_cli_reports_a_bad_source_with_exit_2_and_one_line(tmp_path):
    (tmp_path / "src" / "train").mkdir(parents=True)
    proc = subprocess.run([sys.executable, "-m", "orchestrator.cli", "data", "prepare", "imagenet", "--src",
                           str(tmp_path / "src"), "--store", str(tmp_path / "store")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"transfer-sweep: error: {tmp_path / 'src' / 'train'} has no class folders (expected train/<wnid>/*.JPEG)"]


# --- preparation ---------------------------------------------------------------------------------


def test_a_second_prepare_commits_nothing_and_never_imports_torch(prepared):
    folder = prepared["store"].uri()
    before = _snapshot(folder)
    code = ("import json, sys; from orchestrator.execution.prepare import prepare_imagenet; "
            "from sweepcore.store import StoreRef; "
            f"s = prepare_imagenet({str(prepared['src'])!r}, StoreRef({folder!r}), shard_size={SHARD}, inline=True, "
            "fmt='raw'); "
            "print(json.dumps([s['prepared'], s['reused'], s['hash'], 'torch' in sys.modules]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == [0, 7, prepared["manifest"]["hash"], False]
    assert _snapshot(folder) == before
