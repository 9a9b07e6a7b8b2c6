"""Two nested loops, a condition inside the inner one, and two pipelines in one module."""

import kfp
from _components import echo_op


@kfp.dsl.pipeline(name="Nested Loops")
def nested_loops(limit: str = "b"):
    with kfp.dsl.ParallelFor(["1", "2"]) as outer:
        with kfp.dsl.ParallelFor(["a", "b"]) as inner:
            with kfp.dsl.Condition(inner == limit):
                echo_op(outer)


@kfp.dsl.pipeline(name="Condition In Loop")
def condition_in_loop(wanted: str = "b"):
    with kfp.dsl.ParallelFor(["a", "b", "c"]) as item:
        with kfp.dsl.Condition(item == wanted):
            echo_op(item)
