"""Prepare data, train a tiny linear model, evaluate it and write a report.

Several typed parameters and a final step that gathers every upstream output. The model is a
one-feature least-squares fit in plain Python, so the steps need no extra packages.
"""

import kfp
from kfp import dsl
from kfp.components import InputPath, OutputPath

PYTHON_IMAGE = "image-registry.openshift-image-registry.svc:5000/openshift/python:latest"


def prepare_data(
    samples: int,
    noise: float,
    seed: int,
    train_path: OutputPath("JSON"),
    test_path: OutputPath("JSON"),
):
    """Make y = 3x + 2 with noise and split it 80/20 into two files (data travels as files, not
    as Tekton results, which are limited to 4 KiB)."""
    import json
    import random

    rng = random.Random(seed)
    xs = [rng.uniform(0, 10) for _ in range(samples)]
    points = [(x, 3 * x + 2 + rng.gauss(0, noise)) for x in xs]
    cut = int(len(points) * 0.8)
    with open(train_path, "w") as f:
        json.dump(points[:cut], f)
    with open(test_path, "w") as f:
        json.dump(points[cut:], f)


def train(
    train_path: InputPath("JSON"), epochs: int, learning_rate: float, model_path: OutputPath("JSON")
):
    """Fit slope and intercept by gradient descent and save the model."""
    import json

    with open(train_path) as f:
        points = json.load(f)
    slope, intercept = 0.0, 0.0
    for _ in range(epochs):
        grad_s = sum(2 * (slope * x + intercept - y) * x for x, y in points) / len(points)
        grad_i = sum(2 * (slope * x + intercept - y) for x, y in points) / len(points)
        slope -= learning_rate * grad_s
        intercept -= learning_rate * grad_i
    with open(model_path, "w") as f:
        json.dump({"slope": slope, "intercept": intercept}, f)


def evaluate(model_path: InputPath("JSON"), test_path: InputPath("JSON")) -> float:
    """Mean squared error of the model on the held-out points."""
    import json

    with open(model_path) as f:
        m = json.load(f)
    with open(test_path) as f:
        points = json.load(f)
    return sum((m["slope"] * x + m["intercept"] - y) ** 2 for x, y in points) / len(points)


def report(model_path: InputPath("JSON"), mse: float, max_mse: float) -> str:
    """Summarise the run; fails the step when the model is worse than allowed."""
    import json

    with open(model_path) as f:
        m = json.load(f)
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
    mse = evaluate_op(model.outputs["model"], data.outputs["test"])
    report_op(model.outputs["model"], mse.output, max_mse)
