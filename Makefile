# Two commands set everything up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := .demo
DEMO_ITEMS ?= 200
DEMO_DAYS ?= 365
DEMO_GENERATED_AT ?= $$(date -u +%Y-%m-%dT%H:%M:%SZ)
BUNDLE_VERSION ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
DEV_KEYS := .dev-keys
PODMAN_SOCKET := /run/podman/podman.sock

.PHONY: demo demo-pack test lint bundle engine node-test fleet-test bench-bundle bench-install bench-fleet frontend frontend-check screenshots bench-import bench-server bench-export bench-dashboard clean help
.DEFAULT_GOAL := help

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements/dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python 3.11 or newer is needed ($(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	@# setuptools says "Editable installation" in a dozen lines on every run, whatever --quiet says.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: demo-pack  ## Demo pack -> import -> server on http://127.0.0.1:8080 (all under .demo/).
	$(BIN)/mlws verify $(DEMO)/demo.pack --signers $(DEMO)/allowed_signers
	$(BIN)/appliance import $(DEMO)/demo.pack --data-dir $(DEMO)/data --signers $(DEMO)/allowed_signers
	$(BIN)/appliance versions --data-dir $(DEMO)/data
	@test -f $(DEMO)/admin.token || { umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))' > $(DEMO)/admin.token; }
	@echo "Dashboard on http://127.0.0.1:8080/ (an item: http://127.0.0.1:8080/#/items/IT-0000001);"
	@echo "API on http://127.0.0.1:8080/api/v1 (OpenAPI: /schema); admin token in $(DEMO)/admin.token; Ctrl-C stops."
	APPLIANCE_ADMIN_TOKEN_FILE=$(DEMO)/admin.token $(BIN)/appliance serve --data-dir $(DEMO)/data \
		--signers $(DEMO)/allowed_signers --host 127.0.0.1 --port 8080

demo-pack: $(BIN)/.installed  ## The demo's signed result pack, .demo/demo.pack, generated now (what make demo imports).
	@mkdir -p $(DEMO)
	@test -f $(DEMO)/signing-key || $(BIN)/mlws keygen --out $(DEMO)/signing-key --principal demo@mlws > $(DEMO)/allowed_signers
	$(BIN)/mlws demo --out $(DEMO)/tables --items $(DEMO_ITEMS) --days $(DEMO_DAYS) --generated-at $(DEMO_GENERATED_AT)
	$(BIN)/mlws pack $(DEMO)/tables --key $(DEMO)/signing-key --dataset-id demo-telecom-spares \
		--model-version demo-ensemble-1.0 --source ensemble --out $(DEMO)/demo.pack

test: $(BIN)/.installed  ## Run every test (unit, integration, browser, end to end on a simulated node).
	$(BIN)/python -m pytest

lint: $(BIN)/.installed  ## Ruff (lint and format check), mypy, the no-ML source audit and ansible-lint.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/appliance audit --source .
	ANSIBLE_LIBRARY=ansible/library PATH="$(abspath $(BIN)):$$PATH" $(BIN)/ansible-lint --offline --profile production ansible/

bundle: $(BIN)/.installed engine  ## Build dist/appliance-<version>.tar, signed with a development key (.dev-keys/).
	@test -f $(DEV_KEYS)/bundle.key || { mkdir -p $(DEV_KEYS) && $(BIN)/python -c \
		'import sys; from pathlib import Path; from appliance.trust.sshsig import generate_key; \
		k = generate_key(Path(sys.argv[1]), "dev-bundle@localhost"); \
		Path(sys.argv[2]).write_text(f"dev-bundle@localhost namespaces=\"appliance-bundle,appliance-trust\" {k.openssh_line()}\n")' \
		$(DEV_KEYS)/bundle.key $(DEV_KEYS)/allowed_signers && echo "made a development key $(DEV_KEYS)/bundle.key (never commit it)"; }
	$(BIN)/python build_bundle.py --version $(BUNDLE_VERSION) --key $(DEV_KEYS)/bundle.key --out dist
	$(BIN)/appliance verify dist/appliance-$(BUNDLE_VERSION).tar --signers $(DEV_KEYS)/allowed_signers

engine:  ## Start Podman's Docker-compatible API on /run/podman/podman.sock unless one answers.
	@if [ -n "$${DOCKER_HOST:-}" ] || curl -sf --unix-socket $(PODMAN_SOCKET) http://d/_ping >/dev/null 2>&1; then :; \
	elif ! command -v podman >/dev/null; then echo "error: no container engine: apt-get install podman runc mmdebstrap"; exit 1; \
	else mkdir -p $(dir $(PODMAN_SOCKET)) && rm -f $(PODMAN_SOCKET) && \
		(cd / && setsid nohup podman --runtime runc system service --time=0 unix://$(PODMAN_SOCKET) >/dev/null 2>&1 &) && \
		for i in $$(seq 50); do test -S $(PODMAN_SOCKET) && break; sleep 0.1; done && echo "started podman system service on $(PODMAN_SOCKET)"; fi

fleet-test: $(BIN)/.installed  ## A fleet end to end: three simulated nodes and a controller over SSH on an internal network.
	$(BIN)/python -m pytest tests/e2e/test_fleet.py -v

node-test: $(BIN)/.installed  ## The installer end to end on simulated air-gapped nodes: NODE=debian13-docker (or a,b) for some kinds, every kind without NODE.
	APPLIANCE_NODE_KINDS=$(or $(NODE),all) $(BIN)/python -m pytest tests/e2e -v

frontend:  ## Rebuild the dashboard into server/frontend/dist (needs Node 20.19+; the result is committed).
	cd server/frontend && npm ci --no-audit --no-fund && npm run build

frontend-check: frontend  ## Fail if a fresh build differs from the committed dashboard.
	@git diff --exit-code --stat -- server/frontend/dist && test -z "$$(git status --porcelain -- server/frontend/dist)" \
		|| { echo "error: server/frontend/dist differs from a fresh build: run make frontend and commit"; exit 1; }

screenshots: $(BIN)/.installed  ## Retake docs/images/*.png with Chromium, on packs made by make demo-pack.
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser -k screenshot -q

bench-bundle: $(BIN)/.installed engine  ## Bundle build times (cold and warm cache) and the image's size, MB by MB.
	$(BIN)/python benchmarks/bench_bundle.py

bench-install: $(BIN)/.installed  ## Install-to-healthy time, failed requests and longest wait during an upgrade, second-run time on a simulated node.
	$(BIN)/python benchmarks/bench_install.py

bench-fleet: $(BIN)/.installed  ## Three simulated nodes installed and upgraded rolling over SSH: times, failed requests and longest wait per node.
	$(BIN)/python benchmarks/bench_fleet.py

bench-import: $(BIN)/.installed  ## Field-scale demo/pack/import benchmark against sha256sum.
	$(BIN)/python benchmarks/bench_import.py

bench-server: $(BIN)/.installed  ## Field-scale API benchmark: ours vs nginx, bare Granian, Datasette, ROAPI (needs wrk, nginx-light; SCALE=5 for 5x).
	$(BIN)/python benchmarks/bench_server.py --scale $(or $(SCALE),1)

bench-export: $(BIN)/.installed  ## Field-scale exports (14.6 M-row forecast as CSV and Parquet): time, MiB/s, the worker's peak RSS.
	$(BIN)/python benchmarks/bench_export.py

bench-dashboard: $(BIN)/.installed  ## First render of the dashboard in Chromium, 10 runs.
	$(BIN)/python benchmarks/bench_dashboard.py

clean:  ## Remove the venv, demo data and caches.
	rm -rf $(VENV) $(DEMO) .bench .pytest_cache .mypy_cache .ruff_cache
