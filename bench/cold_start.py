"""Cold start of each handler against `import boto3; boto3.client("dynamodb")`. Goal: each handler at
most the libraries' floor (Powertools + pydantic, measured in the same run) + 0.10x that baseline.

Each sample is a fresh Python process; samples of the handlers and of the baseline are
interleaved and the medians compared, so a noisy machine affects both sides alike.

By default the handlers run from the source tree, whose __pycache__ folders hold compiled
bytecode. BENCH_BUILT=1 runs them as Lambda does instead: the common layer as `make
build-CommonLayer` builds it (for this machine's platform), the functions' app.py without bytecode,
and no process may write a .pyc (Lambda's file system is read-only). The baseline's boto3 is
precompiled, like the runtime's.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from local_stack.template import ROOT, function_spec, load_template

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "9"))
OVER_FLOOR = 0.10  # goal: a handler costs at most the floor + this much of the baseline

BASELINE = 'import boto3; boto3.client("dynamodb")'
HANDLER = """
import importlib.util, sys
sys.path.insert(0, {layer!r})
spec = importlib.util.spec_from_file_location("app", {path!r})
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
{init}
"""
# What the stack the handlers are built on costs by itself (Powertools Logger, Metrics, an event
# handler and parameters, and pydantic's first model): the floor under both handlers.
FLOOR = (
    BASELINE
    + """
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.utilities import parameters
import pydantic
Logger(); Metrics(); APIGatewayHttpResolver()
class Probe(pydantic.BaseModel):
    x: int = 1
"""
)
FLOOR_NAME = "floor (powertools + pydantic)"
BUILT = os.environ.get("BENCH_BUILT") == "1"


# Each handler's init: its module, then what its first request builds whatever it asks (the
# table's client; the console's parts, ParameterStore and invoker included).
INITS = {
    "InboundFunction": "module.entry.store()",
    "OutboundFunction": "module.entry.store()",
    "ResyncFunction": "module.entry.store()",
    "ConsoleFunction": "module.entry.console()",
}


def cases(layer: Path, functions: Path) -> dict[str, str]:
    """The baseline first; a handler whose function is not in this checkout is left out."""
    found = {
        "baseline (boto3 + dynamodb client)": BASELINE,
        FLOOR_NAME: f"import sys; sys.path.insert(0, {str(layer)!r})\n" + FLOOR,
    }
    for name, init in INITS.items():
        app = functions / name.removesuffix("Function").lower() / "app.py"
        if app.exists():
            found[name] = HANDLER.format(layer=str(layer), path=str(app), init=init)
    return found


def built_layer(into: Path) -> tuple[Path, Path]:
    """The layer as `sam build` makes it, with this machine's wheels; the functions' app.py alone."""
    subprocess.run(
        [
            *("make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "-C", str(ROOT / "layers/common")),
            *("build-CommonLayer", f"ARTIFACTS_DIR={into / 'layer'}", "LAYER_PLATFORM="),
        ],
        check=True,
        capture_output=True,
    )
    for app in (ROOT / "functions").glob("*/app.py"):
        (into / "functions" / app.parent.name).mkdir(parents=True)
        shutil.copy(app, into / "functions" / app.parent.name / "app.py")
    return into / "layer" / "python", into / "functions"


TIMER = "import time; _t = time.perf_counter()\n{code}\nprint(time.perf_counter() - _t)"


REFS = {"Table": "bench", "ParameterPrefix": "/bench", "LogLevel": "INFO", "OutboundFunction": "bench-outbound"}


def sample(code: str, function: str = "InboundFunction") -> float:
    # Each handler's environment as template.yaml sets it (the baseline and the floor get Inbound's).
    function_env = function_spec(load_template(), function, REFS).environment
    env = {
        **{name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"},
        **function_env,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        # Source tree: the warm-up writes .pyc files and every sample uses them, as the deployed
        # (precompiled) layer does; a shell's PYTHONDONTWRITEBYTECODE would make each sample
        # compile the package again. Built layer: its .pyc files are shipped, none is written.
        **({"PYTHONDONTWRITEBYTECODE": "1"} if BUILT else {}),
    }
    out = subprocess.run(
        [sys.executable, "-c", TIMER.format(code=code)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        if BUILT:
            return measure(cases(*built_layer(Path(tmp))), "built layer, no .pyc written")
        return measure(cases(ROOT / "layers/common", ROOT / "functions"), "source tree")


def measure(cases: dict[str, str], where: str) -> int:
    def run(name: str) -> float:
        return sample(cases[name], name if name in INITS else "InboundFunction")

    for name in cases:  # warm the OS file cache (and the source tree's .pyc files) once
        run(name)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(SAMPLES):
        for name in cases:
            times[name].append(run(name))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians.pop(next(iter(cases)))
    floor = medians[FLOOR_NAME] / baseline
    goal = floor + OVER_FLOOR
    print(
        f"cold start ({where}), median of {SAMPLES} fresh processes (baseline {baseline * 1000:.0f} ms); "
        f"goal: floor {floor:.2f}x + {OVER_FLOOR:.2f}x = {goal:.2f}x",
        flush=True,
    )
    failed = False
    for name, median in medians.items():
        ratio = median / baseline
        verdict = "" if name == FLOOR_NAME else ("ok" if ratio <= goal else "OVER GOAL")
        failed |= verdict == "OVER GOAL"
        print(f"  {name:30} {median * 1000:6.0f} ms  {ratio:4.2f}x baseline  {ratio - floor:+.2f}x floor  {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
