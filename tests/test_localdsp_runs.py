"""Experiments, runs and recurring runs: validation, which manifest runs, and the executor hook."""

import json
import threading

import kfp_tekton
import pytest

from localdsp.server import LocalDSP

pytestmark = pytest.mark.integration

RUNS = "/apis/v1beta1/runs"
JOBS = "/apis/v1beta1/jobs"
EXPERIMENTS = "/apis/v1beta1/experiments"


@pytest.fixture
def version(kfp_client, add_yaml):
    """An uploaded pipeline with a second version "v2" (the default)."""
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    return kfp_client.upload_pipeline_version(str(add_yaml), "v2", pipeline_id=pipeline.id)


@pytest.fixture
def experiment(kfp_client):
    return kfp_client.create_experiment("exp")


def _pipeline_id(version) -> str:
    return version.resource_references[0].key.id


def _error_message(response) -> str:
    return response.json["details"][0]["error_message"]


# ---------------------------------------------------------------- experiments


def test_create_experiment_is_get_or_create_in_the_client(kfp_client):
    created = kfp_client.create_experiment("exp", description="d")
    assert kfp_client.create_experiment("exp").id == created.id
    fetched = kfp_client.get_experiment(experiment_name="exp")
    assert (fetched.id, fetched.description, fetched.storage_state) == (
        created.id,
        "d",
        "STORAGESTATE_AVAILABLE",
    )
    assert kfp_client.get_experiment(experiment_id=created.id).name == "exp"


def test_a_taken_experiment_name_is_a_409(api):
    assert api("POST", EXPERIMENTS, body={"name": "exp"}).status == 200
    response = api("POST", EXPERIMENTS, body={"name": "EXP"})
    assert response.status == 409
    assert response.json["code"] == 6
    assert _error_message(response) == (
        "Failed to create a new experiment. The name EXP already exists. Please specify a new name."
    )


def test_experiments_refuse_resource_references_and_namespace_filters(api):
    reference = {"key": {"type": "NAMESPACE", "id": "team"}, "relationship": "OWNER"}
    response = api("POST", EXPERIMENTS, body={"name": "e", "resource_references": [reference]})
    assert response.status == 400
    assert _error_message(response) == (
        "In single-user mode, CreateExperimentRequest shouldn't contain resource references."
    )
    query = {"resource_reference_key.type": "NAMESPACE", "resource_reference_key.id": "team"}
    listed = api("GET", EXPERIMENTS, query=query)
    assert listed.status == 400
    assert (
        _error_message(listed) == "In single-user mode, ListExperiment cannot filter by namespace."
    )


def test_an_empty_experiment_name_is_a_400(api):
    response = api("POST", EXPERIMENTS, body={"name": ""})
    assert response.status == 400


def test_the_default_experiment_exists_from_the_start(kfp_client):
    (default,) = kfp_client.list_experiments().experiments
    assert default.name == "Default"


def test_archiving_an_experiment_archives_its_runs_and_disables_its_jobs(
    kfp_client, api, version, experiment
):
    run = kfp_client.run_pipeline(experiment.id, "r", version_id=version.id)
    job = kfp_client.create_recurring_run(
        experiment.id, "j", cron_expression="0 0 * * * *", version_id=version.id
    )
    assert api("POST", f"{EXPERIMENTS}/{experiment.id}:archive").status == 200
    assert kfp_client.get_experiment(experiment.id).storage_state == "STORAGESTATE_ARCHIVED"
    assert kfp_client.get_run(run.id).run.storage_state == "STORAGESTATE_ARCHIVED"
    assert not kfp_client.get_recurring_run(job.id).enabled
    assert api("POST", f"{EXPERIMENTS}/{experiment.id}:unarchive").status == 200
    assert kfp_client.get_experiment(experiment.id).storage_state == "STORAGESTATE_AVAILABLE"


