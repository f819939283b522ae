"""The layering holds: import-linter's contracts (pyproject.toml), and no private name crosses a module."""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "activity", "billing", "chatroom", "openrouter_site", "routing")
ROUTING_MAY_IMPORT = {"billing.metering", "billing.money"}
LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True))"


def test_import_contracts_are_kept():
    """Run apart: Twisted (loaded with Daphne in this process) confuses import-linter's option check."""
    run = subprocess.run(
        [sys.executable, "-c", LINT, str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


def test_the_routing_contract_names_every_other_billing_module():
    """A billing module added later is forbidden to routing unless it is added to the allowed two."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [contract] = [c for c in config["tool"]["importlinter"]["contracts"] if c.get("source_modules") == ["routing"]]
    billing = sorted(f"billing.{m.name}" for m in pkgutil.iter_modules([str(ROOT / "billing")]))
    assert sorted([*contract["forbidden_modules"], *ROUTING_MAY_IMPORT]) == billing


def _modules():
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.parts:
                yield path


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def private_imports(path: Path) -> list[str]:
    """``from other import _name`` in ``path``: a private name taken from another module."""
    module = _module_name(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(node, ast.ImportFrom):
            continue
        source = _resolve(module, node, path.name == "__init__.py")
        for alias in node.names:
            private = alias.name.startswith("_") and not alias.name.startswith("__")
            if private and source != module:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from {source}")
    return found


def test_no_module_imports_a_private_name_from_another():
    offences = [offence for path in _modules() for offence in private_imports(path)]
    assert offences == []


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("from .holds import _credits_hold\n", True),
        ("from billing.services.ledger import _ledger_move\n", True),
        ("from . import _private\n", True),
        ("from .holds import credits_hold\n", False),
        ("from __future__ import annotations\n", False),
    ],
)
def test_the_private_name_check_catches_what_it_should(tmp_path, monkeypatch, source, flagged):
    package = tmp_path / "billing" / "services"
    package.mkdir(parents=True)
    path = package / "expiry.py"
    path.write_text(source)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert bool(private_imports(path)) is flagged
