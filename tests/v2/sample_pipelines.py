"""Small kfp 2 pipelines for the v2 suite: the seed's add pipeline and one with control flow.

No `from __future__ import annotations`: kfp reads the component signatures' real types.
"""

from kfp import dsl


@dsl.component(base_image="python:3.11")
def add(a: float, b: float) -> float:
    """Calculate the sum of the two arguments."""
    return a + b


@dsl.pipeline(name="add-pipeline", description="Adds numbers")
def add_pipeline(a: float = 7.0, b: float = 8.0) -> float:
    first = add(a=a, b=4.0)
    return add(a=first.output, b=b).output


@dsl.component(base_image="python:3.11")
def record_item(path: str, x: int) -> None:
    """Append "item <x>" to `path`: one loop iteration."""
    with open(path, "a") as handle:
        handle.write(f"item {x}\n")


@dsl.component(base_image="python:3.11")
def record(path: str, text: str) -> None:
    """Append a line to `path`: the test reads which steps ran."""
    with open(path, "a") as handle:
        handle.write(text + "\n")


@dsl.pipeline(name="control-flow")
def control_flow(path: str, threshold: int = 2) -> None:
    with dsl.ParallelFor(items=[1, 2, 3]) as item:
        record_item(path=path, x=item)
    with dsl.If(threshold > 1):
        record(path=path, text="above")
    with dsl.Else():
        record(path=path, text="below")