def test_deleting_an_experiment(kfp_client, api, experiment):
    kfp_client.delete_experiment(experiment.id)
    assert api("GET", f"{EXPERIMENTS}/{experiment.id}").status == 404


# ---------------------------------------------------------------- runs


def test_a_run_of_a_version_gets_the_pipelinerun_named_after_the_run_id(
    kfp_client, version, experiment
):
    run = kfp_client.run_pipeline(
        experiment.id, "first run", version_id=version.id, params={"a": "3", "zzz": "ignored"}
    )
    assert run.status is None
    refs = {(r.key.type, r.relationship): (r.key.id, r.name) for r in run.resource_references}
    assert refs == {
        ("EXPERIMENT", "OWNER"): (experiment.id, "exp"),
        ("PIPELINE_VERSION", "CREATOR"): (version.id, "v2"),
    }
    detail = kfp_client.get_run(run.id)
    pipelinerun = json.loads(detail.pipeline_runtime.workflow_manifest)
    assert pipelinerun["metadata"]["name"] == f"add-pipeline-{run.id[:5]}"
    assert pipelinerun["metadata"]["labels"]["pipeline/runid"] == run.id
    assert {p["name"]: p["value"] for p in pipelinerun["spec"]["params"]} == {"a": "3", "b": "7"}
    assert pipelinerun["spec"]["serviceAccountName"] == "pipeline-runner-dspa"
    assert "status" not in pipelinerun
    assert detail.run.finished_at.year == 1970
    assert [(p.name, p.value) for p in detail.run.pipeline_spec.parameters] == [
        ("a", "3"),
        ("zzz", "ignored"),
    ]


def test_a_run_with_only_a_pipeline_id_uses_and_records_the_default_version(
    kfp_client, version, experiment
):
    run = kfp_client.run_pipeline(experiment.id, "r", pipeline_id=_pipeline_id(version))
    versions = [r.key.id for r in run.resource_references if r.key.type == "PIPELINE_VERSION"]
    assert versions == [version.id]
    assert run.pipeline_spec.pipeline_name == "Add Pipeline"


def test_a_run_without_an_experiment_goes_to_default(api, version):
    body = {
        "name": "r",
        "resource_references": [
            {"key": {"type": "PIPELINE_VERSION", "id": version.id}, "relationship": "CREATOR"}
        ],
    }
    run = api("POST", RUNS, body=body).json["run"]
    (owner,) = [r for r in run["resource_references"] if r["key"]["type"] == "EXPERIMENT"]
    assert owner["name"] == "Default"


def test_a_run_from_a_package_carries_its_own_manifest(kfp_client, add_yaml, experiment):
    run = kfp_client.run_pipeline(experiment.id, "r", pipeline_package_path=str(add_yaml))
    assert json.loads(run.pipeline_spec.workflow_manifest)["kind"] == "PipelineRun"
    assert [r.key.type for r in run.resource_references] == ["EXPERIMENT"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": ""}, "The run name is empty. Please specify a valid name."),
        (
            {"name": "r"},
            "Please specify a pipeline by providing a (workflow manifest or pipeline manifest) "
            "or (pipeline id or/and pipeline version).",
        ),
        (
            {"name": "r", "pipeline_spec": {"pipeline_id": "P", "workflow_manifest": "{}"}},
            "Please don't specify a pipeline version or pipeline ID when you specify a workflow "
            "manifest or pipeline manifest.",
        ),
        (
            {"name": "r", "pipeline_spec": {"workflow_manifest": "kind: PipelineRun"}},
            "Invalid argo workflow format. Workflow: kind: PipelineRun",
        ),
    ],
)
def test_run_requests_are_validated(api, body, message):
    response = api("POST", RUNS, body=body)
    assert response.status == 400
    assert _error_message(response) == message


