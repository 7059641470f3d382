"""The layout's rules, read from the source: no import circle, ``training/`` layers import only
downward, the three parts keep their dependency direction, and command-line help loads no
TensorFlow."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "serving", "client")

# training/'s layers, lowest first: a module may import its own layer and those below it.
# config and presets are TF-free option modules the layers above data bind to.
TRAINING_LAYERS = ("data", "config", "presets", "model", "learning", "export", "cli", "__main__")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_imports() -> dict[str, set[str]]:
    """Module → the project modules it imports (at the top or inside functions)."""
    modules = {
        module_name(path): path
        for package in PACKAGES
        for path in (REPO / package).rglob("*.py")
        if "_pb2" not in path.name
    }
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # ``from a.b import c`` names module a.b.c when that is a module, else a.b
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            found.update(t for t in targets if t.split(".")[0] in PACKAGES or t in modules)
        graph[name] = {t for t in found if t in modules and t != name}
    return graph


def test_the_import_graph_is_read():
    """The rules below would pass on an empty graph: check it holds what the code imports."""
    graph = project_imports()
    assert "training.learning.run_folder" in graph["training.learning.train"]
    assert "serving.server" in graph["serving.cli"]  # imported inside main()
    assert "client.contract" in graph["serving.manager"]


def test_no_import_circle():
    graph = project_imports()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            cycle = [*path[path.index(module) :], module]
            pytest.fail("import circle: " + " → ".join(cycle))
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def _training_layer(module: str) -> int:
    parts = module.split(".")
    return TRAINING_LAYERS.index(parts[1]) if len(parts) > 1 else len(TRAINING_LAYERS)


def test_training_layers_import_only_downward():
    wrong = [
        f"{module} ({module.split('.')[1]}) imports {imported}"
        for module, imports in project_imports().items()
        if module.startswith("training.") and module.count(".") >= 1
        for imported in imports
        if imported.startswith("training.") and _training_layer(imported) > _training_layer(module)
    ]
    assert not wrong, "\n".join(wrong)


def test_the_parts_keep_their_dependency_direction():
    """client imports neither training nor serving; those two never import each other."""
    forbidden = {
        "client": ("training", "serving"),
        "training": ("serving",),
        "serving": ("training",),
    }
    wrong = [
        f"{module} imports {imported}"
        for module, imports in project_imports().items()
        for imported in imports
        if imported.split(".")[0] in forbidden[module.split(".")[0]]
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize(
    "command",
    [
        ["training", "--help"],
        ["training", "train", "--help"],
        ["training", "export", "--help"],
        ["serving", "--help"],
        ["serving", "gateway", "--help"],
        ["serving", "launch", "--help"],
        ["client", "bench", "--help"],
    ],
    ids=" ".join,
)
def test_help_loads_no_tensorflow(command):
    """Help comes from the TF-free option modules: it prints at once, on any machine."""
    script = (
        "import runpy, sys\n"
        f"sys.argv = {['python -m ' + command[0], *command[1:]]!r}\n"
        "try:\n"
        f"    runpy.run_module({command[0]!r}, run_name='__main__')\n"
        "except SystemExit as stop:\n"
        "    assert stop.code in (0, None), stop.code\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras'))\n"
        "print('LOADED', loaded[:3])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout
    assert "LOADED []" in done.stdout, done.stdout.splitlines()[-1]
