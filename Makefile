# Every target sets up what it needs from the lock file (uv.lock).
# uv is installed with pip if it is missing; uv uses the system's certificate store.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_SYSTEM_CERTS := 1
export UV_FROZEN := 1

.PHONY: run test lint env

env:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	$(UV) sync --all-groups

run: env
	$(UV) run --no-sync python -m service

lint: env
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy

test: lint
	$(UV) run --no-sync pytest
