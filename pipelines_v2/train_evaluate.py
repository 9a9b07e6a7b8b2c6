"""Prepare data, train a tiny linear model, evaluate it and write a report (kfp 2).

Several typed parameters, data passed as artifacts (files, not parameters) and a final step that
gathers every upstream output. The model is a one-feature least-squares fit in plain Python, so
the steps need no extra packages.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

PYTHON_IMAGE = "image-registry.openshift-image-registry.svc:5000/openshift/python:latest"


@dsl.component(base_image=PYTHON_IMAGE)
def prepare_data(
    samples: int, noise: float, seed: int, train_data: Output[Dataset], test_data: Output[Dataset]
):
    """Make y = 3x + 2 with noise and split it 80/20 into two data sets."""
    import json
    import random

    rng = random.Random(seed)
    xs = [rng.uniform(0, 10) for _ in range(samples)]
    points = [(x, 3 * x + 2 + rng.gauss(0, noise)) for x in xs]
    cut = int(len(points) * 0.8)
    with open(train_data.path, "w") as f:
        json.dump(points[:cut], f)
    with open(test_data.path, "w") as f:
        json.dump(points[cut:], f)


@dsl.component(base_image=PYTHON_IMAGE)
def train(train_data: Input[Dataset], epochs: int, learning_rate: float, model: Output[Model]):
    """Fit slope and intercept by gradient descent and save the model."""
    import json

    with open(train_data.path) as f:
        points = json.load(f)
    slope, intercept = 0.0, 0.0
    for _ in range(epochs):
        grad_s = sum(2 * (slope * x + intercept - y) * x for x, y in points) / len(points)
        grad_i = sum(2 * (slope * x + intercept - y) for x, y in points) / len(points)
        slope -= learning_rate * grad_s
        intercept -= learning_rate * grad_i
    with open(model.path, "w") as f:
        json.dump({"slope": slope, "intercept": intercept}, f)


@dsl.component(base_image=PYTHON_IMAGE)
def evaluate(model: Input[Model], test_data: Input[Dataset]) -> float:
    """Mean squared error of the model on the held-out points."""
    import json

    with open(model.path) as f:
        m = json.load(f)
    with open(test_data.path) as f:
        points = json.load(f)
    return sum((m["slope"] * x + m["intercept"] - y) ** 2 for x, y in points) / len(points)


@dsl.component(base_image=PYTHON_IMAGE)
def report(model: Input[Model], mse: float, max_mse: float) -> str:
    """Summarise the run; fails the step when the model is worse than allowed."""
    import json

    with open(model.path) as f:
        m = json.load(f)
    verdict = "accepted" if mse <= max_mse else "rejected"
    print(f"slope={m['slope']:.3f} intercept={m['intercept']:.3f} mse={mse:.4f} -> {verdict}")
    if verdict == "rejected":
        raise SystemExit(f"model rejected: mse {mse:.4f} > {max_mse}")
    return verdict


@dsl.pipeline(
    name="train-and-evaluate",
    display_name="Train and Evaluate",
    description="Train a small regression model, evaluate it and report whether it is accepted",
)
def train_evaluate(
    samples: int = 200,
    noise: float = 0.5,
    seed: int = 42,
    epochs: int = 300,
    learning_rate: float = 0.01,
    max_mse: float = 1.0,
):
    data = prepare_data(samples=samples, noise=noise, seed=seed)
    fitted = train(
        train_data=data.outputs["train_data"], epochs=epochs, learning_rate=learning_rate
    )
    mse = evaluate(model=fitted.outputs["model"], test_data=data.outputs["test_data"])
    report(model=fitted.outputs["model"], mse=mse.output, max_mse=max_mse)
