"""Reading a spec: a file (or the bytes a store holds) and --set overrides into a validated SweepSpec.

`load_spec` turns every problem (missing file, malformed YAML, a bad field) into one `SpecError` line
that names the file, the field and the allowed values. A spec file is user input, so reading it is
bounded: at most `MAX_SPEC_BYTES` are read, the text must be UTF-8, and the YAML may hold at most
`MAX_YAML_NODES` nodes (an alias counts as a copy of what it names, which stops "billion laughs"
documents) nested at most `MAX_YAML_DEPTH` deep.
"""
from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

from orchestrator.spec.schema import EXCERPT_CHARS, SpecError, SweepSpec, clip, excerpt, oneline

MAX_SPEC_BYTES = 1_000_000  # "1 MB": the largest spec shipped is a few kB
MAX_YAML_NODES = 10_000  # a spec needs a few hundred; aliases count as copies of what they name
MAX_YAML_DEPTH = 32  # a spec nests about 5 deep


def load_spec(path: str | Path, overrides: tuple[str, ...] = ()) -> SweepSpec:
    """Read, override (`a.b=value`, value parsed as YAML) and validate a spec; SpecError on any problem."""
    path = Path(path)
    where = oneline(str(path))
    try:
        if not path.is_file():
            raise SpecError(f"{where}: spec file not found")
        with path.open("rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
            size = max(len(data), _file_size(f))
    except OSError as exc:
        raise SpecError(f"{where}: cannot read the spec file: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError(f"{where}: spec file is {size} bytes, larger than the 1 MB ({MAX_SPEC_BYTES} bytes) "
                        "a spec may be")
    raw = read_spec_mapping(data, where)
    for item in overrides:
        _apply_override(raw, item, where)
    return parse_spec(raw, source=where)


def read_spec_mapping(data: bytes, source: str) -> dict:
    """The mapping a spec's bytes hold, parsed with the bounded YAML loader; SpecError on any problem."""
    if len(data) > MAX_SPEC_BYTES:  # a store read stops at MAX_SPEC_BYTES + 1: "more than" is all it knows
        raise SpecError(f"{source}: spec is more than {MAX_SPEC_BYTES} bytes, larger than the 1 MB a spec may be")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None
    try:
        raw = _safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{source}: {_yaml_problem(exc, text)}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: a spec must be a YAML mapping of fields (name, dataset, splits, ...)")
    return raw


def _file_size(f) -> int:
    try:
        return os.fstat(f.fileno()).st_size
    except OSError:
        return 0


class _LimitExceeded(yaml.MarkedYAMLError):
    """The document is larger (in expanded nodes) or deeper than any spec needs."""


class _NodeLimits:
    """Composer and constructor hooks that refuse documents of more than MAX_YAML_NODES nodes or
    MAX_YAML_DEPTH levels.

    An alias counts as a copy of the node it names, so nested aliases ("billion laughs") are refused while
    they are composed, before anything is constructed or validated; a recursive alias is refused too. Values
    the constructor cannot turn into Python (a 13th month, a 5000-digit integer) become ConstructorErrors.
    """

    anchors: dict

    def _start_counting(self) -> None:
        self._nodes = 0
        self._depth = 0
        self._sizes: dict[str, int] = {}  # anchor -> nodes its node stands for, aliases expanded

    def compose_node(self, parent, index):
        event = self.peek_event()  # type: ignore[attr-defined]
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self.anchors and event.anchor not in self._sizes:
                raise _LimitExceeded(None, None, f"recursive YAML alias *{clip(event.anchor, 40)} "
                                     "(an alias inside the node it names)", event.start_mark)
            self._count(self._sizes.get(event.anchor, 0), event)
            return super().compose_node(parent, index)  # type: ignore[misc]
        self._count(1, event)
        first = self._nodes
        self._depth += 1
        if self._depth > MAX_YAML_DEPTH:
            raise _LimitExceeded(None, None, f"YAML nested more than {MAX_YAML_DEPTH} levels deep "
                                 "(a spec needs about 5)", event.start_mark)
        try:
            node = super().compose_node(parent, index)  # type: ignore[misc]
        finally:
            self._depth -= 1
        if event.anchor is not None:
            self._sizes[event.anchor] = self._nodes - first + 1
        return node

    def _count(self, nodes: int, event) -> None:
        self._nodes += nodes
        if self._nodes > MAX_YAML_NODES:
            raise _LimitExceeded(None, None, f"too many YAML aliases/nodes (limit {MAX_YAML_NODES}, "
                                 "an alias counting as a copy of what it names)", event.start_mark)

    def construct_object(self, node, deep=False):
        try:
            return super().construct_object(node, deep=deep)  # type: ignore[misc]
        except (ValueError, OverflowError) as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {exc}",
                                                    node.start_mark) from None


