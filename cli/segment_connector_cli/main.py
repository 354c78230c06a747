"""The console script `segment-connector`: parse, run the command, one line and an exit code on an error."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from segment_connector_cli.context import Command
from segment_connector_cli.errors import PROG, CliError, describe
from segment_connector_cli.parser import build_parser
from segment_connector_cli.target import FunctionFailed, Invoker, TargetError


def main(argv: Sequence[str] | None = None, *, invoker: Invoker | None = None) -> int:
    """The console script. `invoker` ((function name, payload) -> result) replaces Lambda Invoke (tests)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "command"):
        (getattr(args, "help_parser", None) or parser).print_help(sys.stderr)
        return 2
    try:
        return int(args.command(Command(args, invoker)) or 0)
    except (CliError, TargetError, FunctionFailed) as error:
        return _fail(str(error))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `segment-connector settings show | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - nothing more is written; exit quietly
        return 1
    except Exception as error:  # noqa: BLE001 - one line for the operator, not a traceback
        return _fail(describe(error))


def _fail(message: str) -> int:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
