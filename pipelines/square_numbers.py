"""A loop: squares each number of a list, all at once (`dsl.ParallelFor`, which kfp-tekton
compiles to a PipelineLoop custom task; each iteration is a PipelineRun of its own)."""

import kfp
import kfp_tekton


def square(number: int) -> int:
    """The number times itself."""
    return number * number


square_op = kfp.components.create_component_from_func(
    square,
    base_image="image-registry.openshift-image-registry.svc:5000/openshift/python:latest",
)


@kfp.dsl.pipeline(
    name="Square Numbers",
    description="Squares each number of a list in parallel",
)
def square_numbers(numbers: list = [1, 2, 3]):  # noqa: B006 - kfp reads the default
    with kfp.dsl.ParallelFor(numbers, parallelism=3) as number:
        square_op(number)


if __name__ == "__main__":
    kfp_tekton.compiler.TektonCompiler().compile(
        square_numbers, package_path=__file__.replace(".py", ".yaml")
    )
