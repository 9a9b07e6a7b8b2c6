"""Which uploads a KFP 2.5 server takes as a pipeline: its `template.New` and `NewV2SpecTemplate`.

The server parses each YAML document of an upload with protojson, which refuses unknown fields:
a document is a PipelineSpec only if every field is one the server's proto knows and it has
`pipelineInfo.name` and `root`. Anything else (a Tekton PipelineRun from kfp-tekton, say) is
"unknown template format". A PipelineSpec must then say `schemaVersion: 2.1.0` and carry a name
MLMD accepts. A second document may be the platform spec (`platforms: {kubernetes: ...}`).

Only the top level and `pipelineInfo` are checked field by field here; the test
`tests/v2/test_ir_fields.py` checks every field the pinned kfp 2 writes against the 2.5 proto.
Argo Workflows (the server's v1 templates) are refused: localdsp does not model them.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

import yaml

from localdsp.errors import InvalidInput

SCHEMA_VERSION = "2.1.0"
MAX_NAME_LENGTH = 128
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,127}$")
_SPEC_FIELDS = {
    "pipelineInfo",
    "pipeline_info",
    "deploymentSpec",
    "deployment_spec",
    "sdkVersion",
    "sdk_version",
    "schemaVersion",
    "schema_version",
    "components",
    "root",
    "defaultPipelineRoot",
    "default_pipeline_root",
}
_INFO_FIELDS = {"name", "displayName", "display_name", "description"}
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PipelineTemplate(NamedTuple):
    """An accepted upload: the IR's pipeline name and what the server stores (JSON text)."""

    name: str
    text: str


def _invalid_spec(message: str) -> InvalidInput:
    """NewInvalidInputErrorWithDetails(ErrorInvalidPipelineSpec, message)."""
    return InvalidInput(message, internal=f"InvalidInputError: {message}: pipeline spec is invalid")


def _documents(content: bytes | str) -> list:
    try:
        return [d for d in yaml.load_all(content, Loader=_YAML_LOADER) if d is not None]
    except yaml.YAMLError:
        return []


def _is_pipeline_spec(document: object) -> bool:
    if not isinstance(document, dict) or not set(document) <= _SPEC_FIELDS:
        return False
    info = document.get("pipelineInfo", document.get("pipeline_info"))
    if not isinstance(info, dict) or not set(info) <= _INFO_FIELDS or not info.get("name"):
        return False
    return isinstance(document.get("root"), dict)


def _is_argo_workflow(document: object) -> bool:
    return (
        isinstance(document, dict)
        and str(document.get("apiVersion", "")).startswith("argoproj.io/")
        and document.get("kind") == "Workflow"
    )


def _is_platform_spec(document: object) -> bool:
    return (
        isinstance(document, dict)
        and set(document) == {"platforms"}
        and isinstance(document["platforms"], dict)
        and "kubernetes" in document["platforms"]
    )


def parse_template(content: bytes | str) -> PipelineTemplate:
    """The upload as the server stores it, or the InvalidInput the 2.5 server answers."""
    documents = _documents(content)
    if documents and _is_argo_workflow(documents[0]):
        raise InvalidInput(
            "localdsp (api v2) does not store Argo Workflow (v1) templates; compile with kfp 2"
        )
    specs = [d for d in documents if _is_pipeline_spec(d)]
    if not specs:
        raise _invalid_spec("unknown template format")
    if len(specs) > 1:
        raise _invalid_spec("multiple pipeline specs provided")
    spec = specs[0]
    _check_spec(spec)
    platforms = [d for d in documents if _is_platform_spec(d)]
    if len(platforms) > 1:
        raise InvalidInput(
            "multiple platform specs provided",
            internal="InvalidInputError: multiple platform specs provided: "
            "Platform spec is invalid",
        )
    stored: dict = spec
    if platforms:
        stored = {"pipeline_spec": spec, "platform_spec": platforms[0]}
    name = (spec.get("pipelineInfo") or spec.get("pipeline_info"))["name"]
    return PipelineTemplate(name, json.dumps(stored))


def _check_spec(spec: dict) -> None:
    """NewV2SpecTemplate's checks, then ValidatePipelineName (MLMD's rule for names)."""
    version = spec.get("schemaVersion", spec.get("schema_version", ""))
    if version != SCHEMA_VERSION:
        raise _invalid_spec(
            f"KFP only supports schema version 2.1.0, but the pipeline spec has version {version}"
        )
    name = (spec.get("pipelineInfo") or spec.get("pipeline_info"))["name"]
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput("pipeline's name must contain no more than 128 characters")
    if not _NAME.match(name):
        raise InvalidInput(
            "pipeline's name must contain only lowercase alphanumeric characters or '-' and must "
            "start with alphanumeric characters"
        )
