"""Profile a data set and publish it only when its quality score clears a threshold (kfp 2).

Shows a condition: the publish step runs only when `score >= threshold`, so a run of a poor data
set still succeeds, with the publish task skipped.
"""

from kfp import dsl

PYTHON_IMAGE = "image-registry.openshift-image-registry.svc:5000/openshift/python:latest"


@dsl.component(base_image=PYTHON_IMAGE)
def profile_dataset(rows: int, null_fraction: float) -> float:
    """Score a data set between 0 and 1 from its size and the share of missing values."""
    size_score = min(rows / 10000.0, 1.0)
    completeness = 1.0 - null_fraction
    score = round(0.3 * size_score + 0.7 * completeness, 4)
    print(f"rows={rows} null_fraction={null_fraction} score={score}")
    return score


@dsl.component(base_image=PYTHON_IMAGE)
def publish_dataset(dataset: str, score: float) -> str:
    """Mark the data set as published; returns where it went."""
    location = f"published/{dataset}"
    print(f"publishing {dataset} with score {score} to {location}")
    return location


@dsl.pipeline(
    name="data-quality-gate",
    display_name="Data Quality Gate",
    description="Profile a data set and publish it when its quality score clears a threshold",
)
def data_quality_gate(
    dataset: str = "customers",
    rows: int = 12000,
    null_fraction: float = 0.02,
    threshold: float = 0.9,
):
    profile = profile_dataset(rows=rows, null_fraction=null_fraction)
    with dsl.If(profile.output >= threshold, name="quality-ok"):
        publish_dataset(dataset=dataset, score=profile.output)
