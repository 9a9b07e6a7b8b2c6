"""Fault injection: scripted rules, random faults, dropped connections and the request log."""

import json
import socket
import time

import pytest
import urllib3
from kfp_server_api.exceptions import ApiException

from localdsp.faults import FaultInjector, FaultRule, RandomFaults

pytestmark = pytest.mark.integration

EXPERIMENTS = "/apis/v1beta1/experiments"


def experiment_names(localdsp) -> list[str]:
    return sorted(e.name for e in localdsp.backend.dump()["experiments"])


def raw_post(localdsp, path: str, document: dict) -> bytes:
    """Send one POST on a bare socket and return every byte the server sends back."""
    body = json.dumps(document).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: localdsp\r\nAuthorization: Bearer test-token\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", localdsp.port), timeout=10) as connection:
        connection.sendall(head.encode() + body)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
        return received


def test_status_faults_with_headers_and_the_request_log(localdsp, api):
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=429,
        headers={"Retry-After": "3"},
    )
    throttled = api("GET", "/apis/v1beta1/pipelines")
    assert (throttled.status, throttled.headers["retry-after"]) == (429, "3")
    assert throttled.headers["content-type"] == "application/json"
    assert api("GET", "/apis/v1beta1/pipelines").status == 200
    log = [(r["status"], r["fault"]) for r in localdsp.requests()]
    assert log == [(429, "status 429"), (200, None)]


def test_gateway_pages_and_a_2xx_html_page(localdsp, kfp_client):
    page = "<html><body>Application is not available</body></html>"
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=502,
        body=page,
        content_type="text/html",
        times=1,
    )
    with pytest.raises(ApiException) as caught:
        kfp_client.list_pipelines()
    assert (caught.value.status, caught.value.body) == (502, page)
    localdsp.inject(
        method="GET",
        path="/apis/v1beta1/pipelines",
        action="status",
        status=200,
        body="<html>Log in with OpenShift</html>",
        content_type="text/html",
    )
    silently_empty = kfp_client.list_pipelines()
    assert (silently_empty.pipelines, silently_empty.total_size) == (None, None)


def test_skip_times_method_and_whole_path_matching(localdsp, api):
    localdsp.inject(method="GET", path="/apis/v1beta1/runs", action="status", skip=1, times=2)
    statuses = [api("GET", "/apis/v1beta1/runs").status for _ in range(4)]
    assert statuses == [200, 503, 503, 200]
    localdsp.inject(method="POST", path="/apis/v1beta1/pipelines", action="status", times=None)
    assert api("GET", "/apis/v1beta1/pipelines").status == 200
    assert api("POST", "/apis/v1beta1/pipelines/upload").status == 400  # not matched: no file
    assert api("POST", "/apis/v1beta1/pipelines").status == 503
    assert api("POST", "/apis/v1beta1/pipelines").status == 503


def test_faults_come_before_the_token_check_and_never_hit_admin_paths(localdsp, api):
    localdsp.inject(path=".*", action="status", status=503, times=None)
    assert api("GET", "/apis/v1beta1/healthz", token="wrong").status == 503
    assert api("GET", "/_localdsp/health").status == 200
    localdsp.clear_faults()
    assert api("GET", "/apis/v1beta1/healthz").status == 200


def test_delay_lets_the_client_time_out_while_the_server_still_commits(localdsp, kfp_client):
    localdsp.inject(method="POST", path=EXPERIMENTS, action="delay", seconds=1)
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        kfp_client.experiments.create_experiment(body={"name": "late"}, _request_timeout=(5, 0.2))
    assert "late" not in experiment_names(localdsp)
    deadline = time.monotonic() + 5
    while "late" not in experiment_names(localdsp) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "late" in experiment_names(localdsp)
    assert localdsp.requests()[-1]["fault"] == "delay 1s"