class _BoundedLoader(_NodeLimits, yaml.SafeLoader):
    """yaml.SafeLoader with the node, depth and value limits; pure Python (used for --set values)."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._start_counting()


try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml: the pure-Python loader does it all, more slowly
    CParser = None

if CParser is not None:
    class _FastBoundedLoader(_NodeLimits, Composer, CParser, SafeConstructor, Resolver):
        """The same loader with libyaml's scanner and parser under PyYAML's (bounded) composer.

        Scanning is where the pure-Python loader spends its time: 1 MB of comments or blank lines takes it
        about 2 s, libyaml 10 ms. Composing stays in Python so the node limit stops a document early.
        """

        def __init__(self, stream) -> None:
            CParser.__init__(self, stream)
            Composer.__init__(self)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            self._start_counting()


def _safe_load(text: str, fast: bool = True):
    """yaml.safe_load with the limits; `fast` uses libyaml where PyYAML has it (text must be valid UTF-8)."""
    loader = _FastBoundedLoader(text) if fast and CParser is not None else _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(exc: yaml.YAMLError, text: str) -> str:
    """A YAML error as `line L column C: what`, on one line, the input in it cut short."""
    if isinstance(exc, yaml.reader.ReaderError):
        # PyYAML's reader counts characters, libyaml's counts bytes
        at = exc.position if exc.encoding == "unicode" else len(text.encode()[:exc.position].decode(errors="ignore"))
        line = text.count("\n", 0, at) + 1
        column = at - (text.rfind("\n", 0, at) + 1) + 1
        char = f"#x{exc.character:04x}" if isinstance(exc.character, int) else excerpt(exc.character, 12)
        return f"line {line} column {column}: character {char} is not allowed in YAML"
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
    if isinstance(exc, _LimitExceeded):  # our own words, short already
        return f"{where}{exc.problem}"
    problem = getattr(exc, "problem", None) or "not valid YAML"
    context = getattr(exc, "context", None)
    return f"{where}malformed YAML: {clip(f'{context}, {problem}' if context else problem, 120)}"


def parse_spec(raw: dict, source: str = "spec") -> SweepSpec:
    """Validate a spec mapping; SpecError names the field and the allowed values."""
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{source}: {_describe(exc)}") from None


def _apply_override(raw: dict, item: str, where: str) -> None:
    if "=" not in item:
        raise SpecError(f"--set {excerpt(item)}: expected FIELD=VALUE, e.g. train.epochs=2")
    dotted, value = item.split("=", 1)
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise SpecError(f"--set {clip(dotted)}: {clip(part)} is not a mapping in {where}")
    try:
        node[parts[-1]] = _safe_load(value, fast=False)  # argv may hold surrogates libyaml refuses
    except yaml.YAMLError as exc:
        raise SpecError(f"--set {clip(dotted)}: value {excerpt(value)}: {_yaml_problem(exc, value)}") from None


def _describe(exc: ValidationError) -> str:
    """The first validation error as one line: the field path, what is wrong, what is allowed."""
    err = exc.errors()[0]
    loc = _loc(err["loc"])
    kind = err["type"]
    if kind == "extra_forbidden":
        parent = _model_at(SweepSpec, err["loc"][:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see the spec reference"
        return f"{loc}: unknown field (allowed: {allowed})"
    if kind == "missing":
        return f"{loc}: required field is missing"
    msg = err["msg"].removeprefix("Value error, ")
    if kind == "literal_error":
        return f"{loc}: {excerpt(err['input'])} is not allowed ({msg.replace('Input should be', 'allowed:')})"
    if kind.endswith("_type") or kind.endswith("_parsing"):
        return f"{loc}: {msg.lower()} (got {excerpt(err['input'])})"
    # our own validators excerpt what they echo; the cut is a backstop for pydantic's messages
    msg = clip(msg, 4 * EXCERPT_CHARS)
    return f"{loc}: {msg}" if loc else msg


def _loc(parts) -> str:
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif p in ("function-after[_split_strings(), tuple[SplitSpec, ...]]",):
            continue
        else:
            name = clip(str(p), EXCERPT_CHARS // 2)
            out += f".{name}" if out else name
    return out


def _model_at(model, loc) -> type[BaseModel] | None:
    """The pydantic model class at a location path, to list the fields it allows."""
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        model = _inner_model(ann)
        if model is None:
            return None
    return model


def _inner_model(ann) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for arg in getattr(ann, "__args__", ()) or ():
        found = _inner_model(arg)
        if found:
            return found
    return None
