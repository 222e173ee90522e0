"""The end-to-end tests' fixtures: the local control plane, started once, and the app's image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.cluster import running_cluster
from tests.e2e.kube import Kube, app_image_ref


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here `cluster`, and run the modules in ORDER: the harness's own fault
    tests first, before the session's cluster exists (they start clusters of their own that
    must fail); the webhook's dry runs before the services that leave namespaces terminating
    (a namespace holding pods takes minutes to go: pods drain for 30 s, and the namespace
    controller backs off while it waits); the load test, which ends with no pod and removes its
    namespace, before test_serving deploys the bosun stack's Service into the same one."""
    for item in items:
        item.add_marker(pytest.mark.cluster)
    items.sort(key=lambda item: next((i for i, m in enumerate(ORDER) if m in item.nodeid), 99))


ORDER = (
    "test_harness_faults", "test_harness.py", "test_network", "test_webhook", "test_traces",
    "test_scaling", "test_serving", "test_pulumi",
)  # fmt: skip


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    with running_cluster(out=print) as env:
        yield Kube(env)


@pytest.fixture(scope="session")
def app_image(kube: Kube) -> str:
    """The project's image, built from the Dockerfile and pushed to the cluster's registry."""
    return app_image_ref(kube)
