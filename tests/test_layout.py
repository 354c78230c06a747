"""The operator CLI is its own package (cli/segment_connector_cli): installed into .venv by
pyproject.toml, never shipped in the Lambda layer (layers/common), and reaching AWS only through
the connector's adapters and its target module."""

from __future__ import annotations

import ast
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

from local_stack.template import ROOT

LAYER = ROOT / "layers" / "common"
CLI = ROOT / "cli" / "segment_connector_cli"
BUILT_LAYER = ROOT / ".aws-sam" / "build" / "CommonLayer" / "python"


def modules(folder: Path) -> Iterator[Path]:
    yield from (path for path in sorted(folder.rglob("*.py")) if "__pycache__" not in path.parts)


def cli_modules(folder: Path) -> list[Path]:
    """The old CLI's modules (cli.py, cli_target.py) wherever they are under the folder."""
    return [path for path in modules(folder) if path.name == "cli.py" or path.name.startswith("cli_")]


def imported(path: Path) -> set[str]:
    """The top-level names of every module this file imports (at any depth of the file)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_the_layer_source_holds_no_cli() -> None:
    # Given the folder the layer is built from / Then no CLI package and no command-line parsing in it
    assert not list(LAYER.rglob("segment_connector_cli")) and cli_modules(LAYER) == []
    parsing = [str(path.relative_to(ROOT)) for path in modules(LAYER) if imported(path) & {"argparse", "getpass"}]
    assert parsing == []
    # And the package never imports the CLI (imports point from the CLI to the package only)
    assert [str(p.relative_to(ROOT)) for p in modules(LAYER) if "segment_connector_cli" in imported(p)] == []


def test_the_layer_build_copies_the_package_only() -> None:
    # Given the layer's build recipe (template.yaml: CommonLayer, BuildMethod makefile)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = makefile.split("\nbuild-CommonLayer:", 1)[1].split("\n\n", 1)[0]
    # Then it copies segment_connector from layers/common, nothing from cli/
    assert re.findall(r"^\tcp -R (\S+) ", recipe, flags=re.MULTILINE) == ["segment_connector"]
    assert "cli" not in re.sub(r"compileall|--only-binary|\$\(PYTHON\)", "", recipe)
    # And a layer `sam build` made, when there is one, has no CLI in it
    if BUILT_LAYER.exists():
        assert not (BUILT_LAYER / "segment_connector_cli").exists()
        assert cli_modules(BUILT_LAYER / "segment_connector") == []


def test_pyproject_installs_both_packages_and_the_console_script() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    found = project["tool"]["setuptools"]["packages"]["find"]
    assert found["where"] == ["layers/common", "cli"]
    assert {"segment_connector", "segment_connector_cli", "segment_connector_cli.*"} <= set(found["include"])
    assert project["project"]["scripts"] == {"segment-connector": "segment_connector_cli.main:main"}
    assert "cli" in project["tool"]["pytest"]["ini_options"]["pythonpath"]
    assert "cli/segment_connector_cli" in project["tool"]["mypy"]["files"]


def test_commands_reach_aws_only_through_the_adapters() -> None:
    # Given the command modules / Then none imports the AWS SDK: SSM goes through ParameterStore,
    # the table through ProfileStore, the functions through the target's Lambda Invoke
    direct = [
        str(path.relative_to(ROOT))
        for path in modules(CLI / "commands")
        if imported(path) & {"boto3", "botocore"} or "client(" in path.read_text(encoding="utf-8")
    ]
    assert direct == []


def test_every_cli_module_is_at_most_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in modules(CLI) if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


MAX_MODULE_LINES = 400
MAX_CLASS_LINES = 250


def oversized(folder: Path) -> list[str]:
    """The modules over MAX_MODULE_LINES and the classes over MAX_CLASS_LINES under the folder."""
    found: list[str] = []
    for path in modules(folder):
        source = path.read_text(encoding="utf-8")
        name = str(path.relative_to(ROOT))
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            found.append(f"{name}: {lines} lines")
        for node in ast.walk(ast.parse(source, name)):
            if isinstance(node, ast.ClassDef) and (size := (node.end_lineno or node.lineno) - node.lineno + 1) > (
                MAX_CLASS_LINES
            ):
                found.append(f"{name}: class {node.name} {size} lines")
    return found


def test_every_module_is_at_most_400_lines_and_every_class_at_most_250() -> None:
    # Given the package and the CLI / Then each module has at most 400 lines and each class at
    # most 250 (a bigger one holds more than one job: split it by job)
    assert oversized(LAYER / "segment_connector") + oversized(CLI) == []
