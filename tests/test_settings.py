"""Settings: flag > environment > default, every problem reported at once, naming the variable."""

import argparse

import pytest

from runner.errors import ConfigurationError
from runner.settings import Settings


def load(argv=()):
    parser = argparse.ArgumentParser()
    Settings.register_arguments(parser)
    return Settings.from_args(parser.parse_args(list(argv)))


def test_defaults():
    settings = load()
    assert settings.host == ""
    assert settings.run_policy == "on-change"
    assert settings.verify_tls
    assert str(settings.token_path) == "/var/run/secrets/kubernetes.io/serviceaccount/token"


def test_flag_beats_environment_beats_default(monkeypatch):
    monkeypatch.setenv("DSP_EXPERIMENT", "from-env")
    assert load().experiment == "from-env"
    assert load(["--experiment", "from-flag"]).experiment == "from-flag"


def test_host_is_normalised_like_kfp_does():
    assert load(["--host", "dsp.example.com/"]).host == "https://dsp.example.com"


def test_every_bad_value_is_reported_in_one_error_naming_each_variable(monkeypatch):
    monkeypatch.setenv("DSP_REQUEST_TIMEOUT", "soon")
    monkeypatch.setenv("DSP_RETRIES", "0")
    monkeypatch.setenv("DSP_RUN_POLICY", "sometimes")
    with pytest.raises(ConfigurationError) as caught:
        load()
    message = str(caught.value)
    assert "DSP_REQUEST_TIMEOUT: expected a number of seconds, got 'soon'" in message
    assert "DSP_RETRIES: must be at least 1, got '0'" in message
    assert "DSP_RUN_POLICY: expected one of on-change, always, never, got 'sometimes'" in message
    assert "\n" not in message


def test_plain_http_to_a_remote_host_is_refused_but_loopback_is_allowed():
    with pytest.raises(ConfigurationError, match="DSP_HOST: an http:// host would send"):
        load(["--host", "http://dsp.example.com"])
    assert load(["--host", "http://127.0.0.1:8888"]).host == "http://127.0.0.1:8888"


def test_unreadable_ca_bundle_is_named(tmp_path):
    with pytest.raises(ConfigurationError, match=r"DSP_CA_BUNDLE: cannot read CA bundle .*nope"):
        load(["--ca-bundle", str(tmp_path / "nope")])


def test_token_from_environment_is_trimmed_and_never_echoed(monkeypatch):
    monkeypatch.setenv("DSP_TOKEN", "  sha256~canary-token \n")
    assert load().token == "sha256~canary-token"
    monkeypatch.setenv("DSP_TOKEN", "two words")
    with pytest.raises(ConfigurationError) as caught:
        load()
    assert "two words" not in str(caught.value)
    assert "DSP_TOKEN" in str(caught.value)


def test_run_arguments_from_json_and_flags_flags_win(monkeypatch):
    monkeypatch.setenv("DSP_RUN_ARGS", '{"add-pipeline": {"a": 7, "b": "8"}}')
    settings = load(["--arg", "add-pipeline.b=9", "--arg", "Data Quality Gate.rows=5"])
    assert settings.run_args == {
        "add-pipeline": {"a": "7", "b": "9"},
        "Data Quality Gate": {"rows": "5"},
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ("not json", "DSP_RUN_ARGS: not valid JSON"),
        ('{"p": 1}', 'DSP_RUN_ARGS: expected {"pipeline": {"param": "value"}}'),
    ],
)
def test_bad_run_arguments(monkeypatch, env, message):
    monkeypatch.setenv("DSP_RUN_ARGS", env)
    with pytest.raises(ConfigurationError, match=message):
        load()


def test_bad_arg_flag():
    with pytest.raises(ConfigurationError, match=r"--arg: expected PIPELINE\.PARAM=VALUE"):
        load(["--arg", "novalue"])


def test_every_setting_has_an_environment_variable():
    names = Settings.env_vars()
    assert names["host"] == "DSP_HOST"
    assert all(env.isupper() for env in names.values())
