"""The retry policy (runner.calls) and the v1 client's race rules, pinned down where a mutation
used to survive: what is retried, how long a Retry-After may hold a job, "it exists" sent once,
the oldest duplicate run kept."""

import datetime
import itertools
import json
from pathlib import Path

import kfp._client
import pytest
import structlog
import structlog.testing
import tenacity
from kfp_server_api.exceptions import ApiException

from runner import auth, calls, transport
from runner.calls import MAX_RETRY_AFTER, already_exists
from runner.errors import ConflictError, ServerError
from runner.flavour_v1 import client as v1_client
from runner.flavour_v1.client import DSPClient
from runner.server import server_time, settle_duplicate_runs
from runner_helpers import policy

TOKEN = "test-token"  # the conftest fixtures accept this one
EXISTS_BODY = (
    '{"error_message": "Failed to create a new pipeline. The name Add Pipeline already exist. '
    'Please specify a new name.", "code": 13}'
)


def api_error(status: int, body: str = "", headers: dict | None = None) -> ApiException:
    error = ApiException(status=status, reason="reason")
    error.body = body
    error.headers = headers or {}
    return error


def dsp_client(url: str, *, retries: int = 3, retry_max_wait: float = 0.2) -> DSPClient:
    return DSPClient(
        host=url,
        credentials=auth.credentials(TOKEN, Path("/nonexistent")),
        ca_bundle=None,
        verify_tls=True,
        request_timeout=5,
        retries=retries,
        retry_max_wait=retry_max_wait,
    )


POLICY = policy(ApiException)
NO_WAIT = policy(ApiException, retry_max_wait=0)


def after_failure(error: BaseException, attempt: int = 1) -> tenacity.RetryCallState:
    """The state tenacity hands the wait and retry functions after `error` on `attempt`."""
    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    state.outcome = tenacity.Future.construct(attempt, error, True)
    return state


# ---------------------------------------------------------------- what is retried


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (api_error(429), True),
        (api_error(500), True),
        (api_error(502), True),
        (api_error(503), True),
        (api_error(504), True),
        (api_error(400), False),
        (api_error(404), False),
        (api_error(409), False),
        (api_error(501), False),
        (api_error(500, EXISTS_BODY), False),
        (api_error(500, '{"error_message": "unknown template format"}'), False),
        (ConnectionResetError("reset"), True),
        (TimeoutError("slow"), True),
        (ValueError("a bug"), False),
        (None, False),
    ],
)
def test_only_transient_failures_are_retried(error, transient):
    assert POLICY.is_transient(error) is transient


@pytest.mark.parametrize("error", [api_error(503), ConnectionResetError("reset")])
def test_a_failing_call_is_tried_exactly_the_retry_budget_then_is_one_line(error):
    """Without waits, so that a loop past the budget fails here at once."""
    tried = []

    def call():
        tried.append(1)
        assert len(tried) < 10, "retried past the budget"
        raise error

    with pytest.raises(ServerError) as raised:
        NO_WAIT.call("list runs", call)
    assert len(tried) == 3
    assert str(raised.value).startswith("list runs: ")


def test_a_409_or_a_500_already_exist_means_it_exists_and_nothing_else_does():
    assert already_exists(api_error(409))
    assert already_exists(api_error(500, EXISTS_BODY))
    assert not already_exists(api_error(500, '{"error_message": "database is down"}'))
    assert not already_exists(api_error(500))
    assert not already_exists(api_error(400, EXISTS_BODY))


@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        ("/apis/v1beta1/pipelines/upload", 500, EXISTS_BODY),
        ("/apis/v1beta1/runs", 409, '{"error": "conflict", "code": 6}'),
    ],
)
def test_it_exists_is_sent_exactly_once(project, capsys, localdsp, monkeypatch, path, status, body):
    """Re-sending a create the server called a duplicate could only make a duplicate."""
    monkeypatch.setenv("DSP_ONLY", "add-pipeline")
    localdsp.inject(method="POST", path=path, action="status", status=status, body=body, times=1)
    result = project.run(capsys)
    sent = [r for r in localdsp.requests() if r["method"] == "POST" and r["path"] == path]
    assert [r["status"] for r in sent] == [status]
    assert result.code == 1
    assert result.summary["counts"]["failed"] == 1


