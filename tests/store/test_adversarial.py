"""A store writer who is not the user: tampering planted in a local store folder and in a SeaweedFS
bucket. Each attempt ends in one line and exit 2 where the command cannot go on, runs nothing the store
names, contacts no host the store names, and changes or loses nothing committed."""
from __future__ import annotations

import http.server
import importlib
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from s3_server import use_server_env
from sweep_helpers import CLI, ROOT, tiny_spec

from orchestrator.sources import record_spec
from orchestrator.spec import load_spec
from sweepcore.layout import spec_path
from sweepcore.store import open_store

TOKEN = "s3cr3t-token-for-the-tracking-server"


class Capture:
    """An HTTP server on loopback that records every request it gets (the attacker's tracking server)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                capture.requests.append(f"{self.command} {self.path} {self.headers.get('Authorization')}")
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = _record

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def capture():
    server = Capture()
    yield server
    server.close()


@pytest.fixture(params=["folder", "seaweedfs"])
def store_uri(request, tmp_path, monkeypatch):
    """A store the sweep was submitted to: a local folder, or a bucket on the real SeaweedFS server."""
    if request.param == "folder":
        return str(tmp_path / "store")
    server = request.getfixturevalue("s3_server")
    use_server_env(server, monkeypatch)
    return f"s3://{server.make_bucket()}/sweeps"


def _submitted(tmp_path: Path, store_uri: str, name: str = "victim"):
    """A sweep as `run`/`submit` leave it: its spec in the store, its digest on this machine."""
    spec = load_spec(tiny_spec(tmp_path, name), ()).model_copy(update={"store": store_uri})
    store = open_store(store_uri)
    record_spec(spec, store)
    return spec, store


def _tamper(store, name: str, change) -> bytes:
    raw = yaml.safe_load(store.read_bytes(spec_path(name)))
    change(raw)
    body = yaml.safe_dump(raw).encode()
    store.write_bytes(spec_path(name), body)
    return body


def _cli(*args, cwd=ROOT, extra_env=None) -> subprocess.CompletedProcess:
    env = {**os.environ, MLFLOW_TOKEN_ENV: TOKEN, **(extra_env or {})}
    return subprocess.run([*CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


MLFLOW_TOKEN_ENV = "MLFLOW_TRACKING_TOKEN"


def _one_line_refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("transfer-sweep: error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_a_tampered_tracking_uri_receives_nothing(tmp_path, store_uri, capture):
    spec, store = _submitted(tmp_path, store_uri)
    body = _tamper(store, "victim", lambda raw: raw.update(mlflow={"tracking_uri": capture.url, "experiment": "x"}))
    err = _one_line_refusal(_cli("resume", "victim", "--store", store_uri))
    assert f'mlflow.tracking_uri: (unset) -> "{capture.url}"' in err
    assert capture.requests == []  # the token never left: nothing was contacted at all
    assert store.read_bytes(spec_path("victim")) == body  # not written back, not "repaired" either
    assert not store.list("sweeps/victim/lease")
    # through the Jobs API path too: `resume --address URL` never recomputes the digest from the store
    err = _one_line_refusal(_cli("resume", "victim", "--store", store_uri, "--address", "http://127.0.0.1:9"))
    assert "is not the one submitted" in err and capture.requests == []


def test_a_stored_factory_is_never_imported(tmp_path, store_uri):
    spec, store = _submitted(tmp_path, store_uri)
    marker = tmp_path / "imported"
    if "://" not in store_uri:  # the attack on a folder store: code planted where the working dir finds it
        Path(store_uri, "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n"
                                              "def build(**kw):\n    raise SystemExit\n")
    planted = {"factory": "store.evil:build", "cut_points": ["a", "b", "c"]}
    _tamper(store, "victim", lambda raw: raw.update(model=planted))
    for trust in ((), ("--trust-stored-spec",)):
        err = _one_line_refusal(_cli("resume", "victim", "--store", store_uri, *trust, cwd=tmp_path))
        assert "model.factory" in err
    assert not marker.exists()


def test_a_factory_under_the_store_folder_is_refused_even_from_the_users_own_spec(tmp_path):
    marker = tmp_path / "imported"
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    spec = tiny_spec(tmp_path, "own")
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()), "model": {"factory": "store.evil:build"}}))
    for extra in ({}, {"PYTHONPATH": str(tmp_path)}):  # the working dir, then a path the user named
        proc = _cli("plan", str(spec), "--store", str(tmp_path / "store"), cwd=tmp_path, extra_env=extra)
        err = _one_line_refusal(proc)
        if extra:
            assert ("model.factory store.evil:build: factory 'store.evil:build': module 'store.evil' would be "
                    f"imported from {tmp_path / 'store'}, inside the store {tmp_path / 'store'}: code is never "
                    "imported from a store") in err, err
        else:  # the probe runs with -P: the working directory is not on its path at all
            assert "cannot import module 'store.evil': ModuleNotFoundError: No module named 'store'" in err, err
    assert not marker.exists()


def test_a_module_found_through_a_path_entry_nobody_named_is_refused_before_it_runs(tmp_path, monkeypatch):
    """What a Ray worker sees: the driver's working directory inserted into sys.path by Ray."""
    from workers.code_origin import check_module_origin
    marker = tmp_path / "imported"
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tmp_path / "mine.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    # tests/ is on the path and holds the tier folder tests/store, a namespace portion of `store` too:
    # only the planted store may be found here
    # (one setattr, undone as a whole: syspath_prepend's own undo would restore the filtered path)
    monkeypatch.setattr(sys, "path", [str(tmp_path)] + [p for p in sys.path
                                                         if not os.path.isdir(os.path.join(p or ".", "store"))])
    importlib.invalidate_caches()
    for name in ("store.evil", "mine"):
        with pytest.raises(ValueError, match=f"^module '{name}' would be imported from {tmp_path}, a working "
                                             "directory on the path, not installed code: install it, or put its "
                                             "folder on PYTHONPATH$"):
            check_module_origin(name)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the user names the folder: theirs, but not the store
    check_module_origin("mine", [str(tmp_path / "store")])
    with pytest.raises(ValueError, match="inside the store"):
        check_module_origin("store.evil", [str(tmp_path / "store")])
    check_module_origin("json")  # the standard library and installed packages pass
    check_module_origin("torch.nn")
    assert not marker.exists()


