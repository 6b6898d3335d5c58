"""Imports point one way, down the layers of docs/architecture.md; no folder imports one above it.

`python tests/test_layering.py` prints the package-level import graph (what imports what, with the
number of import statements), the picture the test checks.
"""

from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "seekserve"

LAYERS: list[set[str]] = [
    {"errors", "env", "memory"},  # shared leaves: the error tree, SEEKSERVE_* settings, memory probes
    {"weights"},  # model files between machines: hub ids, verified resumable pulls, the mirror server
    {"layers"},  # attention over the paged cache, model building blocks, CPU kernels and their loader
    {"models"},  # model families, checkpoint formats
    {"quant"},  # weight quantization: transforms over models
    {"engine"},  # scheduler, block manager, model runner, sampler, engine loops
    {"metrics"},  # Prometheus metrics and the live monitor over the engine's stats
    {"search"},  # web-search grounding: providers, SSRF-safe fetching, extraction (server and gateway use it)
    {"host"},  # host checks and their fixes (`seekserve doctor`), the model folder's read speed included
    {"chat"},  # the chat page's files, served by the server and the gateway
    {"server", "llm", "bench", "gateway", "plan"},  # HTTP API, Python API, load generator, gateway, planning
    {"deploy", "stack"},  # Kubernetes manifests (reuse the gateway's config), the local process stack
    {"cli"},  # the command line
    {"__init__", "__main__"},  # the package's entry points (`seekserve.LLM`, `python -m seekserve`)
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def unit(path: Path) -> str:
    """The folder (or top-level module) a source file belongs to."""
    return path.relative_to(SRC).parts[0].removesuffix(".py")


def imported_units(path: Path) -> list[tuple[str, int]]:
    """(unit, line) of every seekserve import in a file, those inside functions included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "seekserve":  # `from seekserve import X`: a folder, or a name of __init__
                # (__version__ is a constant of the package root, which every import runs first)
                names = [f"seekserve.{a.name}" for a in node.names if a.name != "__version__"]
        names = [
            n if n.split(".")[1] in RANK else "seekserve.__init__"
            for n in names
            if n.startswith("seekserve.")
        ]
        found += [(n.split(".")[1], node.lineno) for n in names]
    return found


def import_graph() -> Counter[tuple[str, str]]:
    edges: Counter[tuple[str, str]] = Counter()
    for path in sorted(SRC.rglob("*.py")):
        for target, _ in imported_units(path):
            if target != unit(path):
                edges[unit(path), target] += 1
    return edges


def test_every_folder_has_a_layer() -> None:
    units = {unit(p) for p in SRC.rglob("*.py")}
    assert units <= RANK.keys(), f"give {sorted(units - RANK.keys())} a layer in LAYERS"


def test_no_module_imports_upward_or_sideways() -> None:
    wrong = []
    for path in sorted(SRC.rglob("*.py")):
        here = unit(path)
        for target, line in imported_units(path):
            sideways = RANK[target] == RANK[here] and target != here and RANK[here] != 0
            if RANK[target] > RANK[here] or sideways:
                wrong.append(f"{path.relative_to(SRC)}:{line} ({here}) imports seekserve.{target}")
    assert not wrong, "imports against the layers (pass it in instead):\n" + "\n".join(wrong)


def test_the_package_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for a, b in import_graph():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])


ENGINE_USERS = ("server", "metrics", "cli")
"""Folders that must reach the engine only through AsyncEngine's public methods (docs: STYLE.md)."""
ENGINE_API = {"async_engine", "info", "config", "outputs", "sampling_params", "request"}
"""The engine modules they may import: the wrapper, and the value types it takes and returns."""


def _names_an_engine(node: ast.expr) -> bool:
    """`engine`, `x.engine`, `ready_engine()`: an expression that holds an AsyncEngine by its name."""
    if isinstance(node, ast.Call):
        node = node.func
    name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
    return name.endswith("engine")


def test_servers_reach_the_engine_only_through_async_engine() -> None:
    wrong = []
    for folder in ENGINE_USERS:
        for path in sorted((SRC / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                where = f"{path.relative_to(SRC)}:{getattr(node, 'lineno', '?')}"
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("seekserve.engine."):
                    module = (node.module or "").split(".")[2]
                    if module not in ENGINE_API:
                        wrong.append(f"{where} imports seekserve.engine.{module}")
                if isinstance(node, ast.Attribute) and node.attr == "engine" and _names_an_engine(node.value):
                    wrong.append(f"{where} reads the AsyncEngine's wrapped engine ({ast.unparse(node)})")
    assert not wrong, "use AsyncEngine's public methods (info, encode, stats):\n" + "\n".join(wrong)


if __name__ == "__main__":
    for (a, b), n in sorted(import_graph().items(), key=lambda e: (-RANK[e[0][0]], RANK[e[0][1]], e[0])):
        print(f"{a:>10} -> {b:<8} {n:3d}")
