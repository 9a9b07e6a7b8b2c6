"""A loop over a pipeline parameter, with a fixed parallelism."""

import kfp
from _components import echo_op


@kfp.dsl.pipeline(name="Loop Over Parameter")
def param_loop(items: list = ["x", "y"]):  # noqa: B006 - kfp reads the default
    with kfp.dsl.ParallelFor(items, parallelism=2) as item:
        echo_op(item)
