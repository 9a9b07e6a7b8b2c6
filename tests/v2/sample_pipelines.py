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


@dsl.component(base_image="python:3.11")
def double(x: int) -> int:
    return 2 * x


@dsl.pipeline(name="inner")
def inner(x: int) -> int:
    return double(x=x).output


@dsl.pipeline(name="nested")
def nested(x: int = 5) -> int:
    """A pipeline used as a step of another: its DAG runs as one task."""
    return double(x=inner(x=x).output).output


@dsl.component(base_image="python:3.11")
def fail(message: str) -> None:
    raise RuntimeError(message)


@dsl.component(base_image="python:3.11")
def report(status: dsl.PipelineTaskFinalStatus, path: str) -> None:
    """The exit task: records the state the body ended in."""
    with open(path, "a") as handle:
        handle.write(f"exit {status.state}\n")


@dsl.pipeline(name="exit-handler")
def exit_handler(path: str, message: str = "boom") -> None:
    with dsl.ExitHandler(report(path=path)):
        fail(message=message)


@dsl.component(base_image="python:3.11")
def hold(path: str) -> None:
    """Write this process's id to `path`, then wait (up to a minute) for `path`.done."""
    import os
    import time

    with open(path, "w") as handle:
        handle.write(str(os.getpid()))
    deadline = time.monotonic() + 60
    while not os.path.exists(path + ".done") and time.monotonic() < deadline:
        time.sleep(0.1)


@dsl.pipeline(name="holding")
def holding(path: str) -> None:
    hold(path=path)


@dsl.component(base_image="python:3.11")
def token_names() -> str:
    """The names of the environment variables that look like credentials."""
    import os

    return ",".join(sorted(k for k in os.environ if "TOKEN" in k.upper()))


@dsl.pipeline(name="environment")
def environment() -> str:
    return token_names().output


@dsl.container_component
def shell_echo():
    return dsl.ContainerSpec(image="alpine:3.20", command=["echo"], args=["hi"])


@dsl.pipeline(name="container-step")
def container_step(a: float = 1.0) -> None:
    first = add(a=a, b=1.0)
    shell_echo().after(first)
