"""What the kfp-tekton 1.5.x server refuses in experiments, runs and jobs, in its own words.

Cron: the job server parses `trigger.cron_schedule.cron` with robfig/cron v1.2.0's `cron.Parse`
(`runner.cron` restates it; pure, no kfp) and answers 400 "Schedule cron is not a supported
format(...). Error: <robfig's error>" under "Validate create job request failed.".

Lengths: the server checks none. Names, descriptions and the cron are `varchar(255)` columns
(gorm's default size) in MySQL/MariaDB in strict mode, so a longer value fails the INSERT with
`Error 1406: Data too long for column '<column>' at row 1`: a 500. The statement lists its
columns alphabetically (squirrel's SetMap), and the first column too long is the one named, so a
too-long description is reported before a too-long name. On the real server the run's PipelineRun
or the job's ScheduledWorkflow already exists in the cluster by then; localdsp keeps nothing.
"""

from __future__ import annotations

import re

from localdsp.errors import Internal, InvalidInput
from localdsp.models import Trigger
from runner.cron import CronError
from runner.cron import parse as parse_cron

COLUMN_SIZE = 255
CRON_FORMAT = "Schedule cron is not a supported format(https://godoc.org/github.com/robfig/cron)."
VALIDATE_JOB = "Validate create job request failed."


def check_cron(expression: str) -> None:
    """The job server's cron check (before the wrap that names the request)."""
    try:
        parse_cron(expression)
    except CronError as err:
        raise InvalidInput(f"{CRON_FORMAT} Error: {err}") from None


def check_trigger(trigger: Trigger, end: str) -> None:
    """A schedule's cron, or its period of at least 1 s; both servers check these alike (the
    2.5 server's messages lose their final period: `end` is "." on 1.5, "" on 2.5)."""
    if trigger.kind == "cron":
        check_cron(trigger.cron)
    elif trigger.kind == "periodic" and trigger.interval_second < 1:
        raise InvalidInput(
            f"Found invalid period schedule interval {trigger.interval_second}. "
            f"Set at interval to least 1 second{end}"
        )


def check_experiment_columns(name: str, description: str) -> None:
    """The experiments INSERT, as ExperimentStore.CreateExperiment and its callers report it."""
    mysql = _data_too_long({"Description": description, "Name": name})
    if mysql:
        raise Internal(
            "Internal Server Error",
            internal="Create experiment failed.: InternalServerError: Failed to add experiment "
            f"to experiment table: {mysql}: {mysql}",
        )


def check_run_columns(k8s_name: str, display_name: str, description: str) -> None:
    """The run_details INSERT; the server names the run by its PipelineRun's name."""
    mysql = _data_too_long({"Description": description, "DisplayName": display_name})
    if mysql:
        raise Internal(
            "Internal Server Error",
            internal="Failed to create a new run.: InternalServerError: Failed to store run "
            f"{k8s_name} to table: {mysql}",
        )


def check_job_columns(swf: str, display_name: str, description: str, cron: str) -> None:
    """The jobs INSERT; the server names the job by its ScheduledWorkflow's name, unwrapped."""
    columns = {"Description": description, "DisplayName": display_name, "Schedule": cron}
    mysql = _data_too_long(columns)
    if mysql:
        raise Internal(
            "Internal Server Error",
            internal=f"InternalServerError: Failed to store job {swf} to table: {mysql}",
        )


def swf_name(job_name: str, job_id: str) -> str:
    """The ScheduledWorkflow's name: the job name lower-cased, kept to [a-z0-9-] and cut to 25
    characters, plus 5 characters (Kubernetes' random generateName suffix; here the id's)."""
    base = re.sub(r"[^a-z0-9-]+", "", job_name.lower())[:25] or "job"
    return f"{base}{job_id.replace('-', '')[:5]}"


def _data_too_long(columns: dict[str, str]) -> str:
    """MySQL's error for the first column (alphabetically) over COLUMN_SIZE characters."""
    for column in sorted(columns):
        if len(columns[column]) > COLUMN_SIZE:
            return f"Error 1406: Data too long for column '{column}' at row 1"
    return ""
