"""The layers, read from the source: imports only point down (synth <- augment <- train <- tumorsynth).

Every import statement counts, also those inside functions (the lazy ones are how a layer would
sneak upward without a cost at load time).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("synth", "augment", "train", "tumorsynth")  # bottom to top


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _sources(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", LAYERS)
def test_imports_only_point_down(layer):
    above = LAYERS[LAYERS.index(layer) + 1:]
    upward = [f"{path.relative_to(ROOT)} imports {name}"
              for path in _sources(layer) for name in sorted(_imports(path))
              if name.split(".")[0] in above]
    assert upward == []


def test_library_code_never_imports_a_command_module():
    offenders = [f"{path.relative_to(ROOT)} imports {name}"
                 for layer in LAYERS[:-1] for path in _sources(layer) if path.name != "commands.py"
                 for name in sorted(_imports(path)) if name.endswith(".commands") or ".commands." in name]
    assert offenders == []


def test_the_walker_sees_relative_and_function_level_imports(tmp_path):
    # The test above can fail: the walker resolves what a module really imports.
    names = _imports(ROOT / "synth" / "insert_files.py")
    assert {"synth.io", "synth.host", "synth.phantom"} <= names
