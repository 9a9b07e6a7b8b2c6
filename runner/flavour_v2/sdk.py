"""kfp 2's generated API client (`kfp_server_api` 2) as this flavour uses it, and the 2.x
server's answers that mean something to a deploy (an experiment or pipeline deleted under it).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import kfp_server_api
from kfp_server_api.exceptions import ApiException

from runner import generation, transport
from runner.errors import ExperimentGone, NotFoundError

T = TypeVar("T")
POD_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
"""Where a multi-user server's namespace is read from, as kfp.Client reads it in a pod."""


class GuardedClient:
    """The generated service APIs, configured as `kfp.Client(host=, credentials=,
    ssl_ca_cert=, verify_ssl=)` configures them, without importing kfp.Client: that import
    loads all of kfp (its compiler, DSL and the Kubernetes client, about as long as a bare
    `import kfp`), and a deploy that compiles nothing needs none of it. The APIs keep the
    names kfp.Client gives them. Also a request timeout, no hidden urllib3 retries and a JSON
    check (`transport.guard`), and none of kfp.Client's workstation habits: no
    ~/.config/kfp/context.json (cookies, headers, a namespace), no KF_PIPELINES_* OAuth client.
    Healthz is called once, through the guard, keeping every field of the answer."""

    def __init__(
        self, *, host: str, credentials, ssl_ca_cert, verify_ssl: bool, request_timeout: float
    ):
        config = kfp_server_api.Configuration()
        config.host = host.rstrip("/")
        config.verify_ssl = verify_ssl
        if ssl_ca_cert:
            config.ssl_ca_cert = ssl_ca_cert
        config.api_key["authorization"] = "placeholder"
        config.api_key_prefix["authorization"] = "Bearer"
        config.refresh_api_key_hook = credentials.refresh_api_key_hook
        config.retries = False
        api_client = kfp_server_api.ApiClient(config)
        transport.guard(api_client.rest_client, request_timeout, ApiException)
        self._recurring_run_api = kfp_server_api.RecurringRunServiceApi(api_client)
        self._run_api = kfp_server_api.RunServiceApi(api_client)
        self._experiment_api = kfp_server_api.ExperimentServiceApi(api_client)
        self._pipelines_api = kfp_server_api.PipelineServiceApi(api_client)
        self._upload_api = kfp_server_api.PipelineUploadServiceApi(api_client)
        self._healthz_api = kfp_server_api.HealthzServiceApi(api_client)
        self.server_info = generation.healthz(api_client, generation.V2_HEALTHZ, ApiException)
        """healthz's answer; None when the server has no v2beta1 healthz."""
        self._namespace = _pod_namespace() if (self.server_info or {}).get("multi_user") else ""

    def get_user_namespace(self) -> str:
        """The namespace calls are made in: the pod's on a multi-user server, else none."""
        return self._namespace


def _pod_namespace() -> str:
    try:
        return POD_NAMESPACE.read_text().strip()
    except FileNotFoundError:
        return ""


def in_experiment(operation: str, experiment_id: str, call: Callable[[], T]) -> T:
    """Create a run or recurring run in an experiment: the 2.x server answers one that was
    deleted with a 404 no retry will mend, which becomes ExperimentGone so the caller can
    make the experiment again."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404 and f"Experiment {experiment_id}" in (exc.body or ""):
            raise ExperimentGone(
                f"{operation}: experiment {experiment_id} was deleted on the server"
            ) from None
        raise


def of_pipeline(pipeline_name: str, call: Callable[[], T]) -> T:
    """Upload a version of a pipeline that may have been deleted since it was listed: the
    server cannot read its namespace and says so with a 400, said here in a user's words."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 400 and "ResourceNotFoundError: Pipeline " in (exc.body or ""):
            raise NotFoundError(
                f"upload pipeline version: pipeline {pipeline_name!r} was deleted on the server "
                "during this deploy; deploy again to upload it anew"
            ) from None
        raise
