"""kfp-tekton's own loops (range, a string split by a separator, enumerate), an add-on group
(a user-defined custom task) and a secret mounted by a name given at run time."""

import kfp
from _components import echo_op, number_op
from kfp.dsl.extensions.kubernetes import use_secret
from kfp_tekton.tekton import AddOnGroup, Loop


class Retrying(AddOnGroup):
    """A custom task wrapping its tasks, as users write them for their own controllers."""

    def __init__(self):
        super().__init__(kind="Retrying", api_version="example.com/v1alpha1")


@kfp.dsl.pipeline(name="Tekton Loops")
def tekton_loops(csv: str = "a,b,c", mounted: str = "credentials"):
    with Loop.range(1, 3) as number:
        number_op(number)
    with Loop.from_string(csv, separator=",").enumerate() as (index, item):
        echo_op(item).set_display_name("item")
        number_op(index)
    with Retrying():
        echo_op("inside a custom task")
    echo_op("with a secret").apply(use_secret(mounted, "/secret"))
