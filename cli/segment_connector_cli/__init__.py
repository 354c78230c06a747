"""`segment-connector`: the operator's command line, for a deployed stack or the local one.

    segment-connector status [--json]                       warnings, counts, the last resync
    segment-connector settings show|validate FILE|put FILE  the settings document
    segment-connector keys set api-key|write-key|shared-secret|admin-key|profile-token
    segment-connector resync [--wait]                       bring Segment up to date
    segment-connector replay [--limit N] [--wait]           send dead letters again (in the background)
    segment-connector users get ID                          a profile, as the Profile API shows it

Every command takes `--local` (the stack of `make run`) or `--stack-name`/`--region`/`--profile`
(a deployed stack; the stack name defaults to samconfig.toml's). Reads go to DynamoDB and SSM
through the package's own adapters (ProfileStore, ParameterStore); resync and replay invoke the
stack's functions (Lambda Invoke, RequestResponse). No command prints a key, nor any part of one.

This package is installed into .venv by pyproject.toml and is not part of the Lambda layer
(layers/common holds segment_connector only): the functions never import it.

    main.py      the entry point: parse, run the command, map errors to one line and an exit code
    parser.py    the arguments (argparse)
    context.py   Command: what every command shares (the target, its adapters, Lambda Invoke)
    render.py    output: stdout/stderr lines, JSON, counts, a job's progress
    progress.py  following a resync or a replay to its end (the progress bar)
    errors.py    CliError and the one-line description of any other error
    target.py    where the CLI acts: a deployed stack's outputs, or the local stack's state file
    commands/    one module per command group: settings, keys, status, resync, replay, users
"""
