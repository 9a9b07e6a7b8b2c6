"""A recursive graph component (a custom task group like a loop) and a loop of dicts."""

import kfp
from _components import echo_op


@kfp.dsl.graph_component
def countdown(value: str):
    step = echo_op(value)
    with kfp.dsl.Condition(step.output != "0"):
        countdown(step.output)


@kfp.dsl.pipeline(name="Graph Component")
def graph_component(start: str = "3"):
    countdown(start)
    with kfp.dsl.ParallelFor([{"a": "1"}, {"a": "2"}]) as item:
        echo_op(item.a)
