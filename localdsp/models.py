"""What both API generations model alike: schedules, list requests and pages, and the defaults
both servers share (the "Default" experiment, the DSPA's pipeline-runner service account).

Each generation's own models live in `models_v1` (v1) and `models_v2` (v2); the tables
they are stored in are built by `tables`, with the unique indexes both servers declare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

DEFAULT_EXPERIMENT = "Default"
DEFAULT_EXPERIMENT_DESCRIPTION = (
    "All runs created without specifying an experiment will be grouped here."
)
# DSP sets DEFAULTPIPELINERUNNERSERVICEACCOUNT to pipeline-runner-<dspa>; "dspa" is the usual name.
DEFAULT_SERVICE_ACCOUNT = "pipeline-runner-dspa"


@dataclass(frozen=True)
class Trigger:
    """A job's schedule, by `kind`: "cron" (6 fields, seconds first), "periodic" or none ("").

    Start and end times are epoch seconds, 0 when not set.
    """

    kind: str = ""
    cron: str = ""
    interval_second: int = 0
    start_time: int = 0
    end_time: int = 0


class Page(NamedTuple):
    items: list
    total_size: int
    next_page_token: str


class ListRequest(NamedTuple):
    """A list call's paging, sorting and filtering as sent (`filter` decoded once)."""

    page_token: str = ""
    page_size: str = ""
    sort_by: str = ""
    filter: str = ""


def tables(
    *, pipeline: type, version: type, experiment: type, run: type, schedule: tuple[type, str]
) -> dict[type, tuple[str, str]]:
    """A generation's `store.Store` tables with the real servers' unique indexes (both have the
    same): pipeline names, version names per pipeline (the version keeps its template apart)
    and experiment names are unique; runs and schedules (v1 jobs, v2 recurring runs) are not."""
    schedule_kind, schedule_table = schedule
    return {
        pipeline: ("pipelines", "name TEXT NOT NULL COLLATE NOCASE UNIQUE"),
        version: (
            "versions",
            "name TEXT NOT NULL COLLATE NOCASE, pipeline_id TEXT NOT NULL, template TEXT NOT NULL, "
            "UNIQUE (pipeline_id, name)",
        ),
        experiment: ("experiments", "name TEXT NOT NULL COLLATE NOCASE UNIQUE"),
        run: ("runs", "name TEXT NOT NULL"),
        schedule_kind: (schedule_table, "name TEXT NOT NULL"),
    }
