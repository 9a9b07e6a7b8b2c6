"""localdsp refuses what the kfp-tekton 1.5.x server refuses, with its status and words: a cron
robfig/cron v1 cannot parse (400) and text longer than the server's varchar(255) columns (500);
its scheduler keeps firing the other jobs when one job's cron never fires."""

import time

import kfp_tekton
import pytest

from localdsp.backend import Backend, PipelineSpec, Trigger
from localdsp.scheduler import Scheduler
from localdsp.server import LocalDSP
from tests.conftest import TOKEN, RawApi

pytestmark = pytest.mark.integration

JOBS = "/apis/v1beta1/jobs"
RUNS = "/apis/v1beta1/runs"
EXPERIMENTS = "/apis/v1beta1/experiments"
LONG = "x" * 256


@pytest.fixture
def pipeline_id(kfp_client, add_yaml):
    return kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline").id


def job_body(pipeline_id, **fields):
    return {
        "name": "nightly",
        "pipeline_spec": {"pipeline_id": pipeline_id},
        "max_concurrency": "1",
        "enabled": True,
        "trigger": {"cron_schedule": {"cron": "0 0 2 * * *"}},
        **fields,
    }


def gateway_error(code: int, message: str, internal: str) -> dict:
    """grpc-gateway's error body as the server sends it."""
    return {
        "error": internal,
        "code": code,
        "message": internal,
        "details": [
            {
                "@type": "type.googleapis.com/api.Error",
                "error_message": message,
                "error_details": internal,
            }
        ],
    }


# ---------------------------------------------------------------- cron


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("0 0 22-2 * * *", "Beginning of range (22) beyond end of range (2): 22-2"),
        ("0 0 0 * * FRI-MON", "Beginning of range (5) beyond end of range (1): FRI-MON"),
        ("0 0 0 * * 7", "End of range (7) above maximum (6): 7"),
        ("@daily ", "Unrecognized descriptor: @daily "),
    ],
)
def test_a_cron_robfig_refuses_is_the_servers_400(api, kfp_client, pipeline_id, cron, why):
    body = job_body(pipeline_id, trigger={"cron_schedule": {"cron": cron}})
    response = api("POST", JOBS, body=body)
    message = (
        "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron). "
        f"Error: {why}"
    )
    assert response.status == 400
    assert response.json == gateway_error(
        3, message, f"Validate create job request failed.: Invalid input error: {message}"
    )
    assert kfp_client.list_recurring_runs().jobs is None


def test_descriptors_and_five_fields_are_taken_as_the_server_takes_them(api, pipeline_id):
    for cron in ("@every 1h30m", "@weekly", "0 30 * * *"):
        body = job_body(pipeline_id, trigger={"cron_schedule": {"cron": cron}})
        assert api("POST", JOBS, body=body).status == 200, cron


# ---------------------------------------------------------------- lengths


def test_an_experiment_name_or_description_over_255_characters_is_the_servers_500(api):
    for fields, column in [
        ({"name": LONG}, "Name"),
        ({"name": "e", "description": LONG}, "Description"),
        ({"name": LONG, "description": LONG}, "Description"),  # the first column in the INSERT
    ]:
        response = api("POST", EXPERIMENTS, body=fields)
        mysql = f"Error 1406: Data too long for column '{column}' at row 1"
        assert response.status == 500
        assert response.json == gateway_error(
            13,
            "Internal Server Error",
            "Create experiment failed.: InternalServerError: Failed to add experiment to "
            f"experiment table: {mysql}: {mysql}",
        )
    assert (
        api("POST", EXPERIMENTS, body={"name": "x" * 255, "description": "d" * 255}).status == 200
    )
    names = [e["name"] for e in api("GET", EXPERIMENTS).json["experiments"]]
    assert sorted(names) == ["Default", "x" * 255]


@pytest.mark.parametrize(
    ("field", "column"), [("name", "DisplayName"), ("description", "Description")]
)
def test_a_run_name_or_description_over_255_characters_is_the_servers_500(
    api, kfp_client, pipeline_id, field, column
):
    body = {"name": "r", "pipeline_spec": {"pipeline_id": pipeline_id}, field: LONG}
    response = api("POST", RUNS, body=body)
    assert response.status == 500
    internal = response.json["error"]
    assert internal.startswith(
        "Failed to create a new run.: InternalServerError: Failed to store run "
    )
    assert internal.endswith(f" to table: Error 1406: Data too long for column '{column}' at row 1")
    assert response.json["details"][0]["error_message"] == "Internal Server Error"
    assert kfp_client.list_runs().runs is None


@pytest.mark.parametrize(
    ("fields", "column"),
    [
        ({"name": LONG}, "DisplayName"),
        ({"description": LONG}, "Description"),
        ({"trigger": {"cron_schedule": {"cron": "0 0 " + "1," * 130 + "2 * * *"}}}, "Schedule"),
    ],
)
def test_a_job_name_description_or_cron_over_255_characters_is_the_servers_500(
    api, kfp_client, pipeline_id, fields, column
):
    response = api("POST", JOBS, body=job_body(pipeline_id, **fields))
    assert response.status == 500
    internal = response.json["error"]
    assert internal.startswith("InternalServerError: Failed to store job ")
    assert internal.endswith(f" to table: Error 1406: Data too long for column '{column}' at row 1")
    assert kfp_client.list_recurring_runs().jobs is None


# ---------------------------------------------------------------- the scheduler


def runs_of(kfp_client, job_id):
    runs = kfp_client.list_runs(page_size=100).runs or []
    return [r for r in runs if any(ref.key.id == job_id for ref in r.resource_references or [])]


def test_a_cron_that_never_fires_does_not_stall_the_other_jobs(tmp_path, add_yaml):
    with LocalDSP(tmp_path / "data", tokens=[TOKEN], schedule=True) as dsp:
        client = kfp_tekton.TektonClient(host=dsp.url, existing_token=TOKEN)
        pipeline_id = client.upload_pipeline(str(add_yaml), "Add Pipeline").id
        api = RawApi(dsp.url)
        body = job_body(
            pipeline_id, name="feb-30", trigger={"cron_schedule": {"cron": "0 0 0 30 2 *"}}
        )
        never = api("POST", JOBS, body=body).json["id"]
        body = job_body(
            pipeline_id, name="each-second", trigger={"cron_schedule": {"cron": "* * * * * *"}}
        )
        each_second = api("POST", JOBS, body=body).json["id"]
        deadline = time.monotonic() + 15
        while not runs_of(client, each_second):
            assert time.monotonic() < deadline, "the every-second job never fired"
            time.sleep(0.1)
        assert runs_of(client, never) == []


def test_one_tick_starts_the_due_jobs_past_one_that_never_fires(tmp_path, add_yaml):
    backend = Backend(tmp_path)
    try:
        pipeline = backend.create_pipeline("p", "", add_yaml.read_bytes())
        spec = PipelineSpec(pipeline_id=pipeline.id)
        for name, cron in [("never", "0 0 0 31 4 *"), ("hourly", "0 0 * * * *")]:
            backend.create_job(
                name=name, pipeline_spec=spec, max_concurrency=1, enabled=True,
                trigger=Trigger(kind="cron", cron=cron),
            )  # fmt: skip
        scheduler = Scheduler(backend)
        assert scheduler.tick(now=1795603326.0) == []  # 2026-11-25T10:42:06Z
        (started,) = scheduler.tick(now=1795604400.0)  # 11:00:00
        assert backend.get_run(started).name.startswith("hourly")
    finally:
        backend.close()
