"""Ports as the cluster takes them: a free one, or the one asked for if it is free."""

from __future__ import annotations

import socket

import pytest

from e2e.context import ClusterError, check_port, free_port, port_from_env


def test_a_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_port_in_use_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ClusterError, match=f"^gateway: port 127.0.0.1:{port} is in use$"):
            check_port("gateway", "127.0.0.1", port)
        monkeypatch.setenv("GATEWAY_PORT", str(port))
        with pytest.raises(ClusterError, match="is in use"):
            port_from_env("gateway", "GATEWAY_PORT")


@pytest.mark.parametrize("value", ["0", "65536", "http", "-1"])
def test_a_port_that_is_no_port_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("METRICS_PORT", value)
    with pytest.raises(ClusterError, match=f"METRICS_PORT={value!r}: not a port number"):
        port_from_env("metrics", "METRICS_PORT")


def test_without_a_port_asked_for_one_is_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGISTRY_PORT", raising=False)
    assert 1024 <= port_from_env("registry", "REGISTRY_PORT") <= 65535