def test_drop_after_commit_closes_the_connection_without_a_response(localdsp):
    localdsp.inject(method="POST", path=EXPERIMENTS, action="drop_after_commit")
    assert raw_post(localdsp, EXPERIMENTS, {"name": "committed"}) == b""
    assert "committed" in experiment_names(localdsp)
    (entry,) = [r for r in localdsp.requests() if r["method"] == "POST"]
    assert (entry["status"], entry["fault"]) == (200, "drop_after_commit")
    assert b" 200 OK" in raw_post(localdsp, EXPERIMENTS, {"name": "answered"})


def test_drop_after_commit_through_the_kfp_client(localdsp, kfp_client, add_yaml):
    localdsp.inject(
        method="POST", path="/apis/v1beta1/pipelines/upload", action="drop_after_commit"
    )
    with pytest.raises(urllib3.exceptions.ProtocolError, match="without response"):
        kfp_client.upload_pipeline(str(add_yaml), "Add Pipeline")
    assert kfp_client.get_pipeline_id("Add Pipeline") is not None


def test_drop_before_closes_the_connection_and_changes_nothing(localdsp):
    localdsp.inject(method="POST", path=EXPERIMENTS, action="drop_before")
    assert raw_post(localdsp, EXPERIMENTS, {"name": "never"}) == b""
    assert "never" not in experiment_names(localdsp)
    (entry,) = [r for r in localdsp.requests() if r["method"] == "POST"]
    assert (entry["status"], entry["fault"]) == (None, "drop_before")


def test_faults_through_the_admin_endpoint(api):
    rule = {"method": "GET", "path": "/apis/v1beta1/jobs", "action": "status", "status": 504}
    created = api("POST", "/_localdsp/faults", body=rule).json
    assert (created["id"], created["times"], created["fired"]) == (1, 1, 0)
    more = api("POST", "/_localdsp/faults", body=[rule, {**rule, "status": 500}]).json
    assert [r["id"] for r in more] == [2, 3]
    assert [api("GET", "/apis/v1beta1/jobs").status for _ in range(4)] == [504, 504, 500, 200]
    assert [r["fired"] for r in api("GET", "/_localdsp/faults").json] == [1, 1, 1]
    assert api("DELETE", "/_localdsp/faults").json == {}
    assert api("GET", "/_localdsp/faults").json == []


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({"action": "explode"}, "action must be one of"),
        ({"action": "status", "colour": "red"}, "unknown fault setting(s): colour"),
        ({"action": "status", "path": "("}, "path is not a regular expression"),
        ({"action": "status", "times": 0}, "times must be at least 1"),
        ({"action": "status", "status": 42}, "status must be an HTTP status code"),
    ],
)
def test_bad_rules_are_refused(api, localdsp, rule, message):
    response = api("POST", "/_localdsp/faults", body=rule)
    assert response.status == 400
    assert message in response.json["error"]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        localdsp.inject(**rule)


def test_random_faults_are_seeded_and_reproducible():
    def sequence(seed):
        injector = FaultInjector(
            RandomFaults(error_rate=0.3, drop_after_commit_rate=0.2, seed=seed)
        )
        return [getattr(injector.choose("GET", "/x"), "action", None) for _ in range(50)]

    first = sequence(7)
    assert first == sequence(7)
    assert first != sequence(8)
    assert {"status", "drop_after_commit", None} == set(first)


def test_random_faults_and_latency_over_http(api):
    settings = {"error_rate": 1.0, "error_status": 500, "latency_ms": 200, "seed": 1}
    assert api("PUT", "/_localdsp/faults/random", body=settings).status == 200
    started = time.monotonic()
    assert api("GET", "/apis/v1beta1/pipelines").status == 500
    assert time.monotonic() - started >= 0.2
    assert api("PUT", "/_localdsp/faults/random", body={"error_rate": 2}).status == 400
    assert api("DELETE", "/_localdsp/faults").status == 200
    assert api("GET", "/apis/v1beta1/pipelines").status == 200


def test_a_rule_describes_itself_for_the_log():
    assert FaultRule.create(action="delay", seconds=1.5).describe() == "delay 1.5s"
    assert FaultRule.create(action="drop_before").describe() == "drop_before"
