# assotic task runner. `make help` lists every target.
# Every target runs inside .venv, which is created on first use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYINFRA := $(VENV)/bin/pyinfra
PYTEST := $(VENV)/bin/pytest

INVENTORY ?= inventory/lab.py
TENANTS ?= group_data/tenants
# pytest exits 5 when it collected no test: say so, and fail, rather than pass quietly.
PYTEST_RUN = run() { $(PYTEST) "$$@"; rc=$$?; [ $$rc -ne 5 ] || echo "make: pytest collected no test"; return $$rc; }; run
export ASSOTIC_TENANTS_DIR := $(TENANTS)

.PHONY: bench help install check schema lab lab-down lab-status deploy verify bbb-check lint test test-unit test-lab \
        secrets-init secret-list secret-show secret-set secret-rotate secrets-reseal \
        secrets-rekey clean restore update backup-status pins-fingerprint drill dns dns-check audit

help: ## List every target, one line each
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "  Variables: INVENTORY=$(INVENTORY) TENANTS=$(TENANTS) NAME=<secret name>"

$(VENV)/.installed: requirements.txt
	$(PYTHON_SYSTEM) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed ## Create .venv with the pinned tools (requirements.txt)

check: $(VENV)/.installed ## Validate INVENTORY and TENANTS without touching any host
	$(PY) -m commands check --inventory $(INVENTORY) --tenants $(TENANTS)

schema: $(VENV)/.installed ## Rewrite schema/tenant.schema.json from the schema module
	$(PY) -m commands schema > schema/tenant.schema.json

lab: $(VENV)/.installed ## Start the local lab containers and deploy the example associations
	$(PY) -m lab up
	$(PYINFRA) -y inventory/lab.py deploy.py

lab-status: $(VENV)/.installed ## Show the lab containers and their SSH ports
	$(PY) -m lab status

lab-down: $(VENV)/.installed ## Remove the lab containers (cached images are kept)
	$(PY) -m lab down

deploy: $(VENV)/.installed ## Deploy to INVENTORY (same as `pyinfra INVENTORY deploy.py`)
	$(PYINFRA) $(INVENTORY) deploy.py

verify: $(VENV)/.installed ## Run the testinfra checks against INVENTORY over SSH
	@$(PYTEST_RUN) tests/verify --inventory=$(INVENTORY)

bbb-check: $(VENV)/.installed ## BBB and TURN health over SSH: bbb-conf --check, SIP gateway registration, coturn
	$(PY) -m commands bbb-check $(INVENTORY)

test: lint test-unit test-lab ## Run every test: the lint (layers contract, ruff), unit tests, then the lab tests

lint: $(VENV)/.installed ## The import contract (.importlinter: layers point one way, no circle) and ruff (ruff.toml)
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check --quiet .

test-unit: $(VENV)/.installed ## Unit tests: schema, bad inputs, secrets, templates (no host)
	@$(PYTEST_RUN) tests/unit

test-lab: $(VENV)/.installed ## Lab tests: up, deploy, verify, idempotence, restart, killed deploy, make audit, backup drills, update run, make drill
	@$(PYTEST_RUN) tests/lab -v

secrets-init: $(VENV)/.installed ## Create the secrets key (outside git) and an empty store
	$(PY) -m commands secrets init

secret-list: $(VENV)/.installed ## List the secret names in the store (never the values)
	$(PY) -m commands secrets list

secret-show: $(VENV)/.installed ## Print one secret: make secret-show NAME=<name>
	$(PY) -m commands secrets show "$(NAME)"

secret-set: $(VENV)/.installed ## Set one secret, read from stdin: make secret-set NAME=<name>
	$(PY) -m commands secrets set "$(NAME)"

secret-rotate: $(VENV)/.installed ## Replace one generated secret with a new one: NAME=<name>
	$(PY) -m commands secrets rotate "$(NAME)"

secrets-reseal: $(VENV)/.installed ## After a reviewed git merge of the store: re-check and rewrite its index
	$(PY) -m commands secrets reseal

secrets-rekey: $(VENV)/.installed ## Re-encrypt the store under a new key: make secrets-rekey NEWKEY=<file>
	$(PY) -m commands secrets rekey "$(NEWKEY)"

restore: $(VENV)/.installed ## Restore one association: TENANT=<slug> [APP=..] [SNAPSHOT=latest|<id>] [FROM=<host>] [TO=<host>] [FORCE=1] [DRY=1]
	$(PY) -m commands restore --inventory $(INVENTORY) --tenant "$(TENANT)" --snapshot "$(or $(SNAPSHOT),latest)" \
		$(if $(APP),--app "$(APP)") $(if $(FROM),--from "$(FROM)") $(if $(TO),--to "$(TO)") $(if $(FORCE),--force) $(if $(DRY),--dry-run)

drill: $(VENV)/.installed ## Restore drill: latest snapshot of each association (or TENANT=) into a throw-away lab host; age + restore time (drill/results.json)
	$(PY) -m commands drill --inventory $(INVENTORY) $(if $(TENANT),--tenant "$(TENANT)") $(if $(KEEP),--keep)

update: $(VENV)/.installed ## Apply changed release pins: backup, upgrade, health check, rollback [TENANT=<slug>] [DRY=1] [DRILL_FAIL_HEALTH=<slug>/<app>]
	$(PY) -m commands update --inventory $(INVENTORY) $(if $(TENANT),--tenant "$(TENANT)") $(if $(DRY),--dry-run) \
		$(if $(DRILL_FAIL_HEALTH),--drill-fail-health "$(DRILL_FAIL_HEALTH)")

pins-fingerprint: $(VENV)/.installed ## Print the sha256 of the release pins (the nightly CI job runs `make update` when it changes)
	@$(PY) -m commands pins-fingerprint --inventory $(INVENTORY)

backup-status: $(VENV)/.installed ## Fail naming each backup older than data backup_max_age_hours (26) on INVENTORY
	$(PY) -m commands backup-status --inventory $(INVENTORY)

audit: $(VENV)/.installed ## Lynis on every host, testssl.sh on every vhost; fail under data audit_lynis_min_index [MIN_INDEX=<n>] (audit/results.json)
	$(PY) -m commands audit --inventory $(INVENTORY) $(if $(MIN_INDEX),--data audit_lynis_min_index=$(MIN_INDEX))

dns: $(VENV)/.installed ## The DNS records each association (or TENANT=) must create at its registrar: A, AAAA, CAA, SPF, DMARC
	ASSOTIC_CHECK_ONLY=1 $(PY) -m commands dns --inventory $(INVENTORY) $(if $(TENANT),--tenant "$(TENANT)")

dns-check: $(VENV)/.installed ## Resolve the records of `make dns`, naming each one missing or wrong; asks only DNS_SERVER=<ip>[:port] if given, else this machine's resolver [TENANT=<slug>]
	ASSOTIC_CHECK_ONLY=1 $(PY) -m commands dns-check --inventory $(INVENTORY) $(if $(TENANT),--tenant "$(TENANT)") $(if $(DNS_SERVER),--server "$(DNS_SERVER)")

bench: $(VENV)/.installed ## Measure converge/no-op times, idle RSS (1 and 10 associations), backup nights and restore (bench/results.json)
	$(PY) -m lab.bench

clean: ## Remove .venv and caches (not the lab, see lab-down)
	rm -rf $(VENV) .pytest_cache
