# Every target sets up what it needs from the lock file (uv.lock).
# uv is installed with pip if it is missing; uv uses the system's certificate store.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_SYSTEM_CERTS := 1
export UV_FROZEN := 1

DOCKER ?= docker
IMAGE ?= myfirstserverlessapp:dev
BASE_IMAGE ?= python:3.11-slim-bookworm

STACK ?= bosun

.PHONY: run test soak lint env image image-test manifests bench tools cluster-up cluster-down cluster-status e2e

env:
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --all-groups --quiet

run: env
	$(UV) run --no-sync python -m service

lint: env
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync hadolint Dockerfile
	$(UV) run --no-sync actionlint

# The image checks need Docker and run under `make image-test`; what depends on the machine's
# speed (latency ratios, a 60 s soak, memory bounds) under `make soak`; the end-to-end tests on
# the local control plane under `make e2e`.
test: lint
	$(UV) run --no-sync pytest --ignore=tests/image --ignore=tests/e2e --ignore=tests/soak

soak: env
	$(UV) run --no-sync pytest tests/soak

image:
	$(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) --tag $(IMAGE) .

image-test: env image
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) DOCKER=$(DOCKER) $(UV) run --no-sync pytest tests/image

# The Namespace and Knative Service of a stack as YAML, for kubectl (STACK=bosun by default;
# IMAGE_REF=repo@sha256:... deploys that image).
manifests: env
	@$(UV) run --no-sync python -m infra.render --stack $(STACK) $(if $(IMAGE_REF),--image $(IMAGE_REF))

# Benchmarks: the apps run in a venv with the image's runtime dependencies only (build/bench-venv),
# the harness in the dev environment. Load comes from Debian's hey (apt-get install hey).
bench: env
	@UV_PROJECT_ENVIRONMENT=build/bench-venv $(UV) sync --frozen --no-default-groups --no-install-project --quiet
	@command -v hey >/dev/null || echo "note: hey is not installed (apt-get install hey); latency and throughput rows are skipped"
	$(UV) run --no-sync python -m benchmarks.run --python build/bench-venv/bin/python

# The local control plane (e2e/): the pinned Go tools in build/bin (tools/*/go.mod), then a
# Knative cluster on this machine (root; see the README's "Try it on the local control plane").
tools: env
	@$(UV) run --no-sync python -m e2e.tools

cluster-up: tools
	@$(UV) run --no-sync python -m e2e.cluster up

cluster-down: env
	@$(UV) run --no-sync python -m e2e.cluster down

cluster-status: env
	@$(UV) run --no-sync python -m e2e.cluster status

# The end-to-end tests on the local control plane: a running cluster is used, else one is
# started for the run and stopped after it.
e2e: tools
	$(UV) run --no-sync pytest tests/e2e
