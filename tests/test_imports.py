"""The import rules, checked on the source: who may import whom, and no cycles anywhere.

- sweepcore (the shared layer: store, records, settings, vocabulary) imports neither torch, Ray,
  `orchestrator` nor `workers`;
- workers never import Ray or `orchestrator`; orchestrator never imports torch;
- orchestrator reaches `workers` only inside the functions Ray runs for it (trainable's `_trainable`,
  prepare's `_*_task`), imported lazily there;
- the graph of imports between the project's modules (lazy ones included) has no cycle.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workers", "sweepcore")
RAY_ENTRY_FUNCTIONS = ("_trainable",)  # plus every function named *_task


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
        if side == "orchestrator" and target == "workers":
            fn = imp.function or ""
            if not (fn in RAY_ENTRY_FUNCTIONS or fn.endswith("_task")):
                bad.append(f"{where} (the orchestrator reaches workers only in the functions Ray runs: "
                           f"_trainable, *_task; this is in {fn or 'module level'})")
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
            "sweepcore.vocabulary", "orchestrator.cli", "orchestrator.schedule", "workers.trial",
            "workers.imagenet.load", "workers.imagenet.prepare"} <= set(modules)


def test_the_layering_rules_hold():
    assert rule_violations(all_imports()) == []


def test_there_is_no_import_cycle():
    assert find_cycle(all_imports()) is None


def test_the_orchestrator_reaches_workers_only_through_ray_entry_points():
    entries = sorted({(i.module, i.function) for i in all_imports()
                      if top(i.module) == "orchestrator" and top(i.target) == "workers"})
    prepare = ["_fashion_animals_task", "_image_set_jobs_task", "_image_set_manifest_task", "_image_set_merge_task",
               "_image_set_scan_task", "_image_set_shard_task", "_merge_task", "_scan_task", "_shard_task"]
    assert entries == [("orchestrator.prepare", f) for f in prepare] + [("orchestrator.trainable", "_trainable")]


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
    ("sweepcore/x.py", "def f():\n    from orchestrator import plan\n", "the shared layer imports neither"),
    ("workers/x.py", "def f():\n    import ray\n", "workers never import Ray"),
    ("workers/x.py", "from orchestrator.plan import make_plan\n", "workers never import Ray or the orchestrator"),
    ("orchestrator/x.py", "def f():\n    import torch.nn\n", "the orchestrator never imports torch"),
    ("orchestrator/x.py", "from workers.trial import run_trial\n", "this is in module level"),
    ("orchestrator/x.py", "def helper():\n    from workers import data\n", "this is in helper"),
])
def test_each_rule_catches_its_violation(tmp_path, module, text, rule):
    violations = rule_violations(_package(tmp_path, {**BASE, module: text}))
    assert len(violations) == 1 and rule in violations[0], violations


def test_imports_inside_ray_entry_points_are_allowed(tmp_path):
    text = "def _trainable(c):\n    from workers import trial\n\ndef _load_task():\n    import workers.data\n"
    assert rule_violations(_package(tmp_path, {**BASE, "orchestrator/x.py": text})) == []


def test_the_readme_architecture_picture_names_every_module_and_nothing_else():
    text = (ROOT / "README.md").read_text()
    picture = text.split("## Architecture", 1)[1].split("```", 2)[1]
    for name in project_modules(ROOT):
        parts = name.split(".")
        if len(parts) == 1:
            assert f"{name}/" in picture, f"folder {name}/ missing from the README's architecture picture"
        elif parts[-1] != "__init__" and name not in ("sweepcore.store", "workers.imagenet"):
            assert parts[-1] in picture, f"module {name} missing from the README's architecture picture"
    folders = {line.split("/")[0] for line in picture.splitlines() if line and not line.startswith(" ")}
    assert folders == set(PACKAGES)
