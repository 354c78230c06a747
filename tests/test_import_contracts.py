"""The import contracts of pyproject.toml ([tool.importlinter], `make lint-imports`) hold for the
tree as it is, and fail on a deliberately wrong import: a copy of the code with one import added
that points the wrong way."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from local_stack.template import ROOT

LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(code_root: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts over the packages found under code_root."""
    environment = {**os.environ, "PYTHONPATH": f"{code_root / 'layers' / 'common'}{os.pathsep}{code_root}"}
    return subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=code_root,
        timeout=120,
        check=False,
    )


def copy_of_the_code(tmp_path: Path) -> Path:
    for part in ("layers/common/segment_connector", "functions"):
        shutil.copytree(ROOT / part, tmp_path / part, ignore=shutil.ignore_patterns("__pycache__", "static"))
    return tmp_path


def test_the_tree_as_it_is_keeps_every_contract() -> None:
    # Given the repository's code, When the contracts are checked, Then all are kept
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "contract"),
    [
        ("layers/common/segment_connector/domain/traits.py", "import segment_connector.store", "Layers:"),
        ("layers/common/segment_connector/outbound/handler.py", "import segment_connector.inbound.ingest", "Layers:"),
        ("layers/common/segment_connector/domain/traits.py", "import boto3", "The domain is plain Python"),
        ("layers/common/segment_connector/views/profiles.py", "import boto3", "Only the adapters"),
        ("functions/outbound/app.py", "import segment_connector.store", "Handlers import their flow only"),
    ],
    ids=["domain-imports-store", "flow-imports-flow", "domain-imports-boto3", "view-imports-boto3", "handler-store"],
)
def test_a_wrong_import_breaks_its_contract(tmp_path: Path, module: str, wrong_import: str, contract: str) -> None:
    # Given a copy of the code where one module gains an import pointing the wrong way
    code = copy_of_the_code(tmp_path)
    path = code / module
    path.write_text(path.read_text() + f"\n{wrong_import}  # deliberately wrong\n")

    # When the contracts are checked
    result = lint_imports(code)

    # Then the check fails, naming the broken contract and the module that imports
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if "BROKEN" in line]
    assert broken, result.stdout
    assert contract in result.stdout.replace("\n", " ")
    importer = module.removeprefix("layers/common/").removesuffix(".py").replace("/", ".")
    assert importer in result.stdout.replace("\n", "")
