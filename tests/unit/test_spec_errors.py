"""Bad specs end as one line naming the field and what is allowed, no traceback: load_spec on hostile
spec files and overrides (`plan` as a process on the same files: tests/store/test_spec_errors_cli.py)."""
import re
import time
from pathlib import Path

import pytest
from hostile_specs import DEMO_TEXT, HOSTILE, LONG_LINE, bomb, flow_bomb, nested

import orchestrator.spec.loading as spec_loading
from orchestrator.spec import SpecError, load_spec
from orchestrator.spec.loading import MAX_SPEC_BYTES
from orchestrator.spec.schema import excerpt

ROOT = Path(__file__).resolve().parents[2]


# --- hostile spec files: bounded in size, time and message length ------------------------------------
@pytest.mark.parametrize("label,data,expected", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_spec_file_load_spec(tmp_path, monkeypatch, label, data, expected):
    """load_spec itself: SpecError, one short line, quickly, and nothing written anywhere."""
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        load_spec(path)
    seconds = time.perf_counter() - start
    message = str(info.value)
    assert "\n" not in message and len(message) < LONG_LINE, message[:2000]
    assert message.startswith(f"{path}: ")
    assert seconds < 10, f"{label}: {seconds:.1f} s"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cwd", "spec.yaml"] and not any(work.iterdir())


@pytest.mark.parametrize("label,text,expected", [
    ("alias bomb", bomb(), "too many YAML aliases/nodes"),
    ("recursive alias", "a: &a [*a]\n", "recursive YAML alias *a"),
    ("nested 40 deep", nested(40), "nested more than 32 levels deep"),
    ("deep flow nesting", "a: " + "[" * 5000 + "]" * 5000 + "\n", "line 1 column"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "")
def test_limits_without_libyaml(tmp_path, monkeypatch, label, text, expected):
    """The pure-Python loader (PyYAML without libyaml) keeps the same limits."""
    monkeypatch.setattr(spec_loading, "CParser", None)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=re.escape(expected)) as info:
        load_spec(path)
    assert "\n" not in str(info.value)


def test_large_but_allowed_spec_loads_fast(tmp_path):
    """Just under 1 MB of comments around a real spec is fine, and quick."""
    path = tmp_path / "spec.yaml"
    path.write_text(DEMO_TEXT + "".join(f"# comment {i:07d} " + "-" * 60 + "\n" for i in range(12_000)))
    assert path.stat().st_size <= MAX_SPEC_BYTES
    start = time.perf_counter()
    assert load_spec(path).name == "demo"
    assert time.perf_counter() - start < 10


def test_aliases_a_spec_uses_still_work(tmp_path):
    path = tmp_path / "spec.yaml"
    text = DEMO_TEXT.replace("layers: [1, 4, 7]", "layers: &cuts [1, 4, 7]", 1)
    path.write_text(text.replace("layers: [1, 4, 7]", "layers: *cuts"))
    assert path.read_text().count("*cuts") == 2
    spec = load_spec(path)
    assert spec.layers == (1, 4, 7) and all(s.layers == (1, 4, 7) for s in spec.splits[1:])


@pytest.mark.parametrize("item,expected", [
    ("train.epochs=[1", "--set train.epochs: value '[1': line 1 column 3: malformed YAML"),
    ("train.epochs=" + "[" * 5000, "nested more than 32 levels deep"),
    ("train.epochs=" + flow_bomb("i"), "too many YAML aliases/nodes"),
    ("train.epochs=2001-13-45", "cannot read this value: month must be in 1..12"),
    ("train.epochs=" + "q" * 10_000, "train.epochs: input should be a valid number"),
    ("x" * 10_000, "--set 'xxxx"),
    ('name="a\\nb"', r"(got 'a\nb')"),
    ("name=a\nb", "(got 'a b')"),  # a plain YAML scalar folds the newline
    ("name=\udcff", r"character #xdcff is not allowed"),  # a non-UTF-8 byte in argv
])
def test_bad_override_is_one_short_line(item, expected):
    with pytest.raises(SpecError) as info:
        load_spec(ROOT / "sweeps" / "demo.yaml", (item,))
    message = str(info.value)
    assert "\n" not in message and len(message) < LONG_LINE, message[:2000]
    assert expected in message, message


def test_unreadable_spec(tmp_path, monkeypatch):
    path = tmp_path / "spec.yaml"
    path.write_text(DEMO_TEXT)

    def refuse(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "open", refuse)  # chmod does not stop root, which CI may be
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{path}: cannot read the spec file: Permission denied"


def test_path_with_newline_stays_one_line(tmp_path):
    path = tmp_path / "a\nb.yaml"
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert str(info.value) == f"{tmp_path}/a\\nb.yaml: spec file not found"


def test_excerpt():
    assert excerpt("short") == "'short'"
    long = excerpt("x" * 10_000)
    assert len(long) == 80 and long.startswith("'xxx") and long.endswith("...")
    assert excerpt("a\nb\x1b") == r"'a\nb\x1b'"
    nested = excerpt([["y" * 1000] * 1000] * 1000)
    assert len(nested) <= 80 and nested.endswith("...")
