"""kfp 2's client as this flavour uses it: `kfp.Client` without its workstation habits, and the
2.x server's answers that mean something to a deploy (an experiment or pipeline deleted under it).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TypeVar

import kfp
import kfp_server_api
from kfp_server_api.exceptions import ApiException

from runner import generation, transport
from runner.errors import ExperimentGone, NotFoundError

T = TypeVar("T")


class GuardedClient(kfp.Client):
    """kfp.Client with a request timeout, no hidden urllib3 retries, a JSON check, and none of
    its workstation habits: it reads no ~/.config/kfp/context.json (cookies, headers, a
    namespace) and never writes one, takes no KF_PIPELINES_* OAuth client from the environment,
    and calls healthz once, through the guard, keeping every field of the answer."""

    def __init__(self, *, request_timeout: float, **kwargs):
        self._request_timeout = request_timeout
        self.server_info: dict | None = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            super().__init__(**kwargs)
        transport.guard(self._healthz_api.api_client.rest_client, request_timeout, ApiException)

    def _load_config(self, host, client_id, namespace, *args):
        """Only the token hook authenticates (never an IAP client id from the environment)."""
        (_, _, _, proxy, ssl_ca_cert, _, credentials, verify_ssl) = args
        config = super()._load_config(
            host,
            None,
            namespace,
            None,
            None,
            None,
            proxy,
            ssl_ca_cert,
            None,
            credentials,
            verify_ssl,
        )
        config.retries = False
        return config

    def _load_context_setting_or_default(self) -> None:
        self._context_setting = {"namespace": ""}

    def set_user_namespace(self, namespace: str) -> None:
        """Multi-user servers: the pod's namespace, kept in memory only."""
        self._context_setting["namespace"] = namespace.strip()

    def get_kfp_healthz(self, sleep_duration: int = 5):
        """One guarded call; `server_info` keeps the whole answer (None: no v2beta1 here)."""
        api_client = self._healthz_api.api_client
        transport.guard(api_client.rest_client, self._request_timeout, ApiException)
        self.server_info = generation.healthz(api_client, generation.V2_HEALTHZ, ApiException)
        multi_user = bool((self.server_info or {}).get("multi_user"))
        return kfp_server_api.V2beta1GetHealthzResponse(multi_user=multi_user)


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
