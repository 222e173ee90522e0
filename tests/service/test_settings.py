from __future__ import annotations

import pytest

from service.settings import DEFAULT_MAX_IN, IN_LIMIT, Settings, SettingsError


def test_defaults_serve_locally_with_no_collector() -> None:
    settings = Settings.from_env({})
    assert (settings.host, settings.port) == ("127.0.0.1", 8080)
    assert settings.colour == "blue"
    assert settings.max_in == DEFAULT_MAX_IN
    assert settings.zipkin_endpoint is None
    assert settings.service_name == "myfirstserverlessapp"


def test_knative_variables_are_read() -> None:
    settings = Settings.from_env(
        {"PORT": "9000", "K_SERVICE": "faas", "K_REVISION": "faas-00002", "K_CONFIGURATION": "c"}
    )
    assert settings.port == 9000
    assert settings.service_name == "faas"
    assert settings.revision == "faas-00002"
    assert settings.k_configuration == "c"


def test_otel_service_name_wins_over_k_service() -> None:
    assert Settings.from_env({"OTEL_SERVICE_NAME": "x", "K_SERVICE": "y"}).service_name == "x"


def test_revision_falls_back_to_the_host_name() -> None:
    assert Settings.from_env({}).revision


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT='http' is not an integer from 1 to 65535"),
        ({"PORT": "70000"}, "PORT=70000 is out of range: allowed 1 to 65535"),
        ({"PORT": "0"}, "PORT=0 is out of range"),
        ({"MAX_IN": "2"}, "MAX_IN=2 is out of range: allowed 3 to"),
        ({"MAX_IN": str(IN_LIMIT + 1)}, f"allowed 3 to {IN_LIMIT}"),
        ({"MAX_PROCESSES": "-5"}, "MAX_PROCESSES='-5' is not an integer"),
        ({"PI_WORKERS": "0"}, "PI_WORKERS=0 is out of range: allowed 1 to 64"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL='loud' is not one of critical, error"),
        ({"COLOUR": "red;}<script>"}, "COLOUR='red;}<script>' is not a CSS colour"),
        ({"COLOUR": "notacolour"}, "COLOUR='notacolour' is not a CSS colour"),
        ({"COLOUR": "#12345"}, "COLOUR='#12345' is not a CSS colour"),
        ({"COLOUR": "transparent"}, "COLOUR='transparent' is not a CSS colour"),
        ({"OTEL_EXPORTER_ZIPKIN_ENDPOINT": "zipkin:9411"}, "is not an http(s) URL"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "colour",
    [
        "red",
        "Red",
        "#0a0",
        "#0a08",
        "#00aa00",
        "#00aa0080",
        "rebeccapurple",
        "lightgoldenrodyellow",
    ],
)
def test_css_colours_are_accepted(colour: str) -> None:
    assert Settings.from_env({"COLOUR": colour}).colour == colour
