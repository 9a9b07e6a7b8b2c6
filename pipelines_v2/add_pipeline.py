"""The seed tutorial's add pipeline for kfp 2: two chained additions, (a + 4) + b."""

from kfp import dsl

PYTHON_IMAGE = "image-registry.openshift-image-registry.svc:5000/openshift/python:latest"


@dsl.component(base_image=PYTHON_IMAGE)
def add(a: float, b: float) -> float:
    """Calculate the sum of the two arguments."""
    return a + b


@dsl.pipeline(
    name="add-pipeline",
    display_name="Add Pipeline",
    description="A pipeline that adds numbers together",
)
def add_pipeline(a: float = 1.0, b: float = 7.0) -> float:
    first_add_step = add(a=a, b=4.0)
    return add(a=first_add_step.output, b=b).output
