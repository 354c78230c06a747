# segment-connector: `make run` starts the local stack, `make test` runs every check.
SHELL := /bin/bash
export PYENV_VERSION ?= 3.13.0
export SAM_CLI_TELEMETRY := 0

# Python 3.13 (the Lambda runtime): pyenv's when present, else python3.13 on PATH.
PYTHON ?= $(shell pyenv which python 2>/dev/null || command -v python3.13 || command -v python3)
VENV := .venv
TOOLS := .venv-tools
PY := $(VENV)/bin/python

.PHONY: help venv tools run test unit lint build bench replay clean format openapi coverage iam iam-report
.PHONY: lint-ruff lint-format lint-types lint-complexity lint-imports lint-template

help:
	@echo "make run     start the local stack (moto + real handlers + local Segment sink) on 127.0.0.1"
	@echo "make test    make lint, sam build, then every test"
	@echo "make deploy  sam build, then sam deploy to your AWS account (--guided the first time; GUIDED=1 asks again)"
	@echo "make iam     each function's calls against its role: granted, used, never used (fails on a denied call or an unused grant)"
	@echo "make lint    ruff (lint + format check), mypy, complexity gate (xenon), import contracts, sam validate --lint"
	@echo "make format  ruff format + ruff check --fix"
	@echo "make openapi regenerate docs/openapi.json from the inbound and console routes"
	@echo "make coverage  the tests under coverage, with a report"
	@echo "make bench   benchmarks (cold start, DynamoDB requests per message)"
	@echo "make replay  send dead-lettered outbound messages again (the local stack; segment-connector replay for a deployed one)"
	@echo "make soak    reliability run against its own local stack (~10 min): load, redelivery, hostile inputs"
	@echo "make browser install Debian's chromium for the console's browser tests (as root; else prints how)"

# The app's and the tests' dependencies, the lint tools, then the package and the operator CLI
# (cli/segment_connector_cli: .venv/bin/segment-connector), installed editable so that they run as
# checked out. The CLI is not in the Lambda layer: build-CommonLayer copies segment_connector only.
venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt constraints-dev.txt requirements-lint.txt constraints-lint.txt \
		layers/common/requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt -r requirements-lint.txt \
		-c constraints-dev.txt -c constraints-lint.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

tools: $(TOOLS)/.installed
$(TOOLS)/.installed: requirements-tools.txt constraints-tools.txt
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-tools.txt -c constraints-tools.txt
	touch $@

run: venv tools  # tools: SAM's translator makes each function's role (local_stack.iam)
	$(PY) -m local_stack

test: lint build unit iam-report

# Every AWS call a function makes in the tests is checked against its role (local_stack.iam) and
# recorded for `make iam`'s report.
IAM_CALLS := .local-stack/iam-calls.jsonl
unit: venv tools
	@mkdir -p .local-stack && rm -f $(IAM_CALLS)
	IAM_CALLS_FILE=$(CURDIR)/$(IAM_CALLS) $(PY) -m pytest

# `make iam`: the calls of the last full test run when they are newer than the template, else the
# tests that exercise every function (a few minutes); then the report (iam-allowlist.yaml excuses).
IAM_TESTS := tests/test_inbound_api.py tests/test_profile_api_segment.py tests/test_outbound_delivery.py tests/test_resync.py tests/test_console_api.py
iam: $(IAM_CALLS) iam-report

$(IAM_CALLS): template.yaml | venv tools
	@mkdir -p .local-stack && rm -f $@
	IAM_CALLS_FILE=$(CURDIR)/$@ $(PY) -m pytest -q -p no:cacheprovider $(IAM_TESTS)

iam-report: venv tools
	$(PY) -m local_stack.iam --calls $(IAM_CALLS)

# Every check runs (-k) and any failure fails `make lint`; the configuration is in pyproject.toml.
# (wildcard: a folder not in this checkout yet is skipped rather than reported missing)
LINT_PATHS := $(wildcard layers cli functions local_stack tests bench soak)
IMPORT_ROOTS := layers/common:.
TYPE_PATHS := $(wildcard layers/common/segment_connector cli/segment_connector_cli functions local_stack tests bench soak)
lint: venv tools
	@$(MAKE) --no-print-directory -k lint-ruff lint-format lint-types lint-complexity lint-imports lint-template

lint-ruff: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)

lint-format: venv
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

lint-types: venv
	$(VENV)/bin/mypy $(TYPE_PATHS)

# No function worse than C (asserts in tests do not count as branches).
lint-complexity: venv
	$(VENV)/bin/xenon --no-assert --max-absolute C $(LINT_PATHS)