def test_the_pipeline_must_be_the_parent_of_the_version(kfp_client, api, add_yaml, version):
    other = kfp_client.upload_pipeline(str(add_yaml), "Other")
    body = {
        "name": "r",
        "pipelineSpec": {"pipelineId": other.id},
        "resourceReferences": [{"key": {"type": 4, "id": version.id}, "relationship": "CREATOR"}],
    }
    response = api("POST", RUNS, body=body)
    assert response.status == 400
    assert _error_message(response) == "pipeline ID should be parent of pipeline version."


def test_unknown_versions_and_pipelines_are_404s(api, version):
    def run_with(spec, references):
        return api("POST", RUNS, body={"name": "r", "pipeline_spec": spec, **references})

    experiment = {"key": {"type": "EXPERIMENT", "id": "nope"}, "relationship": "OWNER"}
    missing_version = {"key": {"type": "PIPELINE_VERSION", "id": "nope"}, "relationship": 2}
    assert run_with({}, {"resource_references": [missing_version, experiment]}).status == 404
    assert run_with({"pipeline_id": "nope"}, {}).status == 404


def test_a_run_or_job_in_a_deleted_experiment_is_the_server_s_500(kfp_client, api, version):
    """The server looks the experiment up only to find its namespace, after validation, and
    turns its 404 into an internal error (getNamespaceFromExperiment)."""
    gone = kfp_client.create_experiment("gone")
    kfp_client.delete_experiment(gone.id)
    references = [
        {"key": {"type": "EXPERIMENT", "id": gone.id}, "relationship": "OWNER"},
        {"key": {"type": "PIPELINE_VERSION", "id": version.id}, "relationship": "CREATOR"},
    ]
    chain = (
        "InternalServerError: Failed to get experiment.: "
        f"ResourceNotFoundError: Experiment {gone.id} not found."
    )
    run = api("POST", RUNS, body={"name": "r", "resource_references": references})
    assert run.status == 500
    assert run.json == {
        "error": f"Failed to create a new run.: {chain}",
        "code": 13,
        "message": f"Failed to create a new run.: {chain}",
        "details": [
            {
                "@type": "type.googleapis.com/api.Error",
                "error_message": "Internal Server Error",
                "error_details": f"Failed to create a new run.: {chain}",
            }
        ],
    }
    job = api(
        "POST",
        "/apis/v1beta1/jobs",
        body={
            "name": "j",
            "enabled": True,
            "max_concurrency": "1",
            "trigger": {"cron_schedule": {"cron": "0 0 * * * *"}},
            "resource_references": references,
        },
    )
    assert job.status == 500
    assert job.json["message"] == chain
    assert job.json["details"][0]["error_message"] == "Internal Server Error"


def test_run_names_need_not_be_unique(kfp_client, version, experiment):
    kfp_client.run_pipeline(experiment.id, "same", version_id=version.id)
    kfp_client.run_pipeline(experiment.id, "same", version_id=version.id)
    assert kfp_client.list_runs(experiment_id=experiment.id).total_size == 2


def test_list_runs_by_experiment_and_filter(kfp_client, version, experiment):
    other = kfp_client.create_experiment("other")
    for name in ("a", "b"):
        kfp_client.run_pipeline(experiment.id, name, version_id=version.id)
    kfp_client.run_pipeline(other.id, "a", version_id=version.id)
    in_experiment = kfp_client.list_runs(experiment_id=experiment.id, page_size=10)
    assert sorted(r.name for r in in_experiment.runs) == ["a", "b"]
    name_a = json.dumps({"predicates": [{"op": 1, "key": "name", "stringValue": "a"}]})
    assert kfp_client.list_runs(page_size=10, filter=name_a).total_size == 2
    both = kfp_client.list_runs(experiment_id=experiment.id, filter=name_a)
    assert [r.name for r in both.runs] == ["a"]


