"""The v2 flavour's status words and wire shapes (pure)."""

import datetime
import json
from types import SimpleNamespace

import pytest

from runner import generation
from runner.flavour_v2 import states, wire
from runner.server import FAILED, RUNNING, SUCCESS

T0 = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("state", "outcome"),
    [
        ("SUCCEEDED", SUCCESS),
        ("SKIPPED", SUCCESS),
        ("FAILED", FAILED),
        ("CANCELED", FAILED),
        ("PENDING", RUNNING),
        ("RUNNING", RUNNING),
        ("CANCELING", RUNNING),
        ("PAUSED", RUNNING),
        ("RUNTIME_STATE_UNSPECIFIED", RUNNING),
        ("", RUNNING),
    ],
)
def test_each_v2_state_has_its_outcome(state, outcome):
    assert states.outcome_of(state) == outcome


def version(name, created_at):
    return SimpleNamespace(display_name=name, created_at=created_at)


def test_the_newest_version_wins_and_the_implicit_first_one_loses_a_tie():
    later = T0 + datetime.timedelta(seconds=1)
    assert wire.newest([version("b", later), version("a", T0)], "P").display_name == "b"
    tie = [version("P", T0), version("p-123", T0)]
    assert wire.newest(tie, "P").display_name == "p-123"
    assert wire.newest([version("P", T0)], "P").display_name == "P"
    assert wire.newest([], "P") is None


def test_filters_name_their_operator_operation_on_display_name():
    (predicate,) = json.loads(wire.names_filter(["a", "b"]))["predicates"]
    assert predicate == {
        "operation": "IN",
        "key": "display_name",
        "string_values": {"values": ["a", "b"]},
    }
    assert json.loads(wire.name_filter("x"))["predicates"][0]["operation"] == "EQUALS"


def test_task_outputs_are_optional_as_a_real_server_never_sends_them():
    assert wire.task_outputs({}) == {}
    real = {"run_details": {"task_details": [{"display_name": "add", "state": "SUCCEEDED"}]}}
    assert wire.task_outputs(real) == {}
    local = {
        "run_details": {
            "task_details": [
                {"display_name": "add-2", "output_parameters": {"Output": 19.0}},
                {"display_name": "split", "output_parameters": {"Output": [1, 2]}},
            ]
        }
    }
    assert wire.task_outputs(local) == {
        "add-2": {"Output": "19.0"},
        "split": {"Output": "[1, 2]"},
    }


@pytest.mark.parametrize(
    ("tag", "release"),
    [("2.16.0", (2, 16, 0)), ("v2.5.0", (2, 5, 0)), ("localdsp", None), ("", None)],
)
def test_the_server_release_is_read_from_healthz_or_taken_as_unknown(tag, release):
    assert generation.version_of(tag) == release