# The import contracts in pyproject.toml ([tool.importlinter]): layers, a pure domain, boto3 only in
# the adapters, handlers over their flow. The packages are found from these roots.
lint-imports: venv
	PYTHONPATH=$(IMPORT_ROOTS) $(VENV)/bin/lint-imports --no-cache

lint-template: tools
	$(TOOLS)/bin/sam validate --lint

format: venv
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

openapi: venv
	$(PY) -m local_stack.openapi docs/openapi.json

# The report is printed even when a test fails; the exit status is pytest's.
coverage: venv tools
	@status=0; $(PY) -m coverage run -m pytest || status=$$?; $(PY) -m coverage report; exit $$status

build: tools
	PATH="$(dir $(PYTHON)):$$PATH" $(TOOLS)/bin/sam build

# `make deploy`: sam build, then sam deploy, with the project's own SAM CLI (.venv-tools) and its
# telemetry off. The first time, while samconfig.toml's [default.deploy.parameters] has no region (a
# guided run always saves one), it is `sam deploy --guided`: it asks for the region and the stack's
# parameters and saves the answers there; afterwards a plain `sam deploy` reuses them. GUIDED=1 asks
# again; DEPLOY_ARGS passes more options (e.g. DEPLOY_ARGS="--parameter-overrides AlarmEmail=ops@example.com").
SAMCONFIG_HAS_REGION := import sys, tomllib; \
	c = tomllib.load(open("samconfig.toml", "rb")); \
	sys.exit(0 if c.get("default", {}).get("deploy", {}).get("parameters", {}).get("region") else 1)
.PHONY: deploy
deploy: venv build  # venv: the operator CLI (.venv/bin/segment-connector) sets the keys afterwards
	@if [ -z "$(GUIDED)" ] && $(TOOLS)/bin/python -c '$(SAMCONFIG_HAS_REGION)'; then \
		echo "sam deploy (samconfig.toml's deploy parameters)"; \
		SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam deploy $(DEPLOY_ARGS); \
	else \
		echo "sam deploy --guided (the answers are saved to samconfig.toml for the next make deploy)"; \
		SAM_CLI_TELEMETRY=0 $(TOOLS)/bin/sam deploy --guided $(DEPLOY_ARGS); \
	fi

bench: venv tools
	$(PY) -m bench

replay: venv
	$(VENV)/bin/segment-connector replay --local

.PHONY: soak
soak: venv tools  # tools: the stack checks each call against its role (SAM's translator)
	$(PY) -m soak

# The console's browser tests (tests/test_console_browser.py) drive Chromium through Playwright
# (no browser download), found by one rule, the tests' (tests/harness.py chromium_path): the binary
# named by CHROMIUM, else /usr/bin/chromium (Debian's chromium package, installed here as root).
# Without it they are skipped (a failure under CI=true). `.ci/run` runs this before `make test`.
.PHONY: browser
browser:
	@chromium="$(or $(CHROMIUM),/usr/bin/chromium)"; \
	if [ -x "$$chromium" ]; then exit 0; fi; \
	if [ -n "$(CHROMIUM)" ]; then echo "CHROMIUM=$$chromium is not an executable Chromium" >&2; exit 1; fi; \
	if [ "$$(id -u)" -ne 0 ]; then \
		echo "$$chromium is missing: as root, apt-get install -y chromium (or set CHROMIUM to a Chromium binary)" >&2; \
		exit 1; fi; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium && test -x "$$chromium"

clean:
	rm -rf $(VENV) $(TOOLS) .aws-sam .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov

# The common layer, run by `sam build` (template.yaml: CommonLayer's BuildMethod makefile) in a
# copy of layers/common/, ARTIFACTS_DIR set: what the python3.13 build method made (the pinned
# dependencies, arm64 wheels, and the package), plus bytecode. Lambda's file system is read-only,
# so without .pyc files every cold start compiles each module it imports again (about doubles
# the init time: BENCH_BUILT=1 python -m bench cold-start). unchecked-hash: the .pyc is used as
# is, no timestamp check that the zip's file times could fail; the deployed files never change.
LAYER_PLATFORM ?= --platform manylinux2014_aarch64 --implementation cp --python-version 3.13 --only-binary=:all:
.PHONY: build-CommonLayer
build-CommonLayer:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13) and "Python 3.13 needed: .pyc files are version-specific")'
	rm -rf "$(ARTIFACTS_DIR)/python"
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile --target "$(ARTIFACTS_DIR)/python" \
		$(LAYER_PLATFORM) -r requirements.txt
	cp -R segment_connector "$(ARTIFACTS_DIR)/python/"
	rm -rf "$(ARTIFACTS_DIR)/python/bin"  # jmespath's jp.py script: nothing imports it
	find "$(ARTIFACTS_DIR)/python" -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)/python" >/dev/null
