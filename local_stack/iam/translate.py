"""template.yaml as SAM translates it for CloudFormation (cached by the template's content)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

from local_stack.template import ROOT

TOOLS_PYTHON = ROOT / ".venv-tools" / "bin" / "python"
CACHE_DIR = ROOT / ".local-stack" / "translated"
SCRIPT = Path(__file__).with_name("sam_translate.py")


class TranslationFailed(Exception):
    """SAM's translator is missing or refused the template (the message says which)."""


def translated_template(text: str) -> dict[str, Any]:
    """The CloudFormation template SAM makes of `text` (SAM's translator lives in .venv-tools:
    it pins its own pydantic; `make tools` installs it)."""
    digest = hashlib.sha256(text.encode("utf-8") + SCRIPT.read_bytes()).hexdigest()[:32]
    cached = CACHE_DIR / f"{digest}.json"
    try:
        return dict(json.loads(cached.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    if not TOOLS_PYTHON.exists():
        raise TranslationFailed(f"SAM's translator is not installed ({TOOLS_PYTHON} is missing): run `make tools`")
    result = subprocess.run(  # noqa: S603 - our own script, in our own virtualenv
        [str(TOOLS_PYTHON), str(SCRIPT)], input=text, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode != 0:
        raise TranslationFailed(f"SAM's translator refused the template: {result.stderr.strip()[-2000:]}")
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    temporary = cached.with_suffix(f".{id(result)}.tmp")
    temporary.write_text(result.stdout, encoding="utf-8")
    temporary.replace(cached)
    return dict(json.loads(result.stdout))
