"""Which uploads the DSP v1 server (kfp-tekton 1.5.x) takes as a pipeline, and the PipelineRun
it makes of one for a run.

A template is a Tekton `PipelineRun` (YAML or JSON); its parameters are `spec.params`. A run's
PipelineRun is the template named after the run and given its arguments and service account.
"""

from __future__ import annotations

import copy
import json

import yaml

from localdsp.errors import ApiError, Internal, InvalidInput
from localdsp.models import DEFAULT_SERVICE_ACCOUNT
from localdsp.models_v1 import Parameter

MAX_PARAMETER_BYTES = 10_000
SDK_SERVICE_ACCOUNT = "pipeline-runner"
ORIGINAL_NAME_LABEL = "custom.tekton.dev/originalPipelineRun"
RUN_UID = "$(context.pipelineRun.uid)"

# libyaml's safe loader when PyYAML has it: uploads are parsed on every request.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def parse_pipelinerun(content: bytes | str) -> dict:
    """The uploaded template as a Tekton PipelineRun, the only v1 format the server accepts."""
    try:
        document = yaml.load(content, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError:
        document = None
    if (
        not isinstance(document, dict)
        or not str(document.get("apiVersion", "")).startswith("tekton.dev/")
        or document.get("kind") != "PipelineRun"
    ):
        raise InvalidInput(
            "unknown template format",
            internal="Invalid input error: unknown template format: pipeline spec is invalid",
        )
    return document


def template_parameters(pipelinerun: dict) -> tuple[Parameter, ...]:
    """The pipeline's parameters: `spec.params`, non-string values as JSON."""
    parameters = []
    for param in (pipelinerun.get("spec") or {}).get("params") or []:
        value = param.get("value", "")
        text = value if isinstance(value, str) else json.dumps(value)
        parameters.append(Parameter(str(param.get("name", "")), text))
    check_parameter_size(parameters)
    return tuple(parameters)


def check_parameter_size(parameters: list[Parameter] | tuple[Parameter, ...]) -> None:
    encoded = json.dumps([{"name": p.name, "value": p.value} for p in parameters])
    if len(encoded) > MAX_PARAMETER_BYTES:
        raise InvalidInput(
            f"The input parameter length exceed maximum size of {MAX_PARAMETER_BYTES}."
        )


def manifest_pipelinerun(manifest: str) -> dict:
    """An inline workflow_manifest: JSON, and (for Tekton to accept it) a PipelineRun."""
    try:
        json.loads(manifest)
    except ValueError as err:
        raise InvalidInput(f"Invalid argo workflow format. Workflow: {manifest}") from err
    try:
        return parse_pipelinerun(manifest)
    except ApiError as err:
        raise Internal(
            "Failed to create a workflow: the manifest is not a Tekton PipelineRun"
        ) from err


def run_service_account(template: dict, requested: str) -> str:
    """The request's account, else the manifest's, unless that is the SDK default."""
    if requested:
        return requested
    own = (template.get("spec") or {}).get("serviceAccountName", "")
    return own if own and own != SDK_SERVICE_ACCOUNT else DEFAULT_SERVICE_ACCOUNT


def runtime_pipelinerun(
    template: dict, run_id: str, run_name: str, parameters: tuple[Parameter, ...]
) -> dict:
    """The PipelineRun the server creates for a run: named `<name>-<run id[:5]>`, arguments set.

    Arguments override `spec.params` by name; unknown names are ignored (the server only logs).
    As kfp-tekton 1.5's `tekton_template.go` does, `{{workflow.uid}}` and
    `$(context.pipelineRun.uid)` anywhere in the manifest become the run id, and `$ORIG_PR_NAME`
    (the folder kfp-tekton's big-data passing keeps a run's artifacts in) the PipelineRun's name,
    which the label `custom.tekton.dev/originalPipelineRun` also records.
    """
    pipelinerun = copy.deepcopy(template)
    metadata = pipelinerun.setdefault("metadata", {})
    metadata.setdefault("labels", {})["pipeline/runid"] = run_id
    metadata.setdefault("annotations", {})["pipelines.kubeflow.org/run_name"] = run_name
    spec = pipelinerun.setdefault("spec", {})
    given = {p.name: p.value for p in parameters}
    spec["params"] = [
        {**param, "value": given[param["name"]]} if param.get("name") in given else param
        for param in spec.get("params") or []
    ]
    pipelinerun = _replaced(pipelinerun, {"{{workflow.uid}}": run_id, RUN_UID: run_id})
    metadata = pipelinerun["metadata"]
    metadata["name"] = f"{metadata.get('name', 'pipeline')}-{run_id[:5]}"
    metadata["labels"][ORIGINAL_NAME_LABEL] = metadata["name"]
    return _replaced(pipelinerun, {"$ORIG_PR_NAME": metadata["name"]})


def _replaced(pipelinerun: dict, texts: dict[str, str]) -> dict:
    """The server's macro replacement: plain text replacement over the manifest as JSON."""
    document = json.dumps(pipelinerun)
    for old, new in texts.items():
        document = document.replace(old, json.dumps(new)[1:-1])
    return json.loads(document)
