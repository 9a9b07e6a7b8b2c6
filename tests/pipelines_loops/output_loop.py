"""A loop over a task's output (withParam), then a task after the loop."""

import kfp
from _components import echo_op, fan_out_op


@kfp.dsl.pipeline(name="Loop Over Task Output")
def output_loop(count: int = 3):
    items = fan_out_op(count)
    with kfp.dsl.ParallelFor(items.output) as item:
        echo_op(item)
    echo_op("done").after(items)
