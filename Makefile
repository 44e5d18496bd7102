# Two commands set everything up: `make demo` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO := .demo
DEMO_ITEMS ?= 200
DEMO_DAYS ?= 365

.PHONY: demo test lint frontend frontend-check screenshots bench-import bench-server bench-dashboard clean help
.DEFAULT_GOAL := help

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/.installed: requirements/dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python 3.11 or newer is needed ($(PYTHON))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $@

demo: $(BIN)/.installed  ## Demo pack -> import -> server on http://127.0.0.1:8080 (all under .demo/).
	@mkdir -p $(DEMO)
	@test -f $(DEMO)/signing-key || $(BIN)/mlws keygen --out $(DEMO)/signing-key --principal demo@mlws > $(DEMO)/allowed_signers
	$(BIN)/mlws demo --out $(DEMO)/tables --items $(DEMO_ITEMS) --days $(DEMO_DAYS) --generated-at $$(date -u +%Y-%m-%dT%H:%M:%SZ)
	$(BIN)/mlws pack $(DEMO)/tables --key $(DEMO)/signing-key --dataset-id demo-telecom-spares \
		--model-version demo-ensemble-1.0 --source ensemble --out $(DEMO)/demo.pack
	$(BIN)/mlws verify $(DEMO)/demo.pack --signers $(DEMO)/allowed_signers
	$(BIN)/appliance import $(DEMO)/demo.pack --data-dir $(DEMO)/data --signers $(DEMO)/allowed_signers
	$(BIN)/appliance versions --data-dir $(DEMO)/data
	@test -f $(DEMO)/admin.token || { umask 077; $(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(24))' > $(DEMO)/admin.token; }
	@echo "API on http://127.0.0.1:8080/api/v1 (OpenAPI: /schema); admin token in $(DEMO)/admin.token; Ctrl-C stops."
	APPLIANCE_ADMIN_TOKEN_FILE=$(DEMO)/admin.token $(BIN)/appliance serve --data-dir $(DEMO)/data \
		--signers $(DEMO)/allowed_signers --host 127.0.0.1 --port 8080

test: $(BIN)/.installed  ## Run every test (unit, integration).
	$(BIN)/python -m pytest

lint: $(BIN)/.installed  ## Ruff (lint and format check) and mypy.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/appliance audit --source .

frontend:  ## Rebuild the dashboard into server/frontend/dist (needs Node 20.19+; the result is committed).
	cd server/frontend && npm ci --no-audit --no-fund && npm run build

frontend-check: frontend  ## Fail if a fresh build differs from the committed dashboard.
	@git diff --exit-code --stat -- server/frontend/dist && test -z "$$(git status --porcelain -- server/frontend/dist)" \
		|| { echo "error: server/frontend/dist differs from a fresh build: run make frontend and commit"; exit 1; }

screenshots: $(BIN)/.installed  ## Retake docs/images/*.png with Chromium (needs /usr/bin/chromium).
	UPDATE_SCREENSHOTS=1 $(BIN)/python -m pytest tests/browser -k screenshot -q

bench-import: $(BIN)/.installed  ## Field-scale demo/pack/import benchmark against sha256sum.
	$(BIN)/python benchmarks/bench_import.py

bench-server: $(BIN)/.installed  ## Field-scale API benchmark: ours vs Datasette vs ROAPI (needs wrk).
	$(BIN)/python benchmarks/bench_server.py

bench-dashboard: $(BIN)/.installed  ## First render of the dashboard in Chromium, 10 runs.
	$(BIN)/python benchmarks/bench_dashboard.py

clean:  ## Remove the venv, demo data and caches.
	rm -rf $(VENV) $(DEMO) .bench .pytest_cache .mypy_cache .ruff_cache
