"""Which API generation a DSP server is, asked once at connect by either flavour's client.

A DSP 1.x server (kfp-tekton 1.5) answers `/apis/v1beta1/healthz` and 404 on
`/apis/v2beta1/healthz`; a DSP 2.x server (KFP 2) answers both, since it keeps serving v1beta1.
So `/apis/v2beta1/healthz` alone tells them apart: each flavour refuses the other generation
with one line naming the server and what to use, before anything is uploaded (exit 2). The probe
goes through the flavour's own generated `ApiClient`, so it carries the token, the TLS settings
and the transport guard like every other call. SDK-free: both kfp_server_api generations have
the same `call_api`.
"""

from __future__ import annotations

import json

from runner.errors import ConfigurationError

V1_HEALTHZ = "/apis/v1beta1/healthz"
V2_HEALTHZ = "/apis/v2beta1/healthz"


def healthz(api_client, path: str, api_exception: type[Exception]) -> dict | None:
    """The healthz JSON at `path` (every field, also those the generated model drops), or None
    when the server has no such route (404). Other failures propagate to the retry policy."""
    try:
        response = api_client.call_api(
            path,
            "GET",
            header_params={"Accept": "application/json"},
            auth_settings=["Bearer"],
            _return_http_data_only=True,
            _preload_content=False,
        )
    except api_exception as exc:
        if exc.status == 404:
            return None
        raise
    try:
        body = json.loads(response.data or b"{}")
    except ValueError:
        body = {}
    return body if isinstance(body, dict) else {}


def refuse_v2_server(host: str) -> ConfigurationError:
    """The v1 flavour pointed at a DSP 2.x server."""
    return ConfigurationError(
        f"DSP_HOST {host} is a DSP 2.x (Kubeflow Pipelines 2) server; this is the v1 image "
        "(kfp 1.8 + kfp-tekton, for DSP 1.x): use the v2 image / BACKEND=v2"
    )


def refuse_v1_server(host: str) -> ConfigurationError:
    """The v2 flavour pointed at a DSP 1.x server."""
    return ConfigurationError(
        f"DSP_HOST {host} is a DSP 1.x (kfp-tekton) server; this is the v2 image (kfp 2, for "
        "DSP 2.x): use the v1 image / BACKEND=v1"
    )


def refuse_unknown(host: str) -> ConfigurationError:
    """Neither generation's healthz answered: the URL is not the DSP API server's."""
    return ConfigurationError(
        f"DSP_HOST {host} answers 404 on {V2_HEALTHZ} and {V1_HEALTHZ}: is it the DSP API "
        "URL (https://ds-pipeline-<dspa>.<namespace>.svc:8443 or its route)?"
    )


def version_of(tag_name: str) -> tuple[int, ...] | None:
    """The server's release from healthz's `tag_name` ("2.16.0", "v2.5.0"); None when it is not
    a release number (a dev build, localdsp): a feature is then taken as absent."""
    text = tag_name.strip().removeprefix("v")
    parts = text.split("-")[0].split(".")
    if len(parts) < 2 or not all(part.isdigit() for part in parts):
        return None
    return tuple(int(part) for part in parts)
