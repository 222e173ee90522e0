"""The gateway stand-in's routes, from KIngress rules as net-istio reads them."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

from e2e.kingress import EXTERNAL, LOCAL, Split, choose, ingress_hash, routes, select


def _ingress(**spec_extra: Any) -> dict[str, Any]:
    revision = {"Knative-Serving-Revision": "app-00001"}
    split = {"serviceNamespace": "ns", "serviceName": "app-00001", "servicePort": 80,
             "percent": 100, "appendHeaders": revision}  # fmt: skip
    return {
        "metadata": {"name": "app", "namespace": "ns", "generation": 1},
        "spec": {
            "rules": [
                {"hosts": ["app.ns.example.com"], "visibility": "ExternalIP",
                 "http": {"paths": [{"splits": [split]}]}},
                {"hosts": ["app.ns", "app.ns.svc.cluster.local"], "visibility": "ClusterLocal",
                 "http": {"paths": [{"path": "/", "headers": {"X-Canary": {"exact": "1"}},
                                     "rewriteHost": "x", "splits": [split]}]}},
            ],
            **spec_extra,
        },
    }  # fmt: skip


def test_rules_become_routes_by_visibility_and_host() -> None:
    table = routes(_ingress())
    assert set(table[EXTERNAL]) == {"app.ns.example.com"}
    assert set(table[LOCAL]) == {"app.ns", "app.ns.svc.cluster.local"}
    (public,) = table[EXTERNAL]["app.ns.example.com"]
    assert public.prefix == "/"
    assert public.splits == (Split("ns", "app-00001", 80, 100,
                                   {"Knative-Serving-Revision": "app-00001"}),)  # fmt: skip
    (local,) = table[LOCAL]["app.ns"]
    assert (local.match_headers, local.rewrite_host) == ({"X-Canary": "1"}, "x")


def test_a_path_takes_a_request_by_prefix_and_exact_headers() -> None:
    (local,) = routes(_ingress())[LOCAL]["app.ns"]
    assert select([local], "/anything", {"X-Canary": "1"}) is local
    assert select([local], "/anything", {"X-Canary": "2"}) is None
    assert select([local], "/anything", {}) is None


def test_the_probe_hash_is_the_ingress_version() -> None:
    first = _ingress()
    (path,) = routes(first)[EXTERNAL]["app.ns.example.com"]
    assert path.probe_hash == ingress_hash(first)
    changed = copy.deepcopy(first)
    changed["spec"]["rules"][0]["hosts"] = ["other.ns.example.com"]
    assert ingress_hash(changed) != ingress_hash(first)
    status_only = copy.deepcopy(first)
    status_only["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    assert ingress_hash(status_only) == ingress_hash(first)


def test_splits_are_chosen_in_proportion_and_zero_percent_never() -> None:
    splits = (Split("ns", "a", 80, 90, {}), Split("ns", "b", 80, 10, {}),
              Split("ns", "c", 80, 0, {}))  # fmt: skip
    chosen = Counter(split.service for split in (choose(splits) for _ in range(4000)) if split)
    assert chosen["c"] == 0
    # Binomial(4000, 0.1): 400 +- 19 per standard deviation.
    assert 300 <= chosen["b"] <= 500, chosen
    assert choose((Split("ns", "a", 80, 0, {}),)) is None
