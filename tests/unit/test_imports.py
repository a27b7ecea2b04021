"""The import rules, checked on the source: who may import whom, and no cycles anywhere.

- sweepcore (the shared layer: store, records, settings, vocabulary) imports neither torch, Ray,
  `orchestrator` nor `workers`;
- workers never import Ray or `orchestrator`; orchestrator never imports torch;
- in the orchestrator, Ray is imported only under orchestrator/execution/;
- the orchestrator reaches `workers` only from the two execution modules that ship work to Ray
  (trainable: the trials; prepare: the data-preparation tasks), and only inside functions, so that
  importing them never imports torch;
- the graph of imports between the project's modules (lazy ones included) has no cycle;
- every arrow the README's architecture picture draws is an import (or is labelled as order of work).
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("orchestrator", "workers", "sweepcore")
EXECUTION = "orchestrator.execution"  # the one folder of the driver that may import Ray
SHIPS_TO_RAY = ("orchestrator.execution.trainable", "orchestrator.execution.prepare")  # may reach workers


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (a project submodule when `from pkg import sub` names one)
    function: str | None  # the enclosing function, None at module level
    line: int


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    return {module_name(p, root): p for pkg in packages for p in sorted((root / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    """Every import statement of a module, with the function it sits in (if any)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, function: str | None) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Import):
                found.extend(Import(name, a.name, function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    sub = f"{base}.{alias.name}"
                    found.append(Import(name, sub if sub in known else base, function, child.lineno))
            visit(child, inner)
    visit(tree, None)
    return found


def all_imports(root: Path = ROOT, packages=PACKAGES) -> list[Import]:
    modules = project_modules(root, packages)
    return [imp for name, path in modules.items() for imp in imports_of(name, path, set(modules))]


def top(target: str) -> str:
    return target.split(".")[0]


def rule_violations(imports: list[Import]) -> list[str]:
    """Each import that breaks a layering rule, as 'module:line imports target (rule)'."""
    bad = []
    for imp in imports:
        side, target = top(imp.module), top(imp.target)
        where = f"{imp.module}:{imp.line} imports {imp.target}"
        if side == "sweepcore" and target in ("torch", "ray", "orchestrator", "workers"):
            bad.append(f"{where} (the shared layer imports neither torch, Ray nor either side)")
        if side == "workers" and target in ("ray", "orchestrator"):
            bad.append(f"{where} (workers never import Ray or the orchestrator)")
        if side == "orchestrator" and target == "torch":
            bad.append(f"{where} (the orchestrator never imports torch)")
        if side == "orchestrator" and target == "ray" and not (imp.module + ".").startswith(EXECUTION + "."):
            bad.append(f"{where} (Ray is imported only under orchestrator/execution/)")
        if side == "orchestrator" and target == "workers":
            if imp.module not in SHIPS_TO_RAY:
                bad.append(f"{where} (the orchestrator reaches workers only from the modules that ship work to "
                           f"Ray: {', '.join(SHIPS_TO_RAY)})")
            elif imp.function is None:
                bad.append(f"{where} (workers are imported inside functions only: importing {imp.module} must "
                           "not import torch)")
    return bad


def find_cycle(imports: list[Import]) -> list[str] | None:
    """One cycle in the graph of imports between project modules, as [a, b, ..., a]; None if acyclic."""
    modules = {imp.module for imp in imports}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if imp.target in modules and imp.target != imp.module:
            graph[imp.module].add(imp.target)
    state: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


# --- the project's own code ------------------------------------------------------------------------
def test_every_project_module_is_seen():
    modules = project_modules(ROOT)
    assert {"sweepcore.store", "sweepcore.store.base", "sweepcore.records", "sweepcore.settings",
            "sweepcore.vocabulary", "orchestrator.cli", "orchestrator.execution.schedule", "workers.trial",
            "workers.imagenet.load", "workers.imagenet.prepare"} <= set(modules)


def test_the_layering_rules_hold():
    assert rule_violations(all_imports()) == []


def test_there_is_no_import_cycle():
    assert find_cycle(all_imports()) is None


def test_ray_and_workers_are_reached_only_where_the_rules_say():
    imports = all_imports()
    ray_users = sorted({i.module for i in imports if top(i.module) == "orchestrator" and top(i.target) == "ray"})
    assert ray_users and all(m.startswith(EXECUTION + ".") for m in ray_users), ray_users
    to_workers = sorted({i.module for i in imports if top(i.module) == "orchestrator" and top(i.target) == "workers"})
    assert to_workers == sorted(SHIPS_TO_RAY)


# --- the checker itself: it must catch what it is for ----------------------------------------------
def _package(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return all_imports(tmp_path, PACKAGES)


BASE = {"orchestrator/__init__.py": "", "workers/__init__.py": "", "sweepcore/__init__.py": ""}


def test_a_cycle_is_found_lazy_imports_and_relative_ones_included(tmp_path):
    imports = _package(tmp_path, {**BASE,
                                  "orchestrator/a.py": "from orchestrator import b\n",
                                  "orchestrator/b.py": "def f():\n    from . import c\n",
                                  "orchestrator/c.py": "import orchestrator.a\n"})
    assert find_cycle(imports) == ["orchestrator.a", "orchestrator.b", "orchestrator.c", "orchestrator.a"]


@pytest.mark.parametrize("module, text, rule", [
    ("sweepcore/x.py", "import torch\n", "the shared layer imports neither"),
    ("sweepcore/x.py", "def f():\n    from orchestrator.spec import plan\n", "the shared layer imports neither"),
    ("workers/x.py", "def f():\n    import ray\n", "workers never import Ray"),
    ("workers/x.py", "from orchestrator.spec.plan import make_plan\n", "workers never import Ray or the orchestrator"),
    ("orchestrator/x.py", "def f():\n    import torch.nn\n", "the orchestrator never imports torch"),
    ("orchestrator/x.py", "from workers.trial import run_trial\n", "only from the modules that ship work"),
    ("orchestrator/x.py", "def helper():\n    from workers import data\n", "only from the modules that ship work"),
    ("orchestrator/execution/trainable.py", "from workers import trial\n", "inside functions only"),
    ("orchestrator/x.py", "def f():\n    import ray\n", "only under orchestrator/execution/"),
    ("orchestrator/cli/x.py", "from ray import tune\n", "only under orchestrator/execution/"),
])
def test_each_rule_catches_its_violation(tmp_path, module, text, rule):
    violations = rule_violations(_package(tmp_path, {**BASE, module: text}))
    assert len(violations) == 1 and rule in violations[0], violations


def test_what_the_rules_allow_is_allowed(tmp_path):
    files = {**BASE, "orchestrator/execution/__init__.py": "",
             "orchestrator/execution/trainable.py": "import ray\n\ndef _trainable(c):\n    from workers import trial\n",
             "orchestrator/execution/prepare.py": "def scan():\n    import workers.data\n"}
    assert rule_violations(_package(tmp_path, files)) == []


def readme_picture(root: Path = ROOT) -> str:
    text = (root / "README.md").read_text()
    return text.split("## Architecture", 1)[1].split("```", 2)[1]


IMPORT_ARROW, WORK_ARROW = "─►", re.compile(r"══[^═]+══►")  # an import; order of work, with its label


def picture_arrows(picture: str, packages=PACKAGES) -> list[tuple[str, str, str]]:
    """Every import arrow the picture draws, as (from, to, line): names resolved to module or package
    names. A line at column 0 opens a package's section; `sub/:` at the start of a line puts its names
    in that sub-package; `a · b ─► c · d` draws an arrow from each left name to each right name;
    parenthesised text is prose; `══ label ══►` is order of work, not an import."""
    arrows = []
    section = ""
    for line in picture.splitlines():
        if line and not line.startswith(" "):
            section = line.split("/")[0]
            continue
        body = re.sub(r"\([^)]*\)", " ", line)
        context = section
        if (m := re.match(r"\s*([a-z_]+)/:", body)):
            context, body = f"{section}.{m.group(1)}", body[m.end():]
        for part in WORK_ARROW.split(body):
            groups = [[n.strip() for n in g.split("·") if n.strip()] for g in part.split(IMPORT_ARROW)]
            for left, right in zip(groups, groups[1:]):
                arrows += [(resolve(a, context, packages), resolve(b, context, packages), line.strip())
                           for a in left for b in right]
    return arrows


def resolve(name: str, context: str, packages=PACKAGES) -> str:
    """A picture's name as a module path: a top-level package, else inside the line's sub-package
    or section ('x/' is a package, 'x' a module)."""
    bare = name.rstrip("/")
    return bare if bare in packages else f"{context}.{bare}"


def _inside(module: str, node: str) -> bool:
    return module == node or module.startswith(node + ".")


def false_arrows(picture: str, imports: list[Import], packages=PACKAGES) -> list[str]:
    """The arrows of the picture that no import draws, as 'line: a ─► b'."""
    return [f"{line}: {a} ─► {b}" for a, b, line in picture_arrows(picture, packages)
            if not any(_inside(i.module, a) and _inside(i.target, b) and not _inside(i.target, a) for i in imports)]


def test_the_readme_architecture_picture_names_every_module_and_nothing_else():
    picture = readme_picture()
    for name in project_modules(ROOT):
        parts = name.split(".")
        if len(parts) == 1:
            assert f"{name}/" in picture, f"folder {name}/ missing from the README's architecture picture"
        elif parts[-1] not in ("__init__", "__main__") and name not in ("sweepcore.store", "workers.imagenet"):
            assert re.search(rf"(?<![\w(]){parts[-1]}\b", picture), f"module {name} missing from the README's picture"
    folders = {line.split("/")[0] for line in picture.splitlines() if line and not line.startswith(" ")}
    assert folders == set(PACKAGES)


def test_every_arrow_of_the_readme_picture_is_an_import():
    picture = readme_picture()
    arrows = picture_arrows(picture)
    assert len(arrows) > 40, "the picture's arrows were not found"
    modules = set(project_modules(ROOT)) | set(PACKAGES)
    assert [a for a in arrows if a[0] not in modules or a[1] not in modules] == []
    assert false_arrows(picture, all_imports()) == []


def test_a_false_arrow_in_the_picture_is_caught(tmp_path):
    imports = _package(tmp_path, {**BASE, "orchestrator/cli/__init__.py": "", "orchestrator/cli/a.py": "",
                                  "orchestrator/spec/__init__.py": "",
                                  "orchestrator/spec/b.py": "from orchestrator.cli import a\n"})
    picture = ("\norchestrator/   prose\n  cli/ ─► spec/   (reversed)\n  spec/ ─► cli/\n"
               "  cli/ ══ Ray runs it ══► workers/\n  spec/: b ─► c (absent)\n")
    assert false_arrows(picture, imports) == ["cli/ ─► spec/   (reversed): orchestrator.cli ─► orchestrator.spec",
                                              "spec/: b ─► c (absent): orchestrator.spec.b ─► orchestrator.spec.c"]
