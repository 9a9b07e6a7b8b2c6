"""Schedules in the settings file become the server's recurring runs, and follow the file."""

import re
import textwrap

import kfp_tekton
import pytest
from conftest import TOKEN

from localdsp.server import LocalDSP
from runner import schedules
from runner.config import Schedule
from runner.errors import NotFoundError
from runner.flavour_v1.client import DSPClient
from runner.server import ServerJob
from runner_helpers import Project

pytestmark = pytest.mark.integration

SETTINGS = """
pipelines:
  Add Pipeline:
    schedules:
{schedules}
"""


@pytest.fixture
def project(tmp_path, localdsp, monkeypatch):
    project = Project(tmp_path, localdsp.url, "test-token")
    project.env(monkeypatch, DSP_RUN_POLICY="never")
    return project


def declare(project, *lines):
    body = "\n".join(f"      - {line}" for line in lines) if lines else "      []"
    (project.pipelines / "dsp-runner.yaml").write_text(
        textwrap.dedent(SETTINGS).format(schedules=body)
    )


def jobs(client):
    """(name, enabled, cron) of every recurring run on the server."""
    found = client.list_recurring_runs(page_size=100).jobs or []
    return sorted((j.name, bool(j.enabled), j.trigger.cron_schedule.cron) for j in found)


def test_add_change_remove_follow_the_file_and_a_second_deploy_is_a_no_op(
    project, capsys, kfp_client, localdsp
):
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    (first,) = jobs(kfp_client)
    assert first[0].startswith("add-pipeline-hourly-") and first[1:] == (True, "0 0 * * * *")

    localdsp.clear_requests()
    result = project.run(capsys)
    assert result.code == 0
    assert result.summary["counts"]["schedule_changes"] == 0
    writes = [r for r in localdsp.requests() if r["method"] in ("POST", "DELETE")]
    assert writes == []

    declare(project, '{name: hourly, cron: "0 30 * * * *"}')
    assert project.run(capsys).code == 0
    (changed,) = jobs(kfp_client)
    assert changed[1:] == (True, "0 30 * * * *") and changed[0] != first[0]

    declare(project, '{name: hourly, cron: "0 30 * * * *", enabled: false}')
    assert project.run(capsys).code == 0
    assert [j[1] for j in jobs(kfp_client)] == [False]

    declare(project)
    assert project.run(capsys).code == 0
    assert jobs(kfp_client) == []


@pytest.mark.parametrize(
    ("cron", "field"),
    [("0 0 22-2 * * *", "hours"), ("0 0 6 * * FRI-MON", "day of week")],
)
def test_a_cron_the_server_refuses_stops_the_deploy_before_any_upload(
    project, capsys, localdsp, kfp_client, cron, field
):
    declare(project, '{name: nightly, cron: "0 0 2 * * *"}', f'{{name: late, cron: "{cron}"}}')
    result = project.run(capsys)
    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    settings_file = project.pipelines / "dsp-runner.yaml"
    assert line.startswith(
        f"dsp-runner: ConfigurationError: {settings_file}: pipelines > Add Pipeline > "
        f"schedules > late > cron: '{cron}' is refused by the server (robfig/cron v1): {field} "
        "field: Beginning of range"
    )
    assert [r for r in localdsp.requests() if r["method"] != "GET"] == []
    assert kfp_client.list_pipelines().pipelines is None


def test_a_users_own_job_is_never_touched(project, capsys, kfp_client):
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    pipeline_id = kfp_client.get_pipeline_id("Add Pipeline")
    experiment = kfp_client.create_experiment("by-hand")
    kfp_client.create_recurring_run(
        experiment.id, "my own job", cron_expression="0 0 5 * * *", pipeline_id=pipeline_id
    )
    declare(project)
    assert project.run(capsys).code == 0
    assert jobs(kfp_client) == [("my own job", True, "0 0 5 * * *")]