def test_terminate_marks_a_pending_run_terminating_once(kfp_client, api, version, experiment):
    run = kfp_client.run_pipeline(experiment.id, "r", version_id=version.id)
    assert kfp_client.runs.terminate_run(run.id) == {}
    detail = kfp_client.get_run(run.id)
    assert detail.run.status == "Terminating"
    assert json.loads(detail.pipeline_runtime.workflow_manifest)["spec"]["status"] == "Cancelled"
    again = api("POST", f"{RUNS}/{run.id}/terminate")
    assert again.status == 400
    assert _error_message(again) == f"Failed to terminate run {run.id}. Row not found."


def test_retry_needs_a_failed_run(api, kfp_client, version, experiment):
    run = kfp_client.run_pipeline(experiment.id, "r", version_id=version.id)
    response = api("POST", f"{RUNS}/{run.id}/retry")
    assert response.status == 400
    assert _error_message(response) == "Workflow must be Failed/Error to retry"


def test_runs_can_be_deleted_and_archived(api, kfp_client, version, experiment):
    run = kfp_client.run_pipeline(experiment.id, "r", version_id=version.id)
    assert api("POST", f"{RUNS}/{run.id}:archive").status == 200
    assert kfp_client.get_run(run.id).run.storage_state == "STORAGESTATE_ARCHIVED"
    assert api("POST", f"{RUNS}/{run.id}:unarchive").status == 200
    assert kfp_client.get_run(run.id).run.storage_state is None  # AVAILABLE is the zero value
    assert api("DELETE", f"{RUNS}/{run.id}").status == 200
    assert api("GET", f"{RUNS}/{run.id}").status == 404


def test_the_run_log_endpoint_without_an_executor_is_a_500(api, kfp_client, version, experiment):
    run = kfp_client.run_pipeline(experiment.id, "r", version_id=version.id)
    response = api("GET", f"{RUNS}/{run.id}/nodes/add/log")
    assert response.status == 500
    assert "error_message" in response.json


# ---------------------------------------------------------------- the executor hook


class RecordingExecutor:
    """An executor that runs nothing: it keeps what it was asked and reports on demand."""

    def __init__(self):
        self.started: list[tuple[str, dict]] = []
        self.terminated: list[str] = []
        self.callbacks = {}
        self.ready = threading.Event()

    def start(self, run_id, pipelinerun, on_status):
        self.started.append((run_id, pipelinerun))
        self.callbacks[run_id] = on_status
        self.ready.set()

    def terminate(self, run_id):
        self.terminated.append(run_id)

    def read_log(self, run_id, node_id):
        return f"log of {node_id}\n"

    def report(self, run_id, reason):
        pipelinerun = dict(self.started[-1][1])
        pipelinerun["status"] = {"conditions": [{"type": "Succeeded", "reason": reason}]}
        self.callbacks[run_id](reason, pipelinerun)


@pytest.fixture
def executor_dsp(tmp_path):
    executor = RecordingExecutor()
    with LocalDSP(tmp_path / "data", tokens=["t"], executor=executor) as dsp:
        yield dsp, executor


def test_the_executor_gets_each_committed_run_and_reports_back(executor_dsp, add_yaml):
    dsp, executor = executor_dsp
    client = kfp_tekton.TektonClient(host=dsp.url, existing_token="t")
    experiment = client.create_experiment("exp")
    run = client.run_pipeline(experiment.id, "r", pipeline_package_path=str(add_yaml))
    ((run_id, pipelinerun),) = executor.started
    assert run_id == run.id
    assert pipelinerun["metadata"]["name"] == f"add-pipeline-{run.id[:5]}"

    executor.report(run.id, "Running")
    assert client.get_run(run.id).run.status == "Running"
    executor.report(run.id, "Failed")
    detail = client.get_run(run.id)
    assert detail.run.status == "Failed"
    assert detail.run.finished_at.year > 1970
    assert json.loads(detail.pipeline_runtime.workflow_manifest)["status"]["conditions"]

    client.runs.retry_run(run.id)
    assert [started[0] for started in executor.started] == [run.id, run.id]
    assert client.get_run(run.id).run.status is None
    client.runs.terminate_run(run.id)
    assert executor.terminated == [run.id]


