"""The package's shape: imports run one way, no cycles, no private names across
packages, no oversized modules, and every module imports on its own."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# setup.cfg's package_dir: folder -> package.
ROOTS = {
    "keras_unet_sr": "keras_unet_sr",
    "datasets": "keras_unet_sr.datasets",
    "tuning": "keras_unet_sr.tuning",
    "export": "keras_unet_sr.export",
}
# Higher layers may import lower ones and their own, never higher ones.
LAYERS = {
    "keras_unet_sr": 0,  # errors, config, the package's lazy public API
    "keras_unet_sr.files": 0,
    "keras_unet_sr.model": 1,
    "keras_unet_sr.quality": 1,
    "keras_unet_sr.data": 1,
    "keras_unet_sr.datasets": 1,
    "keras_unet_sr.inference": 2,
    "keras_unet_sr.training": 3,
    "keras_unet_sr.tuning": 4,
    "keras_unet_sr.export": 4,
    "keras_unet_sr.cli": 5,
}
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            if name.startswith("keras_unet_sr.datasets") and "dummy_data" in parts:
                continue
            found[name] = path
    return found


MODULES = _modules()


def _package_of(module: str) -> str:
    """The layer package a module belongs to (longest matching prefix)."""
    matches = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return max(matches, key=len)


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """`(imported module, names)` for every import of ours, also in functions."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names if a.name in _known(a.name)]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [a.name for a in node.names]
            if not base.startswith("keras_unet_sr"):
                continue
            # `from pkg import submodule` imports the submodule.
            subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
            rest = [n for n in names if f"{base}.{n}" not in MODULES]
            if rest or not subs:
                found.append((base, rest))
            found += [(sub, []) for sub in subs]
    return found


def _known(name: str) -> set[str]:
    return {name} if name in MODULES else set()


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def test_the_layout_is_found():
    assert "keras_unet_sr.model.unet" in MODULES
    assert "keras_unet_sr.cli" in MODULES
    assert len(MODULES) > 40


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module):
    own = LAYERS[_package_of(module)]
    for target, _ in GRAPH[module]:
        if target == "keras_unet_sr":
            continue
        theirs = LAYERS[_package_of(target)]
        assert theirs <= own, (
            f"{module} (layer {own}) imports {target} (layer {theirs})"
        )


def test_no_private_names_across_packages():
    for module, imports in GRAPH.items():
        for target, names in imports:
            if _package_of(target) == _package_of(module):
                continue
            private = [n for n in names if n.startswith("_") and n != "__version__"]
            assert not private, f"{module} imports private {private} from {target}"


def _order() -> list[str]:
    """Modules in dependency order; fails on a cycle."""
    done: list[str] = []
    state: dict[str, str] = {}

    def visit(module: str, trail: list[str]) -> None:
        if state.get(module) == "done":
            return
        if state.get(module) == "open":
            cycle = [*trail[trail.index(module) :], module]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        state[module] = "open"
        for target, _ in GRAPH[module]:
            # A module's own packages are imported before it anyway.
            if target in MODULES and not module.startswith(target + "."):
                visit(target, [*trail, module])
        state[module] = "done"
        done.append(module)

    for module in sorted(MODULES):
        visit(module, [])
    return done


def test_no_import_cycle():
    order = _order()
    assert len(order) == len(MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_stay_small(module):
    lines = MODULES[module].read_text().count("\n")
    assert lines <= MAX_LINES, f"{MODULES[module]}: {lines} lines (> {MAX_LINES})"


def test_every_module_imports_in_a_fresh_interpreter():
    """All of them, in dependency order, in one fresh interpreter (not the
    test session, which has imported much already)."""
    # TFDS test harness; `python -m` entry points run the CLI when imported.
    skip = {m for m in MODULES if m.endswith(("_test", "__main__"))}
    order = [m for m in _order() if m not in skip]
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "print('imported', len(sys.argv) - 1)\n"
    )
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run(
        [sys.executable, "-c", code, *order],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(REPO.parent),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"imported {len(order)}" in result.stdout