# ---------------------------------------------------------------- how long to wait


@pytest.fixture
def connected(localdsp):
    return dsp_client(localdsp.url, retry_max_wait=0.2)


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured_up_to_the_cap(connected, status):
    def wait(seconds: str) -> float:
        error = api_error(status, headers={"Retry-After": seconds})
        return connected._calls._wait(after_failure(error))

    assert wait("7") == 7.0
    assert wait(str(MAX_RETRY_AFTER)) == MAX_RETRY_AFTER
    assert wait(str(MAX_RETRY_AFTER + 1)) == MAX_RETRY_AFTER
    assert wait("86400") == MAX_RETRY_AFTER
    assert wait("-5") == 0.0


@pytest.mark.parametrize(
    "error",
    [
        api_error(429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        api_error(429),
        api_error(500, headers={"Retry-After": "60"}),
        ConnectionResetError("reset"),
    ],
)
def test_without_a_usable_retry_after_the_backoff_applies(connected, error):
    assert 0.0 <= connected._calls._wait(after_failure(error, attempt=4)) <= 0.2


def test_a_403_is_retried_once_to_re_read_the_token(connected):
    assert connected._calls._should_retry(after_failure(api_error(403), attempt=1))
    assert not connected._calls._should_retry(after_failure(api_error(403), attempt=2))
    assert not connected._calls._should_retry(after_failure(api_error(409), attempt=1))
    assert connected._calls._should_retry(after_failure(api_error(503), attempt=1))


# ---------------------------------------------------------------- duplicate runs


@pytest.mark.integration
def test_of_duplicate_runs_the_oldest_stays_whatever_the_ids(localdsp, kfp_client, add_yaml):
    """Two racing runners each started one run of a name; both must keep the same one."""
    ticks = itertools.count(1_700_000_000, 10)
    localdsp.backend._clock = lambda: next(ticks)
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    experiment = kfp_client.create_experiment("dsp-runner")

    def start():
        return kfp_client.run_pipeline(experiment.id, "add@abc", pipeline_id=pipeline.id)

    oldest = start()
    newer = start()
    while newer.id > oldest.id:  # the newer run must sort first by id, so only age can decide
        kfp_client.runs.delete_run(newer.id)
        newer = start()

    kept = settle_duplicate_runs(dsp_client(localdsp.url), experiment.id, ["add@abc"])

    assert kept["add@abc"].id == oldest.id
    left = kfp_client.list_runs(experiment_id=experiment.id, page_size=100).runs
    assert [run.id for run in left] == [oldest.id]


@pytest.mark.integration
def test_a_conflict_on_a_name_nobody_holds_is_an_error_not_an_adoption(localdsp):
    localdsp.inject(
        method="POST", path="/apis/v1beta1/experiments", action="status", status=409, times=1
    )
    with pytest.raises(ConflictError, match="create experiment"):
        dsp_client(localdsp.url).ensure_experiment("dsp-runner", "runs")


@pytest.mark.integration
def test_jobs_of_one_name_come_lowest_id_first_whatever_the_listing_order(
    localdsp, kfp_client, add_yaml
):
    """Racing deploys each made the job; every runner must keep the same one, the lowest id."""
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    experiment = kfp_client.create_experiment("dsp-runner")

    def create():
        return kfp_client.create_recurring_run(
            experiment.id, "nightly", cron_expression="0 0 2 * * *", pipeline_id=pipeline.id
        ).id

    made = [create(), create()]
    while True:  # the listing must put a higher id first, so only sorting can put it right
        listed = [j.id for j in kfp_client.list_recurring_runs(page_size=100).jobs]
        if listed != sorted(listed):
            break
        kfp_client.jobs.delete_job(made.pop(0))
        made.append(create())

    found = dsp_client(localdsp.url).jobs_named("nightly")

    assert [job.id for job in found] == sorted(made)


@pytest.mark.integration
def test_a_listing_that_leaves_the_default_version_s_description_out_is_completed(
    localdsp, kfp_client, add_yaml
):
    """Some KFP v1 stores list pipelines without the default version's description, which names
    the commit that run names come from: that version is read then, and only then."""
    ids = {}
    for name in ("Stripped", "Listed", "Empty"):
        ids[name] = kfp_client.upload_pipeline(str(add_yaml), name).id
        kfp_client.upload_pipeline_version(
            str(add_yaml), f"{name}-1", pipeline_id=ids[name], description=f"commit of {name}"
        )
    for version in kfp_client.list_pipeline_versions(ids["Empty"], page_size=100).versions:
        kfp_client.delete_pipeline_version(version.id)
    client = dsp_client(localdsp.url)
    listing = client._kfp.pipelines.list_pipelines

    def stripped(**query):
        page = listing(**query)
        for pipeline in page.pipelines:
            if pipeline.name == "Stripped":
                pipeline.default_version.description = None
        return page

    client._kfp.pipelines.list_pipelines = stripped
    localdsp.clear_requests()

    pipelines = {p.name: p for p in client.list_pipelines()}

    assert pipelines["Stripped"].default_version.description == "commit of Stripped"
    assert pipelines["Stripped"].default_version.pipeline_id == ids["Stripped"]
    assert pipelines["Listed"].default_version.description == "commit of Listed"
    assert pipelines["Empty"].default_version is None
    reads = [r["path"] for r in localdsp.requests() if "/pipeline_versions/" in r["path"]]
    assert reads == [f"/apis/v1beta1/pipeline_versions/{pipelines['Stripped'].default_version.id}"]


@pytest.mark.parametrize("unseen", ["", "the upload never showed"])
def test_a_lookup_after_it_exists_that_fails_says_so_in_its_line(unseen):
    def create():
        raise api_error(409, '{"error_message": "exists"}')

    def find():
        raise api_error(400, '{"error_message": "bad filter"}')

    with pytest.raises(ServerError) as raised:
        POLICY.create("upload pipeline", create, find, unseen=unseen)
    assert str(raised.value) == "upload pipeline: look up existing: HTTP 400: bad filter"


@pytest.mark.integration
def test_listings_longer_than_the_server_s_default_page_take_one_request_each(
    localdsp, kfp_client, add_yaml
):
    """The runner asks for pages of PAGE_SIZE: 21 objects (the default page holds 20) are one
    request per listing, as the README's request counts say."""
    experiment = kfp_client.create_experiment("dsp-runner")
    for i in range(21):
        pipeline = kfp_client.upload_pipeline(str(add_yaml), f"p{i}")
        kfp_client.run_pipeline(experiment.id, f"run-{i}", pipeline_id=pipeline.id)
        kfp_client.create_recurring_run(
            experiment.id, f"job-{i}", cron_expression="0 0 2 * * *", pipeline_id=pipeline.id
        )
    client = dsp_client(localdsp.url)
    localdsp.clear_requests()

    assert len(client.list_pipelines()) == 21
    assert len(client.list_jobs()) == 21
    assert len(client.runs_named(experiment.id, [f"run-{i}" for i in range(21)])) == 21

    listings = [r["path"] for r in localdsp.requests() if r["path"].count("/") == 3]
    assert listings == ["/apis/v1beta1/pipelines", "/apis/v1beta1/jobs", "/apis/v1beta1/runs"]


# ---------------------------------------------------------------- prune's and promote's reads


@pytest.fixture
def ticking(localdsp):
    """The server's clock steps ten seconds a call: ages decide, never the order ids happen in."""
    ticks = itertools.count(1_700_000_000, 10)
    localdsp.backend._clock = lambda: next(ticks)
    return localdsp


@pytest.mark.integration
def test_list_versions_gives_every_version_of_that_pipeline_only_oldest_first(
    ticking, kfp_client, add_yaml, monkeypatch
):
    monkeypatch.setattr(calls, "PAGE_SIZE", 1)  # three pages: the keys must ride on every page
    add = kfp_client.upload_pipeline(str(add_yaml), "Add")
    other = kfp_client.upload_pipeline(str(add_yaml), "Other")
    for name in ("add-2", "add-3"):
        kfp_client.upload_pipeline_version(
            str(add_yaml), name, pipeline_id=add.id, description=f"{name} notes"
        )
    kfp_client.upload_pipeline_version(str(add_yaml), "other-2", pipeline_id=other.id)

    versions = dsp_client(ticking.url).list_versions(add.id)

    assert [(v.name, v.pipeline_id, v.description) for v in versions] == [
        ("Add", add.id, ""),
        ("add-2", add.id, "add-2 notes"),
        ("add-3", add.id, "add-3 notes"),
    ]
    assert versions[0].created_at < versions[1].created_at < versions[2].created_at


@pytest.mark.integration
def test_runs_since_reads_back_to_the_given_time_newest_first(ticking, kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    experiment = kfp_client.create_experiment("dsp-runner")
    started = [
        kfp_client.run_pipeline(experiment.id, f"run-{i}", pipeline_id=pipeline.id).id
        for i in range(3)
    ]
    client = dsp_client(ticking.url)
    every = client.runs_since(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
    assert [r.id for r in every] == started[::-1]

    since_second = client.runs_since(every[1].created_at)

    assert [r.id for r in since_second] == started[:0:-1]
    later = every[0].created_at + datetime.timedelta(seconds=1)
    assert client.runs_since(later) == []


@pytest.mark.integration
def test_newest_run_of_a_version_is_its_latest_and_none_without_runs(ticking, kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    first = pipeline.default_version.id
    second = kfp_client.upload_pipeline_version(str(add_yaml), "add-2", pipeline_id=pipeline.id)
    experiment = kfp_client.create_experiment("dsp-runner")
    runs = [
        kfp_client.run_pipeline(experiment.id, name, version_id=version).id
        for name, version in (("a", first), ("b", first), ("c", second.id))
    ]
    unrun = kfp_client.upload_pipeline_version(str(add_yaml), "add-3", pipeline_id=pipeline.id)
    client = dsp_client(ticking.url)

    assert client.newest_run_of(pipeline.id, first).id == runs[1]
    assert client.newest_run_of(pipeline.id, second.id).id == runs[2]
    assert client.newest_run_of(pipeline.id, unrun.id) is None


@pytest.mark.integration
def test_pipeline_file_is_the_uploaded_file_byte_for_byte(localdsp, kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    version = kfp_client.upload_pipeline_version(str(add_yaml), "add-2", pipeline_id=pipeline.id)

    copied = dsp_client(localdsp.url).pipeline_file(pipeline.id, version.id)

    assert copied == add_yaml.read_text()


@pytest.mark.integration
def test_delete_version_removes_it_and_a_second_delete_is_done(localdsp, kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    version = kfp_client.upload_pipeline_version(str(add_yaml), "add-2", pipeline_id=pipeline.id)
    client = dsp_client(localdsp.url)

    client.delete_version(pipeline.id, version.id)
    client.delete_version(pipeline.id, version.id)

    listed = kfp_client.list_pipeline_versions(pipeline.id, page_size=100).versions
    assert [v.name for v in listed] == ["Add"]
    deletes = [r["status"] for r in localdsp.requests() if r["method"] == "DELETE"]
    assert deletes == [200, 404]


@pytest.mark.integration
def test_a_new_pipeline_keeps_its_description_as_written(localdsp, kfp_client, add_yaml):
    """The server URL-decodes the description once more than the client encodes it: a `%` or
    a `+` must reach the dashboard as written."""
    text = "Adds a and b: 100% sure + tested"

    made = dsp_client(localdsp.url).upload_pipeline(add_yaml, "Add", text)

    assert kfp_client.get_pipeline(made.id).description == text


@pytest.mark.integration
def test_an_experiment_that_exists_is_found_without_trying_to_create_it(localdsp, kfp_client):
    existing = kfp_client.create_experiment("dsp-runner").id
    localdsp.clear_requests()

    found = dsp_client(localdsp.url).ensure_experiment("dsp-runner", "runs")

    assert found == existing
    assert [r["method"] for r in localdsp.requests() if "experiments" in r["path"]] == ["GET"]


# ---------------------------------------------------------------- paging


class Page:
    def __init__(self, items, next_page_token=""):
        self.items = items
        self.next_page_token = next_page_token


def test_each_page_is_asked_for_with_the_token_the_last_one_gave():
    pages = {"": Page([1, 2], "t2"), "t2": Page([3], "t3"), "t3": Page([4])}
    asked = []

    def fetch(token):
        asked.append(token)
        return pages[token]

    assert list(POLICY.pages("list runs", "items", fetch)) == [1, 2, 3, 4]
    assert asked == ["", "t2", "t3"]


def test_a_server_that_sends_a_page_token_again_ends_the_listing_with_an_error():
    """A proxy that drops the token gets page 1 again: the job must fail, not read for ever."""
    asked = []

    def fetch(token):
        asked.append(token)
        assert len(asked) < 5, "the listing is read for ever"
        return Page([len(asked)], "t2")

    with pytest.raises(ServerError) as raised:
        list(POLICY.pages("list runs", "items", fetch))
    assert str(raised.value) == (
        "list runs: https://dsp sent the same page token twice; "
        "stopping rather than reading the listing for ever"
    )
    assert asked == ["", "t2"]


def test_a_filter_goes_with_the_first_page_only_and_the_keys_with_every_page():
    pages = {"": Page(["a"], "t2"), "t2": Page(["b"])}
    calls_made = []

    def list_call(**arguments):
        calls_made.append(arguments)
        return pages[arguments["page_token"]]

    items = POLICY.filtered_pages(
        "list runs", "items", list_call, {"filter": "F", "sort_by": "S"}, resource_key_id="e1"
    )
    assert list(items) == ["a", "b"]
    size = calls.PAGE_SIZE
    assert calls_made == [
        {
            "page_token": "",
            "page_size": size,
            "resource_key_id": "e1",
            "filter": "F",
            "sort_by": "S",
        },
        {"page_token": "t2", "page_size": size, "resource_key_id": "e1"},
    ]


# ---------------------------------------------------------------- what counts as an answer


@pytest.mark.integration
@pytest.mark.parametrize("content_type", ["text/html", "Text/HTML; charset=UTF-8"])
def test_an_empty_html_answer_is_the_proxy_s_page_not_an_empty_listing(localdsp, content_type):
    """An auth proxy's empty sign-in answer, whatever the header's case: the listing must fail
    with the line that says what to check, not read as "no pipelines" (which uploads them all)."""
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=200,
        body="",
        content_type=content_type,
        times=1000,
    )
    with pytest.raises(ServerError) as raised:
        dsp_client(localdsp.url).list_pipelines()
    assert "GET /apis/v1beta1/pipelines answered 200 with a non-JSON page" in str(raised.value)


@pytest.mark.integration
def test_an_empty_answer_to_a_delete_is_success(localdsp, kfp_client, add_yaml):
    """A delete answered 200 with no body (a proxy dropping the server's `{}`) is done."""
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    version = kfp_client.upload_pipeline_version(str(add_yaml), "add-2", pipeline_id=pipeline.id)
    localdsp.inject(
        method="DELETE",
        path=f"/apis/v1beta1/pipeline_versions/{version.id}",
        action="status",
        status=200,
        body="",
        content_type="application/json",
    )
    dsp_client(localdsp.url).delete_version(pipeline.id, version.id)
    assert [r["status"] for r in localdsp.requests() if r["method"] == "DELETE"] == [200]


# ---------------------------------------------------------------- the v1 client's reads


@pytest.mark.integration
def test_a_version_found_or_uploaded_names_its_pipeline(localdsp, kfp_client, add_yaml):
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    client = dsp_client(localdsp.url)
    uploaded = client.upload_version(add_yaml, pipeline.id, "add-2", "d", pipeline_name="Add")
    found = client.find_version(pipeline.id, "add-2")
    assert (uploaded.pipeline_id, found.pipeline_id, found.id) == (
        pipeline.id,
        pipeline.id,
        uploaded.id,
    )


@pytest.mark.integration
def test_the_pipeline_and_recurring_run_listings_read_every_page(
    localdsp, kfp_client, add_yaml, monkeypatch
):
    monkeypatch.setattr(v1_client, "PAGE_SIZE", 1)  # the listings' own page size
    experiment = kfp_client.create_experiment("e")
    for i in range(3):
        pipeline = kfp_client.upload_pipeline(str(add_yaml), f"p{i}")
        kfp_client.create_recurring_run(
            experiment.id, f"job-{i}", cron_expression="0 0 2 * * *", pipeline_id=pipeline.id
        )
    client = dsp_client(localdsp.url)
    localdsp.clear_requests()
    assert sorted(p.name for p in client.list_pipelines()) == ["p0", "p1", "p2"]
    assert sorted(j.name for j in client.list_jobs()) == ["job-0", "job-1", "job-2"]
    listings = [r["path"] for r in localdsp.requests() if r["path"].count("/") == 3]
    assert listings == 3 * ["/apis/v1beta1/pipelines"] + 3 * ["/apis/v1beta1/jobs"]


@pytest.mark.integration
def test_an_experiment_without_a_description_reads_as_an_empty_one(localdsp, kfp_client):
    """The server leaves empty fields out of its JSON: the record's description is ""."""
    kfp_client.create_experiment("dsp-runner-record-x")
    (record,) = dsp_client(localdsp.url).experiments_containing("record-x")
    assert (record.name, record.description) == ("dsp-runner-record-x", "")


@pytest.mark.integration
def test_a_failing_generation_check_is_a_connect_error(localdsp):
    localdsp.inject(method="GET", path="/apis/v2beta1/healthz", status=400, action="status")
    with pytest.raises(ServerError) as raised:
        dsp_client(localdsp.url)
    assert str(raised.value).startswith("connect: HTTP 400")


@pytest.mark.integration
def test_a_run_read_without_its_runtime_has_no_outputs(localdsp, kfp_client, add_yaml, api):
    """A run the server answers without `pipeline_runtime` (no manifest yet) reads as a run with
    no task outputs, not as a crash."""
    pipeline = kfp_client.upload_pipeline(str(add_yaml), "Add")
    run = kfp_client.run_pipeline(
        kfp_client.create_experiment("e").id, "r", pipeline_id=pipeline.id
    )
    path = f"/apis/v1beta1/runs/{run.id}"
    detail = api("GET", path).json
    del detail["pipeline_runtime"]
    localdsp.inject(method="GET", path=path, action="status", status=200, body=json.dumps(detail))
    got = dsp_client(localdsp.url).get_run(run.id)
    assert (got.id, got.name, got.outputs) == (run.id, "r", {})


def test_a_conflict_on_a_create_that_is_not_an_upload_looks_once():
    """Only an upload's name can be taken yet invisible (CREATING); for anything else a lookup
    that finds nothing ends it at once, without the upload's waits."""
    looked = []

    def create():
        raise api_error(409, '{"error_message": "exists"}')

    def find():
        looked.append(1)

    with pytest.raises(ConflictError):
        POLICY.create("create experiment", create, find)
    assert looked == [1]


def test_guarding_a_client_twice_wraps_its_requests_once():
    """The healthz call guards its own API client each time: the wrapping must not pile up."""

    class Rest:
        def request(self, method, url, *args, **kwargs):
            raise AssertionError("not called")

    rest = Rest()
    transport.guard(rest, 5, ApiException)
    guarded = rest.request
    transport.guard(rest, 5, ApiException)
    assert rest.request is guarded and guarded != Rest.request


@pytest.mark.parametrize(
    ("draw", "cap", "pauses"),
    [
        (0.0, 30, [0.5, 1.0, 2.0, 4.0, 8.0]),
        (1.0, 30, [1.5, 2.0, 3.0, 5.0, 9.0]),
        (0.0, 3, [0.5, 1.0, 2.0, 3.0, 3.0]),
    ],
)
def test_the_backoff_starts_at_half_a_second_and_doubles_up_to_the_cap(
    monkeypatch, draw, cap, pauses
):
    """README: the first pause is 0.5 s, each next one twice as long, each with up to 1 s of
    jitter, none longer than DSP_RETRY_MAX_WAIT."""
    monkeypatch.setattr(tenacity.wait.random, "uniform", lambda low, high: low + draw * high)
    backoff = policy(ApiException, retries=6, retry_max_wait=cap)
    got = [backoff._wait(after_failure(api_error(503), attempt=n)) for n in range(1, 6)]
    assert got == pauses


@pytest.mark.integration
@pytest.mark.parametrize("kfp_context", [None, {"namespace": "team-a"}])
def test_every_call_has_the_request_timeout(localdsp, tmp_path, monkeypatch, kfp_context):
    """kfp's constructor skips its healthz call when a kfp context file names a namespace (a
    laptop that used `kfp` before): the calls after it must carry the timeout all the same."""
    context_file = tmp_path / "context.json"  # kfp reads ~/.config/kfp/context.json
    monkeypatch.setattr(kfp._client.Client, "LOCAL_KFP_CONTEXT", str(context_file))
    if kfp_context is not None:
        context_file.write_text(json.dumps(kfp_context))
    client = DSPClient(
        host=localdsp.url,
        credentials=auth.credentials(TOKEN, Path("/nonexistent")),
        ca_bundle=None,
        verify_tls=True,
        request_timeout=0.5,
        retries=3,
        retry_max_wait=0.2,
    )
    localdsp.inject(method="GET", path="/apis/v1beta1/jobs", action="delay", seconds=1.5)
    with structlog.testing.capture_logs() as logged:
        assert client.list_jobs() == []
    retried = [e for e in logged if e["event"] == "server_call_retry"]
    assert [(e["operation"], e["error"]) for e in retried] == [
        ("list recurring runs", "ReadTimeoutError")
    ]


def test_an_upload_name_taken_but_never_shown_is_looked_for_within_the_retry_budget():
    """Without waits, so that a lookup past the budget fails here at once."""
    looked = []

    def create():
        raise api_error(500, EXISTS_BODY)

    def find():
        looked.append(1)
        assert len(looked) < 10, "looked up past the budget"

    with pytest.raises(ConflictError) as raised:
        NO_WAIT.create("upload pipeline", create, find, unseen="never became visible")
    assert str(raised.value) == "never became visible"
    assert len(looked) == 3


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        (None, None),
        (datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC), None),
        (
            datetime.datetime(1971, 6, 1, tzinfo=datetime.UTC),
            datetime.datetime(1971, 6, 1, tzinfo=datetime.UTC),
        ),
        (
            datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC),
            datetime.datetime(2026, 12, 3, tzinfo=datetime.UTC),
        ),
    ],
)
def test_the_zero_time_the_servers_send_reads_as_not_yet(sent, read):
    """Both generations send 1970-01-01 for a run not finished or not yet timed."""
    assert server_time(sent) == read
