"""Imports point down: cli -> study -> detection/survive -> tagging/targets/ledger -> ground modules.

Parsed with ast (nothing is imported), so a lazy import inside a function counts too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.core

PACKAGE = Path(__file__).resolve().parent.parent / "ghostsent"
FOLDERS = ("cli", "ledger", "tagging", "targets", "detection", "study", "survive")
# survive/screen.py holds the pipeline filter rules (C4's line rules, the vendored word lists) that
# `new`, `insert` and placement.py use on the light core: a ground module that lives with its kind.
GROUND_MODULES = {"ghostsent.survive.screen"}

ALLOWED = {
    "ground": {"ground"},
    "ledger": {"ground"},
    "targets": {"ground"},
    "tagging": {"ground", "ledger"},
    "detection": {"ground", "ledger", "targets"},
    "survive": {"ground", "ledger", "targets", "tagging"},
    "study": {"ground", "ledger", "targets", "tagging", "detection", "survive"},
    "cli": {"ground", "ledger", "targets", "tagging", "detection", "survive", "study", "cli"},
}


def layer(module: str) -> str:
    if module == "ghostsent.__main__":  # `python -m ghostsent`: the command itself
        return "cli"
    if module in GROUND_MODULES:
        return "ground"
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in FOLDERS else "ground"


def imports() -> list[tuple[str, str, int]]:
    """(importing module, imported ghostsent module, line) for every import in the package."""
    out = []
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = f.relative_to(PACKAGE.parent).with_suffix("")
        module = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] if node.module != "ghostsent" else [f"ghostsent.{a.name}" for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                names = ["<relative>"]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            out += [(module, n, node.lineno) for n in names if n.startswith("ghostsent") or n == "<relative>"]
    return out


def test_imports_point_down():
    wrong = [f"{m}:{line} imports {n} ({layer(m)} -> {layer(n)})" for m, n, line in imports()
             if n != "<relative>" and layer(m) != layer(n) and layer(n) not in ALLOWED[layer(m)]]
    assert wrong == []


def test_no_relative_imports_and_nothing_imports_the_cli():
    assert [f"{m}:{line}" for m, n, line in imports() if n == "<relative>"] == []
    assert [f"{m}:{line}" for m, n, line in imports() if layer(n) == "cli" and layer(m) != "cli"] == []


def test_the_check_sees_a_wrong_import():
    """The rules refute: a ledger module importing detection would be caught."""
    assert "detection" not in ALLOWED[layer("ghostsent.ledger.store")]
    assert layer("ghostsent.detection.session") == "detection" and layer("ghostsent.survive.screen") == "ground"
    assert any(n.startswith("ghostsent.detection") and layer(m) == "cli" for m, n, _ in imports())


def test_library_messages_never_name_command_line_flags():
    """Errors raised by the library describe the problem; the CLI adds the flag (cli.HINTS)."""
    import re

    flagged = []
    for f in sorted(PACKAGE.rglob("*.py")):
        if "cli" in f.relative_to(PACKAGE).parts:
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                text = " ".join(c.value for c in ast.walk(node.exc)
                                if isinstance(c, ast.Constant) and isinstance(c.value, str))
                if re.search(r"(^|[\s(`'\"])--[a-z]", text):
                    flagged.append(f"{f.relative_to(PACKAGE.parent)}:{node.lineno}")
    assert flagged == []
