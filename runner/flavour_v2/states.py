"""DSP 2.x run states: the v2beta1 `RuntimeState` words the KFP 2 server reports.

SUCCEEDED and SKIPPED end well; FAILED and CANCELED end badly (a terminated run on KFP 2.5 ends
FAILED after CANCELING, since Argo has no "terminated" phase); everything else (PENDING,
RUNNING, CANCELING, PAUSED, RUNTIME_STATE_UNSPECIFIED, an empty state) is still going.
"""

from __future__ import annotations

from runner.server import FAILED, RUNNING, SUCCESS

SUCCEEDED = frozenset({"SUCCEEDED", "SKIPPED"})
ENDED_BADLY = frozenset({"FAILED", "CANCELED"})


def outcome_of(state: str) -> str:
    """success, failed, or running: a state this list does not know is taken as still going,
    so a new server word makes `--wait` time out (exit 4) rather than report a false end."""
    if state in SUCCEEDED:
        return SUCCESS
    if state in ENDED_BADLY:
        return FAILED
    return RUNNING
