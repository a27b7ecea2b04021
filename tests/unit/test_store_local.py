"""The store without a server: a local folder's own rules (first open, refusals, crashed commits,
symlinks), URIs refused before any connection, and the create-only probe against a tiny S3 stub on a
loopback thread. Both backends with a real S3 server (SeaweedFS): tests/store/test_store.py."""
from __future__ import annotations

import os
import threading

import pytest
from result_rows import make_row

from sweepcore import records
from sweepcore import store as st
from sweepcore.store import StoreError, open_store

try:
    from tests.s3_server import AWS_ENV_TO_CLEAR
except ImportError:
    from s3_server import AWS_ENV_TO_CLEAR


# --- local only -------------------------------------------------------------------------------
def test_local_open_creates_the_folder_on_first_run(tmp_path):
    target = tmp_path / "new" / "store"
    open_store(str(target), check=False)
    assert not (tmp_path / "new").exists()  # no check: nothing created until a write
    store = open_store(str(target))
    assert target.is_dir() and store.list("") == []
    again = open_store(f"file://{target}")
    store.write_bytes("x.bin", b"x")
    assert again.read_bytes("x.bin") == b"x" and again.uri("x.bin") == str(target / "x.bin")


def test_local_open_refuses_files_and_creates_nothing(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StoreError, match="is not a directory") as info:
        open_store(str(tmp_path / "file"))
    assert "\n" not in str(info.value) and str(tmp_path / "file") in str(info.value)
    with pytest.raises(StoreError, match="not a directory"):
        open_store(str(tmp_path / "file" / "sub" / "store"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_local_open_refuses_unwritable_parent(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    with pytest.raises(StoreError, match="not writable"):
        open_store(str(locked / "store"))
    assert list(locked.iterdir()) == []


def test_local_crashed_commit_leftover_is_invisible(tmp_path):
    """A writer killed between temp write and link leaves a temp file: readers must not see it."""
    import pandas
    store = open_store(str(tmp_path))
    records.commit_result(store, make_row("k1"))
    (tmp_path / "results" / f"{st.local.TMP_PREFIX}0123-k2.parquet").write_bytes(b"PAR1 half a file")
    assert records.committed_keys(store) == {"k1"} and store.list("results") == ["results/k1.parquet"]
    assert pandas.read_parquet(store.uri("results"))["key"].tolist() == ["k1"]


def test_unsupported_scheme_is_one_clear_line():
    with pytest.raises(StoreError, match="unsupported store URI scheme 'gs'"):
        open_store("gs://bucket/prefix")


# --- S3 only ----------------------------------------------------------------------------------
@pytest.mark.parametrize("uri", ["s3://AKIDEXAMPLE:sup3rs3cretvalue@bucket/prefix",
                                 "s3://bucket/prefix?access_key=AKIDEXAMPLE&secret_key=sup3rs3cretvalue",
                                 "s3://bucket/prefix?session_token=sup3rs3cretvalue"])
def test_uri_with_secret_is_rejected_without_echo(uri):
    with pytest.raises(StoreError) as info:
        open_store(uri)
    message = str(info.value)
    assert message.startswith("store URI must not contain credentials")
    assert "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY" in message
    assert "sup3rs3cretvalue" not in message and "AKIDEXAMPLE" not in message


class StubS3:
    """A tiny S3 on loopback (path-style: /bucket/key) for servers the real one cannot imitate:
    ListObjectsV2 (always empty), PutObject, GetObject, HeadObject, DeleteObject. With
    `honour_if_none_match=False` every PUT overwrites, as on servers that ignore If-None-Match."""

    def __init__(self, honour_if_none_match: bool):
        import http.server
        stub = self
        self.honour = honour_if_none_match
        self.objects: dict[str, bytes] = {}
        self.puts: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def reply(self, status, body=b"", content_type="application/xml"):
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def error(self, status, code):
                self.reply(status, f"<Error><Code>{code}</Code><Message>{code}</Message></Error>".encode())

            def key(self):
                return self.path.split("?", 1)[0].lstrip("/")

            def do_GET(self):
                if "list-type=2" in self.path:
                    self.reply(200, b'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult '
                                    b'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>bucket</Name>'
                                    b"<KeyCount>0</KeyCount><MaxKeys>1</MaxKeys>"
                                    b"<IsTruncated>false</IsTruncated></ListBucketResult>")
                elif self.key() in stub.objects:
                    self.reply(200, stub.objects[self.key()], "application/octet-stream")
                else:
                    self.error(404, "NoSuchKey")

            do_HEAD = do_GET

            def do_PUT(self):
                data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.puts.append(self.key())
                if stub.honour and self.headers.get("If-None-Match") == "*" and self.key() in stub.objects:
                    self.error(412, "PreconditionFailed")
                    return
                stub.objects[self.key()] = data
                self.reply(200)

            def do_DELETE(self):
                stub.objects.pop(self.key(), None)
                self.reply(204)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def stub_s3(request, monkeypatch, tmp_path):
    """A StubS3 (parametrize indirectly with honour_if_none_match), any credentials, no AWS env."""
    for name in AWS_ENV_TO_CLEAR + ("AWS_ENDPOINT_URL",):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"AWS_ACCESS_KEY_ID": "AKSTUBSTUBSTUB", "AWS_SECRET_ACCESS_KEY": "stub-secret-value",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                        "AWS_CONFIG_FILE": str(tmp_path / "no-aws-config"),
                        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "no-aws-credentials")}.items():
        monkeypatch.setenv(name, value)
    server = StubS3(request.param)
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize("stub_s3", [False], indirect=True)
def test_s3_open_refuses_a_server_that_ignores_if_none_match(stub_s3):
    with pytest.raises(StoreError) as info:
        open_store("s3://bucket/prefix", endpoint=stub_s3.endpoint)
    message = str(info.value)
    assert "\n" not in message and stub_s3.endpoint in message and "If-None-Match" in message
    assert "exactly-once" in message and "conditional writes" in message
    assert len(stub_s3.puts) == 2 and stub_s3.puts[0].startswith("bucket/prefix/" + st.s3.PROBE_PREFIX)
    assert stub_s3.objects == {}  # the probe is deleted on failure too
    with pytest.raises(StoreError, match="If-None-Match"):  # the next checked open proves it again
        open_store("s3://bucket/prefix", endpoint=stub_s3.endpoint)
    assert len(stub_s3.puts) == 4 and stub_s3.objects == {}
    store = open_store("s3://bucket/prefix", endpoint=stub_s3.endpoint, check=False)
    assert store.commit_bytes("results/x.bin", b"one") and store.commit_bytes("results/x.bin", b"two")


@pytest.mark.parametrize("stub_s3", [True], indirect=True)
def test_s3_open_accepts_a_server_that_honours_if_none_match(stub_s3):
    store = open_store("s3://bucket/prefix", endpoint=stub_s3.endpoint)
    assert len(stub_s3.puts) == 2 and stub_s3.objects == {}
    assert store.commit_bytes("results/x.bin", b"one") is True
    assert store.commit_bytes("results/x.bin", b"two") is False
    open_store("s3://bucket/prefix", endpoint=stub_s3.endpoint, check=False)  # unchecked: no probe
    assert len(stub_s3.puts) == 4


def test_local_store_never_follows_a_symlink_out_of_its_folder(tmp_path):
    store = open_store(str(tmp_path / "store"))
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "dotfile"
    secret.write_bytes(b"precious")
    (tmp_path / "store" / "results").mkdir()
    (tmp_path / "store" / "results" / "x.bin").symlink_to(secret)     # a file link leading out
    (tmp_path / "store" / "linked").symlink_to(outside, target_is_directory=True)  # a folder link
    attempts = [("read", lambda p: store.read_bytes(p)), ("write", lambda p: store.write_bytes(p, b"evil")),
                ("commit", lambda p: store.commit_bytes(p, b"evil")), ("delete", store.delete),
                ("read", store.exists), ("read", store.local_path)]
    for path in ("results/x.bin", "linked/dotfile", "linked/new.bin"):
        for op, call in attempts:
            with pytest.raises(StoreError) as info:
                call(path)
            message = str(info.value)
            assert "\n" not in message and f"refusing to {op} " in message and "outside" in message
            assert str(tmp_path / "store" / path) in message
    with pytest.raises(StoreError, match="refusing to list"):
        store.list("linked")
    assert secret.read_bytes() == b"precious" and sorted(p.name for p in outside.iterdir()) == ["dotfile"]
    assert (tmp_path / "store" / "results" / "x.bin").is_symlink()
    assert store.list("") == ["results/x.bin"]  # the walk does not enter the linked folder
    # links that stay inside the store work as before
    store.write_bytes("data/real.bin", b"inside")
    (tmp_path / "store" / "alias").symlink_to(tmp_path / "store" / "data", target_is_directory=True)
    (tmp_path / "store" / "data" / "same.bin").symlink_to(tmp_path / "store" / "data" / "real.bin")
    assert store.read_bytes("alias/real.bin") == b"inside" and store.read_bytes("data/same.bin") == b"inside"
    assert store.list("alias") == ["alias/real.bin", "alias/same.bin"]
    store.write_bytes("alias/new.bin", b"new")
    assert (tmp_path / "store" / "data" / "new.bin").read_bytes() == b"new"
