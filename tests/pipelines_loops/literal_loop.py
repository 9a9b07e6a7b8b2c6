"""A loop over a literal list (a PipelineLoop custom task)."""

import kfp
from _components import echo_op


@kfp.dsl.pipeline(name="Loop Over Literal List")
def literal_loop():
    with kfp.dsl.ParallelFor(["a", "b", "c"]) as item:
        echo_op(item)