def test_a_failure_between_create_and_delete_is_finished_by_the_next_deploy(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    declare(project, '{name: hourly, cron: "0 15 * * * *"}')
    monkeypatch.setenv("DSP_RETRIES", "1")
    localdsp.inject(
        method="POST",
        path=r"/apis/v1beta1/jobs/[^/]+/disable",
        action="status",
        status=503,
        times=1,
    )
    assert project.run(capsys).code == 1
    half_done = jobs(kfp_client)
    assert len(half_done) == 2
    assert sum(enabled for _, enabled, _ in half_done) == 1
    localdsp.clear_faults()
    assert project.run(capsys).code == 0
    assert [(enabled, cron) for _, enabled, cron in jobs(kfp_client)] == [(True, "0 15 * * * *")]


JOBS = "/apis/v1beta1/jobs"


def test_the_job_on_the_server_carries_the_declared_spec(project, capsys, kfp_client):
    declare(
        project,
        '{name: nightly, cron: "0 0 2 * * *", max_concurrency: 3, arguments: {b: "9"}}',
        '{name: weekly, cron: "0 0 3 * * 0", catchup: true, enabled: false}',
    )
    assert project.run(capsys).code == 0
    found = {j.name.split("-")[2]: j for j in kfp_client.list_recurring_runs(page_size=100).jobs}
    nightly, weekly = found["nightly"], found["weekly"]
    assert (nightly.max_concurrency, nightly.no_catchup, nightly.enabled) == ("3", True, True)
    assert {p.name: p.value for p in nightly.pipeline_spec.parameters} == {"a": "1", "b": "9"}
    assert (weekly.max_concurrency, bool(weekly.no_catchup), bool(weekly.enabled)) == (
        "1",
        False,
        False,
    )


def test_a_job_whose_experiment_is_deleted_again_and_again_fails_with_a_line_saying_so(
    project, capsys, localdsp
):
    declare(project, '{name: nightly, cron: "0 0 2 * * *"}')
    localdsp.inject(
        method="POST",
        path=JOBS,
        action="status",
        status=500,
        body='{"error_message": "Failed to get experiment.: ResourceNotFoundError: Experiment x"}',
        times=None,
    )
    result = project.run(capsys)
    assert result.code == 1
    (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
    assert re.fullmatch(
        r"create recurring run: experiment [0-9a-f-]+ was deleted on the server", add["error"]
    ), add["error"]


def test_duplicates_left_by_racing_deploys_are_reduced_to_one():
    want = schedules.desired("p", "p-abc", "e", {}, [Schedule("hourly", "0 0 * * * *")])
    mark = want[0].description
    twins = [
        ServerJob("b", want[0].name, mark, True, "e"),
        ServerJob("a", want[0].name, mark, True, "e"),
    ]
    plan = schedules.changes(want, twins)
    assert [j.id for j in plan.disable] == ["b"] and [j.id for j in plan.delete] == ["b"]
    assert plan.create == () and plan.enable == ()


class RecordingServer:
    """Records the recurring-run calls reconcile makes; `listed` is what jobs_named answers."""

    def __init__(self, listed=None):
        self.calls, self.listed = [], listed

    def create_job(self, **kwargs):
        self.calls.append(("create", kwargs))
        return ServerJob("j-new", kwargs["name"], kwargs["description"], False, "e1")

    def jobs_named(self, name):
        return self.listed if self.listed is not None else []

    def set_job_enabled(self, job_id, enabled):
        self.calls.append(("enabled", job_id, enabled))

    def delete_job(self, job_id):
        self.calls.append(("delete", job_id))


class NullLog:
    def info(self, event, **fields):
        pass


def test_a_new_schedule_is_created_disabled_with_its_whole_spec_then_enabled():
    """The job embeds what it runs at creation: each field must reach the server as declared."""
    schedule = Schedule(
        "nightly", "0 0 2 * * *", max_concurrency=3, catchup=True, arguments={"b": "9"}
    )
    (wanted,) = schedules.desired("add", "add-0123456789ab", "exp", {"a": "7"}, [schedule])
    server = RecordingServer()
    schedules.reconcile(
        server,
        experiment_id="e1",
        pipeline_id="p1",
        version_id="v1",
        want=[wanted],
        owned=[],
        log=NullLog(),
    )
    assert server.calls == [
        (
            "create",
            {
                "experiment_id": "e1",
                "name": wanted.name,
                "description": wanted.description,
                "pipeline_id": "p1",
                "version_id": "v1",
                "cron": "0 0 2 * * *",
                "max_concurrency": 3,
                "catchup": True,
                "enabled": False,
                "params": {"a": "7", "b": "9"},
            },
        ),
        ("enabled", "j-new", True),
    ]


def test_the_spec_hash_recipe_is_stable():
    """Job names carry it: a changed recipe would replace every deployed job after an upgrade."""
    schedule = Schedule("nightly", "0 0 2 * * *")
    assert schedules._spec_hash("add-0123456789ab", "exp", schedule, {"a": "7"}) == "a2df81893a"


def test_of_two_copies_of_a_new_job_the_lowest_id_stays_and_the_other_goes():
    """Two deploys racing each created the job: both agree to keep j-1, whoever made which."""
    (wanted,) = schedules.desired("add", "add-0123456789ab", "exp", {}, [Schedule("n", "@daily")])
    copies = [
        ServerJob("j-1", wanted.name, wanted.description, False, "e1"),
        ServerJob("j-2", wanted.name, wanted.description, False, "e1"),
    ]
    server = RecordingServer(listed=copies)
    kept = schedules._one_copy(server, wanted, copies[1], NullLog())
    assert kept.id == "j-1"
    assert server.calls == [("enabled", "j-2", False), ("delete", "j-2")]


def test_a_job_runs_exactly_the_version_just_shipped_and_names_its_pipeline(
    tmp_path, capsys, monkeypatch
):
    """On a server that does not make an upload the default, a job naming only its pipeline
    would run the old default version: the job names the version it was made for."""
    with LocalDSP(tmp_path / "data", tokens=[TOKEN], auto_update_default=False) as dsp:
        project = Project(tmp_path / "p", dsp.url, TOKEN)
        project.env(monkeypatch, DSP_RUN_POLICY="never")
        declare(project, '{name: nightly, cron: "0 0 2 * * *"}')
        assert project.run(capsys).code == 0
        project.edit("add_pipeline.py", 'b="7"', 'b="8"')
        result = project.run(capsys)
        assert result.code == 0, result.err
        (add,) = [p for p in result.summary["pipelines"] if p["pipeline"] == "Add Pipeline"]
        client = kfp_tekton.TektonClient(host=dsp.url, existing_token=TOKEN)
        (job,) = [j for j in client.list_recurring_runs(page_size=100).jobs if j.enabled]
        refs = [r.key.id for r in job.resource_references if r.key.type == "PIPELINE_VERSION"]
        assert refs == [add["version_id"]]
        assert job.pipeline_spec.pipeline_id == add["pipeline_id"]


def test_any_one_kind_of_change_is_work_to_do_and_none_is_nothing():
    """apply reconciles a pipeline's schedules only when its changes are truthy: a schedule
    switched off (one disable and nothing else) must still be carried out."""
    (wanted,) = schedules.desired("add", "add-1", "exp", {}, [Schedule("n", "@daily")])
    job = ServerJob("j-1", "job", "", True, "e1")
    assert not schedules.Changes()
    for changes in (
        schedules.Changes(create=(wanted,)),
        schedules.Changes(enable=(job,)),
        schedules.Changes(disable=(job,)),
        schedules.Changes(delete=(job,)),
    ):
        assert changes


def test_the_plan_lists_each_change_in_the_order_it_is_made_and_marks_a_disabled_create():
    on, off = (
        schedules.desired("add", "add-1", "exp", {}, [Schedule(name, "@daily", enabled=enabled)])[0]
        for name, enabled in (("on", True), ("off", False))
    )
    a, b, c = (ServerJob(i, f"job-{i}", "", True, "e1") for i in "abc")
    changes = schedules.Changes(create=(on, off), enable=(a,), disable=(b,), delete=(c,))
    assert changes.describe() == [
        f"create {on.name}",
        f"create {off.name} (disabled)",
        "enable job-a",
        "disable job-b",
        "delete job-c",
    ]


def test_a_long_pipeline_keeps_the_spec_in_its_job_name_and_its_mark_in_the_description():
    """A long pipeline slug and version name: the name keeps its last 100 characters (ending in
    the spec), the description its first 255 (starting with the mark that says whose it is)."""
    slug, schedule = "a" * 80, Schedule("n" * 40, "@daily")
    (wanted,) = schedules.desired(slug, "v" * 150, "exp", {}, [schedule])
    assert len(wanted.name) == 100 and wanted.name.endswith(f"{'n' * 40}-{wanted.spec}")
    assert len(wanted.description) == schedules.MAX_DESCRIPTION
    assert schedules.owned_by(slug, [ServerJob("j", wanted.name, wanted.description, True, "e")])


def test_a_job_a_racing_deploy_made_after_the_listing_is_adopted_not_made_twice(
    project, capsys, kfp_client, localdsp, monkeypatch
):
    declare(project, '{name: nightly, cron: "0 0 2 * * *"}')
    create_job, rival = DSPClient.create_job, []

    def racing(self, **job):
        if not rival:
            made = kfp_client.create_recurring_run(
                job["experiment_id"],
                job["name"],
                description=job["description"],
                cron_expression=job["cron"],
                version_id=job["version_id"],
                enabled=False,
            )
            rival.append(made.id)
            localdsp.clear_requests()
        return create_job(self, **job)

    monkeypatch.setattr(DSPClient, "create_job", racing)
    assert project.run(capsys).code == 0
    (job,) = kfp_client.list_recurring_runs(page_size=100).jobs
    assert (job.id, job.enabled) == (rival[0], True)
    made = [r for r in localdsp.requests() if (r["method"], r["path"]) == ("POST", JOBS)]
    assert made == [], "the rival's job is found by its name before creating"


class Log:
    """Records the events reconcile logs."""

    def __init__(self):
        self.events = []

    def info(self, event, **fields):
        self.events.append(event)


def test_a_changed_schedule_never_has_two_enabled_jobs_on_the_way():
    """New job made disabled, the old one disabled, the new one enabled, the old one deleted."""
    (old,) = schedules.desired("add", "add-1", "exp", {}, [Schedule("n", "@daily")])
    (new,) = schedules.desired("add", "add-2", "exp", {}, [Schedule("n", "@daily")])
    server = RecordingServer()
    schedules.reconcile(
        server,
        experiment_id="e1",
        pipeline_id="p1",
        version_id="v2",
        want=[new],
        owned=[ServerJob("j-old", old.name, old.description, True, "e1")],
        log=NullLog(),
    )
    assert [c[0] for c in server.calls] == ["create", "enabled", "enabled", "delete"]
    assert server.calls[1:] == [
        ("enabled", "j-old", False),
        ("enabled", "j-new", True),
        ("delete", "j-old"),
    ]


def test_a_job_toggled_by_hand_is_put_back_as_declared():
    (on,) = schedules.desired("add", "add-1", "exp", {}, [Schedule("on", "@daily")])
    (off,) = schedules.desired(
        "add", "add-1", "exp", {}, [Schedule("off", "@daily", enabled=False)]
    )
    owned = [
        ServerJob("j-on", on.name, on.description, False, "e1"),
        ServerJob("j-off", off.name, off.description, True, "e1"),
    ]
    plan = schedules.changes([on, off], owned)
    assert ([j.id for j in plan.enable], [j.id for j in plan.disable]) == (["j-on"], ["j-off"])
    assert plan.create == () and plan.delete == ()


def test_of_copies_of_one_spec_an_enabled_one_stays_before_a_lower_id():
    (wanted,) = schedules.desired("add", "add-1", "exp", {}, [Schedule("n", "@daily")])
    copies = [
        ServerJob("j-1", wanted.name, wanted.description, False, "e1"),
        ServerJob("j-2", wanted.name, wanted.description, True, "e1"),
    ]
    plan = schedules.changes([wanted], copies)
    assert [j.id for j in plan.delete] == ["j-1"] and plan.disable == () and plan.enable == ()


class TakenOverServer(RecordingServer):
    """The first job's enable finds it gone: a racing deploy kept its own copy."""

    def set_job_enabled(self, job_id, enabled):
        super().set_job_enabled(job_id, enabled)
        if job_id == "j-a" and enabled:
            raise NotFoundError("enable recurring run: not found")

    def create_job(self, **kwargs):
        self.calls.append(("create", kwargs))
        return ServerJob(
            f"j-{kwargs['name'][4]}", kwargs["name"], kwargs["description"], False, "e1"
        )


def test_a_job_taken_over_by_a_racing_deploy_does_not_stop_the_next_one_being_enabled():
    want = schedules.desired(
        "add", "add-1", "exp", {}, [Schedule("a", "@daily"), Schedule("b", "@hourly")]
    )
    server, log = TakenOverServer(), Log()
    schedules.reconcile(
        server, experiment_id="e1", pipeline_id="p1", version_id="v1", want=want, owned=[], log=log
    )
    assert [c for c in server.calls if c[0] == "enabled"] == [
        ("enabled", "j-a", True),
        ("enabled", "j-b", True),
    ]
    assert log.events.count("schedule_taken_over") == 1 and "schedule_enabled" in log.events


def test_a_copy_removed_after_a_race_is_logged():
    (wanted,) = schedules.desired("add", "add-1", "exp", {}, [Schedule("n", "@daily")])
    copies = [
        ServerJob("j-0", wanted.name, wanted.description, False, "e1"),
        ServerJob("j-new", wanted.name, wanted.description, False, "e1"),
    ]
    log = Log()
    schedules.reconcile(
        RecordingServer(listed=copies),
        experiment_id="e1",
        pipeline_id="p1",
        version_id="v1",
        want=[wanted],
        owned=[],
        log=log,
    )
    assert log.events == ["schedule_duplicate_removed", "schedule_created", "schedule_enabled"]


def test_a_schedule_is_replaced_when_its_version_experiment_cron_or_arguments_change():
    """The spec (in the job's name and mark) covers everything a job runs with; a change to
    any of it makes a new job, and the run arguments merge the schedule's over the pipeline's."""
    nightly = Schedule("nightly", "0 0 2 * * *", arguments={"b": "9"})
    (base,) = schedules.desired("add", "add-1", "exp", {"a": "1", "b": "2"}, [nightly])
    assert base.params == {"a": "1", "b": "9"}
    assert base.name == f"add-nightly-{base.spec}"
    assert base.description == (
        f"dsp-runner schedule add/nightly spec {base.spec}; version add-1; cron 0 0 2 * * *"
    )
    variants = [
        ("add-2", "exp", {"a": "1", "b": "2"}, nightly),
        ("add-1", "other", {"a": "1", "b": "2"}, nightly),
        ("add-1", "exp", {"a": "3", "b": "2"}, nightly),
        (
            "add-1",
            "exp",
            {"a": "1", "b": "2"},
            Schedule("nightly", "0 0 3 * * *", arguments={"b": "9"}),
        ),
        (
            "add-1",
            "exp",
            {"a": "1", "b": "2"},
            Schedule("nightly", "0 0 2 * * *", arguments={"b": "8"}),
        ),
    ]
    specs = {schedules.desired("add", v, e, p, [s])[0].spec for v, e, p, s in variants}
    assert base.spec not in specs and len(specs) == len(variants)


def test_a_schedule_follows_the_experiment_and_names_its_version(
    project, capsys, kfp_client, monkeypatch
):
    """Moving the pipeline to another experiment moves its recurring run there; the job's
    description names the version it runs."""
    declare(project, '{name: hourly, cron: "0 0 * * * *"}')
    assert project.run(capsys).code == 0
    monkeypatch.setenv("DSP_EXPERIMENT", "nightly-checks")
    assert project.run(capsys).code == 0

    (job,) = kfp_client.list_recurring_runs(page_size=100).jobs
    refs = {r.key.type: r.key.id for r in job.resource_references}
    assert kfp_client.get_experiment(experiment_id=refs["EXPERIMENT"]).name == "nightly-checks"
    version = kfp_client.pipelines.get_pipeline_version(refs["PIPELINE_VERSION"])
    assert f"; version {version.name}; cron 0 0 * * * *" in job.description
