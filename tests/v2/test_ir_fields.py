"""The IR the pinned kfp 2 writes is one the KFP 2.5 API server (DSP 2.0-2.16) accepts.

The 2.5 server parses an upload's PipelineSpec with protojson, which refuses any field its
`pipeline_spec.proto` does not know, and parses `deploymentSpec` into PipelineDeploymentConfig the
same way when a run starts. So every field the pinned SDK sets must be in the 2.5.0 proto
(`tests/data/kfp-2.5.0-pipeline-spec-fields.txt`), and schemaVersion must be 2.1.0.
"""

from pathlib import Path

import kfp
import pytest
import sample_pipelines
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from kfp import compiler
from kfp.pipeline_spec import pipeline_spec_pb2

DATA = Path(__file__).resolve().parent.parent / "data"
KNOWN_TO_2_5 = {
    line
    for line in (DATA / "kfp-2.5.0-pipeline-spec-fields.txt").read_text().splitlines()
    if line and not line.startswith("#")
}


def _fields_set(message: Message) -> set[str]:
    """Every field set anywhere in `message`, as "package.Message.field"."""
    found = set()
    for descriptor, value in message.ListFields():
        found.add(descriptor.full_name)
        if descriptor.message_type is None or descriptor.message_type.full_name.startswith(
            "google.protobuf."
        ):
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = value.values()
            value_type = descriptor.message_type.fields_by_name["value"].message_type
            if value_type is None:
                continue
        elif descriptor.is_repeated:
            items = value
        else:
            items = [value]
        for item in items:
            found |= _fields_set(item)
    return found


def _compiled(pipeline, tmp_path: Path) -> dict:
    path = tmp_path / "pipeline.yaml"
    compiler.Compiler().compile(pipeline, str(path))
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("pipeline", [sample_pipelines.add_pipeline, sample_pipelines.control_flow])
def test_every_ir_field_is_known_to_the_kfp_2_5_server(pipeline, tmp_path):
    document = _compiled(pipeline, tmp_path)
    spec = json_format.ParseDict(document, pipeline_spec_pb2.PipelineSpec())
    deployment = json_format.ParseDict(
        json_format.MessageToDict(spec.deployment_spec, preserving_proto_field_name=True),
        pipeline_spec_pb2.PipelineDeploymentConfig(),
    )
    used = _fields_set(spec) | _fields_set(deployment)
    assert used - KNOWN_TO_2_5 == set()
    assert document["schemaVersion"] == "2.1.0"
    assert document["sdkVersion"] == f"kfp-{kfp.__version__}"


def test_the_fixture_ir_is_what_the_pinned_kfp_writes(tmp_path):
    """tests/data/add_pipeline_v2.yaml (used by the v1-venv localdsp tests) is not stale."""
    fixture = yaml.safe_load((DATA / "add_pipeline_v2.yaml").read_text())
    assert _compiled(sample_pipelines.add_pipeline, tmp_path) == fixture


def test_a_field_added_after_2_5_is_caught():
    """Fields the 2.5 proto lacks (here `literals`, which dsl.Literal parameters set) are found
    however deep they are: such a pipeline is refused by the 2.5 server."""
    spec = pipeline_spec_pb2.PipelineSpec()
    spec.root.input_definitions.parameters["p"].literals.add().string_value = "x"
    assert _fields_set(spec) - KNOWN_TO_2_5 == {
        "ml_pipelines.ComponentInputsSpec.ParameterSpec.literals"
    }
