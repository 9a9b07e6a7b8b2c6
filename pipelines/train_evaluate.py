"""Prepare data, train a tiny linear model, evaluate it and write a report.

Several typed parameters and a final step that gathers every upstream output. The model is a
one-feature least-squares fit in plain Python, so the steps need no extra packages.
"""

from typing import NamedTuple

import kfp
from kfp import dsl

PYTHON_IMAGE = "image-registry.openshift-image-registry.svc:5000/openshift/python:latest"


def prepare_data(samples: int, noise: float, seed: int) -> NamedTuple(
    "Data", [("train", str), ("test", str)]
):
    """Make y = 3x + 2 with noise, split 80/20; points travel as JSON strings."""
    import json
    import random
    from collections import namedtuple

    rng = random.Random(seed)
    points = [
        (x, 3 * x + 2 + rng.gauss(0, noise)) for x in (rng.uniform(0, 10) for _ in range(samples))
    ]
    cut = int(len(points) * 0.8)
    return namedtuple("Data", ["train", "test"])(json.dumps(points[:cut]), json.dumps(points[cut:]))


def train(train_points: str, epochs: int, learning_rate: float) -> str:
    """Fit slope and intercept by gradient descent; returns the model as JSON."""
    import json

    points = json.loads(train_points)
    slope, intercept = 0.0, 0.0
    for _ in range(epochs):
        grad_s = sum(2 * (slope * x + intercept - y) * x for x, y in points) / len(points)
        grad_i = sum(2 * (slope * x + intercept - y) for x, y in points) / len(points)
        slope -= learning_rate * grad_s
        intercept -= learning_rate * grad_i
    return json.dumps({"slope": slope, "intercept": intercept})


def evaluate(model: str, test_points: str) -> float:
    """Mean squared error of the model on the held-out points."""
    import json

    m = json.loads(model)
    points = json.loads(test_points)
    return sum((m["slope"] * x + m["intercept"] - y) ** 2 for x, y in points) / len(points)


def report(model: str, mse: float, max_mse: float) -> str:
    """Summarise the run; fails the step when the model is worse than allowed."""
    import json

    m = json.loads(model)
    verdict = "accepted" if mse <= max_mse else "rejected"
    print(f"slope={m['slope']:.3f} intercept={m['intercept']:.3f} mse={mse:.4f} -> {verdict}")
    if verdict == "rejected":
        raise SystemExit(f"model rejected: mse {mse:.4f} > {max_mse}")
    return verdict


prepare_op = kfp.components.create_component_from_func(prepare_data, base_image=PYTHON_IMAGE)
train_op = kfp.components.create_component_from_func(train, base_image=PYTHON_IMAGE)
evaluate_op = kfp.components.create_component_from_func(evaluate, base_image=PYTHON_IMAGE)
report_op = kfp.components.create_component_from_func(report, base_image=PYTHON_IMAGE)


@dsl.pipeline(
    name="Train and Evaluate",
    description="Train a small regression model, evaluate it and report whether it is accepted",
)
def train_evaluate(
    samples="200", noise="0.5", seed="42", epochs="300", learning_rate="0.01", max_mse="1.0"
):
    data = prepare_op(samples, noise, seed)
    model = train_op(data.outputs["train"], epochs, learning_rate)
    mse = evaluate_op(model.output, data.outputs["test"])
    report_op(model.output, mse.output, max_mse)
