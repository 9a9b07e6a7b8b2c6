"""Small components shared by the loop pipelines (a helper module: not a pipeline itself)."""

import kfp

IMAGE = "python:3.11"


def echo(text: str) -> str:
    """Return the text it was given."""
    return text


def show_number(number: int) -> int:
    """Return the number it was given."""
    return number


def fan_out(count: int) -> list:
    """A JSON list of `count` items, for a loop over a task's output."""
    return [f"item-{index}" for index in range(count)]


echo_op = kfp.components.create_component_from_func(echo, base_image=IMAGE)
number_op = kfp.components.create_component_from_func(show_number, base_image=IMAGE)
fan_out_op = kfp.components.create_component_from_func(fan_out, base_image=IMAGE)
