"""The package's layout as a graph: no import circle between repflow's modules, and the shared media modules
import no runtime. Fast: it reads the sources with grimp (import-linter's engine) and runs no stage.
The floors and the families' independence are import-linter's contracts (``[tool.importlinter]``)."""
from __future__ import annotations

import subprocess
import sys

import grimp

from tests.conftest import REPO



def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of two or more modules (and modules importing themselves): every
    module of one can reach every other through imports, anywhere in a file (function bodies included)."""
    nodes = set(graph.modules)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(nodes):
        if root in order:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root) & nodes)))]
        order[root] = low[root] = len(order)
        stack.append(root)
        while work:
            node, edges = work[-1]
            child = next(edges, None)
            if child is not None:
                if child not in order:
                    order[child] = low[child] = len(order)
                    stack.append(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child) & nodes))))
                elif child in stack:
                    low[node] = min(low[node], order[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == order[node]:
                component = []
                while True:
                    member = stack.pop()
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph.find_modules_directly_imported_by(node):
                    found.append(sorted(component))
    return found


def test_no_import_circle_between_modules():
    graph = grimp.build_graph("repflow", cache_dir=None, exclude_type_checking_imports=True)
    assert "repflow.media.speech" in graph.modules and "repflow.config" in graph.modules
    assert _circles(graph) == []


def test_the_circle_finder_sees_a_circle():
    graph = grimp.build_graph("repflow", cache_dir=None, exclude_type_checking_imports=True)
    graph.add_import(importer="repflow.config", imported="repflow.family")  # the circle there was before
    assert _circles(graph) == [["repflow.config", "repflow.family"]]


def test_media_imports_without_the_runtime():
    """Shared decoders and encoders stay below the runtime: numpy, PyAV, espeakng-loader (torch allowed), no
    orchestration, tracking, schema or shard library."""
    code = ("import sys, repflow.media.speech, repflow.media.video; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'prefect', 'mlflow', 'ray', 'pydantic', "
            "'webdataset', 'dvc', 'polars'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