def test_the_log_endpoint_asks_the_executor(executor_dsp, api_for, add_yaml):
    dsp, _ = executor_dsp
    api = api_for(dsp.url, token="t")
    run = api(
        "POST",
        RUNS,
        body={
            "name": "r",
            "pipeline_spec": {
                "workflow_manifest": json.dumps(
                    {
                        "apiVersion": "tekton.dev/v1beta1",
                        "kind": "PipelineRun",
                        "metadata": {"name": "p"},
                    }
                )
            },
        },
    ).json["run"]
    response = api("GET", f"{RUNS}/{run['id']}/nodes/add/log")
    assert (response.status, response.text) == (200, "log of add\n")
    assert response.headers["content-type"].startswith("text/plain")


# ---------------------------------------------------------------- recurring runs (jobs)


def test_a_recurring_run_pins_its_manifest_and_can_be_disabled_and_deleted(
    kfp_client, api, add_yaml, version, experiment
):
    job = kfp_client.create_recurring_run(
        experiment.id,
        "nightly",
        cron_expression="0 0 2 * * *",
        version_id=version.id,
        params={"a": "5"},
        max_concurrency=2,
        no_catchup=True,
    )
    assert (job.enabled, job.max_concurrency, job.no_catchup) == (True, "2", True)
    assert job.trigger.cron_schedule.cron == "0 0 2 * * *"
    assert json.loads(job.pipeline_spec.workflow_manifest)["kind"] == "PipelineRun"
    kfp_client.upload_pipeline_version(str(add_yaml), "v3", pipeline_id=_pipeline_id(version))
    refs = kfp_client.get_recurring_run(job.id).resource_references
    assert [r.key.id for r in refs if r.key.type == "PIPELINE_VERSION"] == [version.id]

    raw = api("GET", f"{JOBS}/{job.id}").json
    assert (raw["max_concurrency"], raw["status"], "mode" not in raw) == ("2", "Enabled", True)
    kfp_client.disable_job(job.id)
    disabled = api("GET", f"{JOBS}/{job.id}").json
    assert ("enabled" not in disabled, disabled["status"]) == (True, "Disabled")
    assert kfp_client.jobs.enable_job(job.id) == {}
    assert kfp_client.get_recurring_run(job.id).enabled is True
    listed = kfp_client.list_recurring_runs(experiment_id=experiment.id)
    assert [j.id for j in listed.jobs] == [job.id]
    kfp_client.delete_job(job.id)
    assert api("GET", f"{JOBS}/{job.id}").status == 404


def test_a_periodic_recurring_run(kfp_client, version, experiment, api):
    job = kfp_client.create_recurring_run(
        experiment.id, "hourly", interval_second=3600, pipeline_id=_pipeline_id(version)
    )
    assert api("GET", f"{JOBS}/{job.id}").json["trigger"] == {
        "periodic_schedule": {"interval_second": "3600"}
    }


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"max_concurrency": "11"},
            "The max concurrency of the job is out of range. Support 1-10.",
        ),
        ({"max_concurrency": 0}, "Support 1-10. Received 0."),
        ({"trigger": {"cron_schedule": {"cron": "0 0 * *"}}}, "Expected 5 to 6 fields"),
        (
            {"trigger": {"cron_schedule": {"cron": "0 61 * * * *"}}},
            "End of range (61) above maximum (59): 61",
        ),
        (
            {"trigger": {"periodic_schedule": {"interval_second": "0"}}},
            "Found invalid period schedule interval 0.",
        ),
    ],
)
def test_job_settings_are_validated(api, version, settings, message):
    body = {
        "name": "j",
        "pipeline_spec": {"pipeline_id": _pipeline_id(version)},
        "max_concurrency": "1",
        "enabled": True,
        **settings,
    }
    response = api("POST", JOBS, body=body)
    assert response.status == 400
    assert message in _error_message(response)
