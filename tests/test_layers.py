"""The package's layers, checked on the source: no import cycle, and no import across the two sides.

Every ``import`` of an ``infp`` module is read from the source (module level and inside functions;
imports under ``if TYPE_CHECKING:`` are for type checkers only and do not count). The layers are
documented in docs/ARCHITECTURE.md:

  foundation  constants, errors, paths, weights, io, face, audio, modules, models, diffusion
  inference   runtime -> pipelines -> demo      (the inference core and what is built on it)
  training    data, lit, eval, launch, sweep    (corpora, LightningModules, measures)
  front       cli                               (may import anything)
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "infp"

FOUNDATION = {"constants", "errors", "paths", "weights", "io", "face", "audio", "modules", "models", "diffusion"}
INFERENCE = ["runtime", "pipelines", "demo"]  # each may import the ones before it
TRAINING = {"data", "lit", "eval", "launch", "sweep"}
FRONT = {"cli", "__init__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    return skip


def import_graph() -> dict[str, set[str]]:
    """Module -> the infp modules it imports."""
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in files.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in files else module for a in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t.split(".")[0] == "infp" and t != name)
        graph.setdefault(name, set())
    return graph


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _allowed(src: str, dst: str) -> bool:
    """May a module of group ``src`` import one of group ``dst``?"""
    if src == dst or dst in FOUNDATION:
        return True
    if src in FRONT:
        return True
    if src in INFERENCE:
        return dst in INFERENCE and INFERENCE.index(dst) < INFERENCE.index(src)
    if src in TRAINING:
        return dst in TRAINING
    return False  # the foundation imports nothing above it


def breaches(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for src, dsts in sorted(graph.items()):
        for dst in sorted(dsts):
            if not _allowed(_group(src), _group(dst)):
                out.append(f"{src} imports {dst}")
    return out


def test_every_package_is_placed_in_a_layer():
    groups = {_group(m) for m in import_graph()}
    assert groups <= FOUNDATION | set(INFERENCE) | TRAINING | FRONT, groups - (FOUNDATION | set(INFERENCE) | TRAINING | FRONT)


def test_no_import_cycle_in_the_package():
    assert _cycles(import_graph()) == []


def test_no_import_across_layers():
    assert breaches(import_graph()) == []


def test_the_checks_catch_a_cycle_and_a_breach():
    """The checker itself: a made-up graph with a cycle and a training -> inference import."""
    graph = {"infp.data.a": {"infp.runtime.b"}, "infp.runtime.b": {"infp.face.c"}, "infp.face.c": {"infp.runtime.b"}}
    assert _cycles(graph) == [["infp.face.c", "infp.runtime.b"]]
    assert breaches(graph) == ["infp.data.a imports infp.runtime.b", "infp.face.c imports infp.runtime.b"]
    assert "infp.data.sample_corpus" in import_graph()  # the real graph is read
