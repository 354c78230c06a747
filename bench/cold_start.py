"""Cold start of each handler against `import boto3; boto3.client("dynamodb")` (goal: <= 1.5x).

Each sample is a fresh Python process; samples of the handlers and of the baseline are
interleaved and the medians compared, so a noisy machine affects both sides alike.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys

from local_stack.template import ROOT, function_spec, load_template

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "9"))
GOAL = 1.5

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
CASES = {
    "baseline (boto3 + dynamodb client)": BASELINE,
    "floor (powertools + pydantic)": FLOOR,
    "InboundFunction": HANDLER.format(
        layer=str(ROOT / "layers/common"), path=str(ROOT / "functions/inbound/app.py"), init="module.store()"
    ),
    "OutboundFunction": HANDLER.format(
        layer=str(ROOT / "layers/common"),
        path=str(ROOT / "functions/outbound/app.py"),
        init="getattr(module, 'store', lambda: None)()",
    ),
}
TIMER = "import time; _t = time.perf_counter()\n{code}\nprint(time.perf_counter() - _t)"


def sample(code: str) -> float:
    # The handlers' environment as template.yaml sets it (the baseline gets the same).
    function_env = function_spec(
        load_template(), "InboundFunction", {"Table": "bench", "ParameterPrefix": "/bench", "LogLevel": "INFO"}
    ).environment
    env = {
        **os.environ,
        **function_env,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
    }
    out = subprocess.run(
        [sys.executable, "-c", TIMER.format(code=code)], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> int:
    for name in [n for n in list(CASES) if n.endswith("Function")]:
        if not (ROOT / "functions" / name.removesuffix("Function").lower() / "app.py").exists():
            del CASES[name]
    for code in CASES.values():  # warm the OS file cache and .pyc files once
        sample(code)
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(SAMPLES):
        for name, code in CASES.items():
            times[name].append(sample(code))
    medians = {name: statistics.median(values) for name, values in times.items()}
    baseline = medians.pop(next(iter(CASES)))
    print(f"cold start, median of {SAMPLES} fresh processes (baseline {baseline * 1000:.0f} ms)", flush=True)
    failed = False
    for name, median in medians.items():
        ratio = median / baseline
        verdict = "" if name.startswith("floor") else ("ok" if ratio <= GOAL else "OVER GOAL")
        failed |= verdict == "OVER GOAL"
        print(f"  {name:30} {median * 1000:6.0f} ms  {ratio:4.2f}x baseline  {verdict}")
    return 1 if failed else 0
