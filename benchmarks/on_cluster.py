"""The benchmarks that need the local cluster: its client, or a line saying they are skipped."""

from __future__ import annotations

from e2e import tools
from e2e.cluster import Cluster
from tests.e2e.kube import Kube


def cluster_or_skip(what: str, tool: str | None = None) -> Kube | None:
    """The running local cluster (with TOOL built, if named), or None after one line saying
    WHAT is skipped and why."""
    if not Cluster.running():
        print(f"{what}: no local cluster (make cluster-up); skipped\n")
        return None
    if tool is not None:
        try:
            tools.path(tool)
        except tools.ToolError as error:
            print(f"{what}: {error}; skipped\n")
            return None
    return Kube(Cluster.env())
