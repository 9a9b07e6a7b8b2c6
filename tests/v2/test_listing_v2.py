"""The v2 client's pipeline listing: every pipeline's newest version from the one v1beta1
listing when that version carries dsp-runner's parameter signature, the v2beta1 lookup for any
other pipeline, and for all when the listing fails; what a deploy then plans."""

import pytest
from v2_helpers import server_state, writes

from runner_helpers import client_for, events, next_second, write

pytestmark = pytest.mark.integration
V1_PIPELINES = "/apis/v1beta1/pipelines"
VERSIONS = r"/apis/v2beta1/pipelines/[^/]+/versions"
NEEDS_X = """
from kfp import dsl

@dsl.component
def echo(x: int) -> int:
    return x

@dsl.pipeline(name="Needs X")
def needs_x(x: int, label: str = "a b", ratio: float = 0.5, tags: list = ["p", "q"]):
    echo(x=x)
"""


def _lookups(dsp) -> int:
    """The per-pipeline version listings sent (GET .../pipelines/<id>/versions)."""
    return sum(1 for r in dsp.requests() if r["path"].endswith("/versions"))


def _client(project, dsp):
    from runner import auth

    return client_for(dsp.url, auth.credentials("", project.token_file), retries=0, concurrency=2)


def _with_needs_x(project, arguments: str = "{x: 3}") -> None:
    write(project.pipelines, "needs_x.py", NEEDS_X)
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(settings.read_text() + f"\n  needs-x:\n    arguments: {arguments}\n")


def test_the_listing_gives_what_the_per_pipeline_lookups_give(project, capsys, dsp):
    """Names, versions, descriptions, parameters (with their types, which type run arguments)
    and created_at, with one request instead of one per pipeline."""
    _with_needs_x(project)
    first = project.run(capsys)
    assert first.code == 0, first.err
    dsp.clear_requests()
    fast = _client(project, dsp)
    listed = sorted(fast.list_pipelines(), key=lambda p: p.name)
    assert _lookups(dsp) == 0
    dsp.inject(method="GET", path=V1_PIPELINES, action="status", status=404, times=1)
    slow = _client(project, dsp)
    assert sorted(slow.list_pipelines(), key=lambda p: p.name) == listed
    assert _lookups(dsp) == 4
    assert fast._types == slow._types
    (needs_x,) = [p for p in listed if p.name == "needs-x"]
    assert dict(needs_x.default_version.parameters) == {
        "x": None,
        "label": "a b",
        "ratio": "0.5",
        "tags": '["p", "q"]',
    }


def test_a_version_another_tool_uploaded_since_is_seen_as_a_change(
    project, capsys, dsp, kfp_client
):
    assert project.run(capsys).code == 0
    pipelines, _ = server_state(kfp_client)
    add = pipelines["Add Pipeline"]
    spec = kfp_client.get_pipeline_version(add["id"], add["version_ids"][add["newest"]])
    (project.root / "hand.yaml").write_text(_spec_yaml(spec.pipeline_spec))
    next_second()
    kfp_client.upload_pipeline_version(
        str(project.root / "hand.yaml"), pipeline_version_name="by-hand", pipeline_id=add["id"]
    )
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0, result.err
    actions = {p["pipeline"]: p["action"] for p in result.summary["pipelines"]}
    assert actions == {
        "Add Pipeline": "set-default",
        "Data Quality Gate": "unchanged",
        "Train and Evaluate": "unchanged",
    }
    assert _lookups(dsp) == 2  # the hand-made newest version, then ours by name


def _spec_yaml(spec: dict) -> str:
    from runner.flavour_v2 import wire

    return wire.spec_file(spec)


def test_a_failing_listing_falls_back_to_one_lookup_per_pipeline(project, capsys, dsp):
    assert project.run(capsys).code == 0
    dsp.inject(method="GET", path=V1_PIPELINES, action="status", status=500, times=None)
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert "0 new version(s), 3 unchanged" in result.out
    assert writes(dsp) == []
    assert _lookups(dsp) == 3


def test_a_server_with_the_kubernetes_store_is_not_asked_for_the_listing(project, capsys, dsp):
    """KFP 2.14+ says `pipeline_store` in healthz; its Kubernetes store answers the v1beta1
    listing with a 500, so the runner goes straight to the per-pipeline lookups."""
    assert project.run(capsys).code == 0
    dsp.inject(
        method="GET",
        path="/apis/v2beta1/healthz",
        action="status",
        status=200,
        body='{"commit_sha":"x","tag_name":"2.14.0","multi_user":false,'
        '"pipeline_store":"kubernetes"}',
        times=None,
    )
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0, result.err
    assert not [r for r in dsp.requests() if r["path"] == V1_PIPELINES]
    assert _lookups(dsp) == 3


def test_a_no_op_still_refuses_a_required_parameter_left_without_a_value(project, capsys, dsp):
    _with_needs_x(project)
    assert project.run(capsys).code == 0
    settings = project.pipelines / "dsp-runner.yaml"
    settings.write_text(settings.read_text().replace("arguments: {x: 3}", "arguments: {}"))
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 1
    assert "pipeline 'needs-x' needs a value for x (no default)" in result.err
    assert _lookups(dsp) == 0
    assert not any(e["event"] == "compile_started" for e in events(result.err))


def test_a_no_op_leaves_the_schedules_alone(project, capsys, dsp, kfp_client):
    """The schedule's spec hash holds the parameters' defaults: read from the signature they
    must be what the compile said, or every no-op would replace the nightly schedule."""
    assert project.run(capsys).code == 0
    before = [j.recurring_run_id for j in kfp_client.list_recurring_runs().recurring_runs]
    dsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0
    assert writes(dsp) == []
    assert [j.recurring_run_id for j in kfp_client.list_recurring_runs().recurring_runs] == before


def test_a_pipeline_left_without_a_version_gets_it_on_the_next_deploy(
    project, capsys, dsp, kfp_client
):
    dsp.inject(
        method="POST",
        path="/apis/v2beta1/pipelines/upload_version",
        action="status",
        status=400,
        times=1,
    )
    assert project.run(capsys).code == 1
    result = project.run(capsys)
    assert result.code == 0, result.err
    pipelines, _ = server_state(kfp_client)
    assert all(p["versions"] == [p["newest"]] for p in pipelines.values())