def test_workers_never_import_a_factory_from_the_store_folder_in_the_working_directory(tmp_path):
    """The high finding as it was: Ray puts the driver's working directory on the workers' path and
    the default store is ./store; a planted store/evil.py named by the spec ran on every worker."""
    marker = tmp_path / "imported"
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    spec = tiny_spec(tmp_path, "planted", treatments=["base"], retries=0)
    spec.write_text(yaml.safe_dump({**yaml.safe_load(spec.read_text()),
                                    "model": {"factory": "store.evil:build", "cut_points": ["a", "b", "c"]}}))
    proc = _cli("run", str(spec), cwd=tmp_path)  # the default store, ./store
    # The plan fingerprints the factory's module file, so the driver looks it up first: not on the path
    # it runs with (the working directory is not), it is refused before any worker starts.
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"transfer-sweep: error: {spec}: model.factory store.evil:build: factory 'store.evil:build': cannot import "
        "module 'store.evil': ModuleNotFoundError: No module named 'store'"], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists()
    assert not (tmp_path / "store" / "results").exists()  # nothing committed


def test_damaged_and_hostile_records_are_named_and_skipped_by_status_logs_and_report(tmp_path, store_uri):
    from orchestrator.spec.plan import make_plan
    from sweepcore import layout
    spec, store = _submitted(tmp_path, store_uri)
    trials = make_plan(spec).trials
    assert len(trials) >= 4
    first, second, third, fourth = (t.key for t in trials[:4])
    store.write_bytes(layout.progress_path(first), b"\xff not json")
    store.write_bytes(layout.heartbeat_path(second), b'{"at": "2999-01-01T00:00:00+00:00", "pid": 1}')
    store.write_bytes(f"{layout.failures_prefix(third)}/20260101T000000.000000Z-aaaaaaaa.json",
                      b'{"at": "2026-01-01T00:00:00+00:00", "error": "boom\\u001b]0;owned\\u0007\\nforged line", '
                      b'"where": "w", "traceback": "t"}')
    store.write_bytes(f"{layout.failures_prefix(third)}/20260101T000001.000000Z-bbbbbbbb.json", b"[1, 2]")
    store.write_bytes(layout.result_path(fourth), b"PAR1 not parquet")
    before = {p: store.read_bytes(p) for p in store.list("")}
    status = _cli("status", "victim", "--store", store_uri)
    assert status.returncode in (0, 1) and "Traceback" not in status.stderr, status.stderr
    out = status.stdout + status.stderr
    assert f"{store.uri(layout.progress_path(first))}: not a progress record (not JSON" in out, out
    assert "\x1b" not in out and "\x07" not in out and "boom\\x1b]0;owned\\x07\\x0aforged line" in out, out
    assert f"running {trials[1].name}" not in out  # a heartbeat from the future is no sign of life
    logs = _cli("logs", "victim", "--store", store_uri)
    assert logs.returncode == 0 and "Traceback" not in logs.stderr, logs.stderr
    assert "not a failure record (a JSON list, not an object)" in logs.stderr, logs.stderr
    assert "boom\\x1b]0;owned\\x07\\x0aforged line" in logs.stdout and "\x1b" not in logs.stdout
    report = _cli("report", "victim", "--store", store_uri, "--out", str(tmp_path / "report"))
    assert report.returncode == 0 and "Traceback" not in report.stderr, report.stderr
    assert f"{store.uri(layout.result_path(fourth))}: not a table" in report.stderr
    after = {p: store.read_bytes(p) for p in store.list("") if not p.startswith("sweeps/victim/report")}
    assert after == before  # read, never repaired or removed


@pytest.mark.parametrize("override, field, allowed", [
    ("train.lr=.inf", "train.lr", "finite number"),
    ("train.lr=.nan", "train.lr", "finite number"),
    ("seeds=[9223372036854775808]", "seeds[0]", "less than 9223372036854775808"),
    ("seeds=[-1]", "seeds[0]", "greater than or equal to 0"),
    ("store=s3://user:pw@bucket/x", "store", "must not contain credentials"),
    ("endpoint=http://user:pw@127.0.0.1:9000", "endpoint", "must not contain credentials"),
])
def test_values_that_validate_but_could_never_finish_or_would_leak_are_refused_by_field(override, field, allowed):
    """Each was accepted once: an infinite learning rate trained to NaN, a seed past int64 trained fully and
    never committed, a credential in the store URI was printed by `plan` and stored with the spec."""
    err = _one_line_refusal(_cli("plan", "sweeps/demo.yaml", "--set", override))
    assert f"sweeps/demo.yaml: {field}: " in err and allowed in err
    assert "pw" not in err
