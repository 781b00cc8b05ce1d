"""The tests mirror the package: ``proxy/<pkg>/<mod>.py`` is tested in
``tests/<pkg>/test_<mod>.py`` (more files may follow as ``test_<mod>_<aspect>.py``), so a
newcomer finds a module's tests by its path. End-to-end suites that cross modules live in
``tests/system/``; ``tests/support/`` holds test infrastructure, tested beside itself."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "proxy"
TESTS = ROOT / "tests"
ALIASES = {"__main__": "main"}  # test_main.py tests proxy/__main__.py


def modules() -> dict[Path, str]:
    """Each module's folder relative to the package, and the name its tests carry."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name == "__init__.py":
            continue
        found[path] = ALIASES.get(path.stem, path.stem)
    return found


def _tested_names(folder: Path) -> set[str]:
    return {p.stem.removeprefix("test_") for p in folder.glob("test_*.py")}


def covers(test_name: str, module_name: str) -> bool:
    return test_name == module_name or test_name.startswith(module_name + "_")


def test_every_module_has_a_test_file() -> None:
    missing = []
    for path, name in modules().items():
        folder = TESTS / path.parent.relative_to(PACKAGE)
        if not any(covers(t, name) for t in _tested_names(folder)):
            missing.append(f"{path.relative_to(ROOT)} -> {folder.relative_to(ROOT)}/test_{name}.py")
    assert not missing, "modules without a test file:\n" + "\n".join(sorted(missing))


def test_every_test_file_has_a_module() -> None:
    by_folder: dict[Path, set[str]] = {}
    for path, name in modules().items():
        by_folder.setdefault(TESTS / path.parent.relative_to(PACKAGE), set()).add(name)
    support = TESTS / "support"
    by_folder[support] = {p.stem for p in support.glob("*.py") if p.stem != "__init__"}
    orphans = []
    for test in TESTS.rglob("test_*.py"):
        if test.parent == TESTS / "system":
            continue
        names = by_folder.get(test.parent, set())
        stem = test.stem.removeprefix("test_")
        if not any(covers(stem, name) for name in names):
            orphans.append(str(test.relative_to(ROOT)))
    assert not orphans, "test files without a module:\n" + "\n".join(sorted(orphans))


def test_the_rule_itself() -> None:
    assert covers("engine_model", "engine") and covers("render", "render")
    assert not covers("engines", "engine") and not covers("plan", "planner")
