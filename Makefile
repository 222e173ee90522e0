# Every target sets up what it needs from the lock file (uv.lock).
# uv is installed with pip if it is missing; uv uses the system's certificate store.
UV := $(shell command -v uv 2>/dev/null || echo python3 -m uv)
export UV_SYSTEM_CERTS := 1
export UV_FROZEN := 1

DOCKER ?= docker
IMAGE ?= myfirstserverlessapp:dev
BASE_IMAGE ?= python:3.11-slim-bookworm

STACK ?= bosun

.PHONY: run test soak lint env image image-test manifests bench tools cluster-up cluster-down cluster-status e2e help

env: ## set up .venv from uv.lock (installs uv with pip if it is missing)
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet --user uv || python3 -m pip install --quiet uv
	@$(UV) sync --all-groups --quiet

run: env ## serve the app on http://127.0.0.1:8080 (settings from the environment)
	$(UV) run --no-sync python -m service

lint: env ## ruff check, ruff format --check, mypy, hadolint, actionlint
	$(UV) run --no-sync ruff check .
	$(UV) run --no-sync ruff format --check .
	$(UV) run --no-sync mypy
	$(UV) run --no-sync hadolint Dockerfile
	$(UV) run --no-sync actionlint

# The image checks need Docker and run under `make image-test`; what depends on the machine's
# speed (latency ratios, a 60 s soak, memory bounds) under `make soak`; the end-to-end tests on
# the local control plane under `make e2e`.
test: lint ## lint, then pytest without tests/image, tests/e2e and tests/soak
	$(UV) run --no-sync pytest --ignore=tests/image --ignore=tests/e2e --ignore=tests/soak

soak: env ## what depends on the machine's speed: latency ratios, a 60 s soak, memory bounds
	$(UV) run --no-sync pytest tests/soak

image: ## build the container image (IMAGE, BASE_IMAGE, DOCKER)
	$(DOCKER) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) --tag $(IMAGE) .

image-test: env image ## build the image and check a running container (tests/image; needs Docker)
	IMAGE=$(IMAGE) BASE_IMAGE=$(BASE_IMAGE) DOCKER=$(DOCKER) $(UV) run --no-sync pytest tests/image

# The Namespace and Knative Service of a stack as YAML, for kubectl (STACK=bosun by default;
# IMAGE_REF=repo@sha256:... deploys that image).
manifests: env ## print a stack's Namespace and Knative Service as YAML (STACK, IMAGE_REF)
	@$(UV) run --no-sync python -m infra.render --stack $(STACK) $(if $(IMAGE_REF),--image '$(IMAGE_REF)')

# Benchmarks: the apps run in a venv with the image's runtime dependencies only (build/bench-venv),
# the harness in the dev environment. Load comes from Debian's hey (apt-get install hey).
bench: env ## run the benchmarks as markdown tables (hey for the latency and throughput rows)
	@UV_PROJECT_ENVIRONMENT=build/bench-venv $(UV) sync --frozen --no-default-groups --no-install-project --quiet
	@command -v hey >/dev/null || echo "note: hey is not installed (apt-get install hey); latency and throughput rows are skipped"
	$(UV) run --no-sync python -m benchmarks.run --python build/bench-venv/bin/python

# The local control plane (e2e/): the pinned Go tools in build/bin (tools/*/go.mod), then a
# Knative cluster on this machine (root; see docs/local-cluster.md).
tools: env ## build the local cluster's pinned Go tools into build/bin (needs Go)
	@$(UV) run --no-sync python -m e2e.tools

cluster-up: tools ## start the local Knative cluster (as root); writes build/cluster/env
	@$(UV) run --no-sync python -m e2e.cluster up

cluster-down: env ## stop the local cluster and remove what it set up (its logs stay)
	@$(UV) run --no-sync python -m e2e.cluster down

cluster-status: env ## the local cluster's processes and memory, its metrics and trace stores
	@$(UV) run --no-sync python -m e2e.cluster status

# The end-to-end tests on the local control plane: a running cluster is used, else one is
# started for the run and stopped after it.
e2e: tools ## the end-to-end tests (tests/e2e) on the local cluster (started if none runs)
	$(UV) run --no-sync pytest tests/e2e

# Every target with the `## ` comment after its name; needs nothing but awk.
help: ## list the targets, one line each
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z][a-z0-9-]*:[^=]*## / {printf "%-16s %s\n", $$1, $$2}' $(firstword $(MAKEFILE_LIST))
