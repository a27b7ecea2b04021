"""Hostile spec files (size, aliases, nesting, bytes that are not text, long values) and what the one-line
error about each must say: tests/unit/test_spec_errors.py loads them with load_spec,
tests/store/test_spec_errors_cli.py runs `plan` on them as a process."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_TEXT = (ROOT / "sweeps" / "demo.yaml").read_text()
LONG_LINE = 400  # no error line is longer than this: the input is shown as a short excerpt at most


def bomb() -> str:
    """The classic "billion laughs": 296 bytes that stand for 9**9 strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, cur in zip("abcdefgh", "bcdefghi"):
        lines.append(f"{cur}: &{cur} [{','.join(['*' + prev] * 9)}]")
    return "\n".join(lines) + "\n"


def flow_bomb(last: str = "f") -> str:
    """The same in flow style, as one field's value: pydantic once echoed all of it in its error."""
    steps = [f"&{c} [{','.join(['*' + p] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi") if c <= last]
    return "[" + ",".join(['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', *steps]) + "]"


def nested(levels: int) -> str:
    return "".join(f"{' ' * i}k{i}:\n" for i in range(levels)) + f"{' ' * levels}leaf\n"


HOSTILE = [
    ("binary", bytes(range(256)), ["not UTF-8 text (byte 0x80 at offset 128)"]),
    ("latin-1", DEMO_TEXT.replace("name: demo", "name: d\xe9mo").encode("latin-1"),
     ["not UTF-8 text (byte 0xe9 at offset"]),
    ("5 MB of valid-looking YAML",
     (DEMO_TEXT + "".join(f"key{i}: value {i}\n" for i in range(400_000))).encode()[:5_000_000],
     ["spec file is 5000000 bytes", "larger than the 1 MB"]),
    ("alias bomb", bomb().encode(), ["too many YAML aliases/nodes (limit 10000"]),
    ("alias bomb as a field", DEMO_TEXT.replace("dataset: fashion-animals", "dataset: " + flow_bomb()).encode(),
     ["line 4 column", "too many YAML aliases/nodes (limit 10000"]),
    ("recursive alias", b"name: demo\nsplits: &s [*s]\n", ["recursive YAML alias *s"]),
    ("nested 40 deep", nested(40).encode(), ["nested more than 32 levels deep"]),
    ("20k-item list", ("seeds: [" + ",".join(["0"] * 20_000) + "]\n").encode(), ["too many YAML aliases/nodes"]),
    ("10 kB wrong type", DEMO_TEXT.replace("batch_size: 128", "batch_size: " + "x" * 10_000).encode(),
     ["train.batch_size", "valid integer", "(got 'xxxx", "...)"]),
    ("10 kB dataset", DEMO_TEXT.replace("dataset: fashion-animals", "dataset: " + "y" * 10_000).encode(),
     ["dataset: unknown dataset 'yyyy", "...", "(allowed: fashion-animals, imagenet, folder, parquet)"]),
    ("1000-char unknown key", (DEMO_TEXT + "z" * 1000 + ": 1\n").encode(), ["zzz...: unknown field (allowed: name,"]),
    ("name with newline", DEMO_TEXT.replace("name: demo", 'name: "a\\nb"').encode(),
     ["name: name must be", r"(got 'a\nb')"]),
    ("name ../x", DEMO_TEXT.replace("name: demo", 'name: "../x"').encode(), ["name: name must be", "(got '../x')"]),
    ("terminal escape in name", DEMO_TEXT.replace("name: demo", 'name: "\\e[31mred"').encode(),
     [r"(got '\x1b[31mred')"]),
    ("NUL character", DEMO_TEXT.replace("name: demo", "name: de\x00mo").encode(),
     ["line 3 column 9: character #x0000 is not allowed in YAML"]),
    ("month 13", (DEMO_TEXT + "store: 2001-13-45\n").encode(), ["cannot read this value: month must be in 1..12"]),
    ("5000-digit integer", (DEMO_TEXT + "max_concurrent: 1" + "0" * 5000 + "\n").encode(),
     ["cannot read this value"]),
    ("long undefined alias", (DEMO_TEXT + "retries: *" + "q" * 5000 + "\n").encode(), ["found undefined alias 'qqq"]),
]
