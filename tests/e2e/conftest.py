"""The end-to-end tests' fixtures: the local control plane, started once, and the app's image."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.cluster import running_cluster
from tests.e2e.kube import Kube, app_image_ref


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test here `cluster`; the harness's own fault tests go first, before the
    session's cluster exists (they start clusters of their own that must fail)."""
    for item in items:
        if "tests/e2e/" in item.nodeid or item.nodeid.startswith("tests/e2e"):
            item.add_marker(pytest.mark.cluster)
    items.sort(key=lambda item: "test_harness_faults" not in item.nodeid)


@pytest.fixture(scope="session")
def kube() -> Iterator[Kube]:
    with running_cluster(out=print) as env:
        yield Kube(env)


@pytest.fixture(scope="session")
def app_image(kube: Kube) -> str:
    """The project's image, built from the Dockerfile and pushed to the cluster's registry."""
    return app_image_ref(kube)
