"""The CEL custom task (`cel.tekton.dev/v1alpha1 CEL`), as tektoncd/experimental's CEL controller
runs it: what `kfp_tekton.tekton.CEL_ConditionOp` compiles to (`taskRef: {name: cel_condition,
apiVersion: cel.tekton.dev/v1alpha1, kind: CEL}`, one param per expression).

The controller (`cel/pkg/reconciler/cel/celrun.go`, the v1alpha1 Run version kfp-tekton 1.5's
samples install) validates that there is at least one param and none is empty
(`RunValidationFailed`), then compiles and evaluates each param in order: the first that does not
parse or type-check ends the Run `SyntaxError`, the first that fails to evaluate
`EvaluationError`; otherwise every param becomes a result of the same name holding the value as
a string (`EvaluationSuccess`). The expressions are evaluated by `localdsp/tekton/cel.py`; one
that uses CEL it does not have fails the Run naming the feature.
"""

from __future__ import annotations

from localdsp.tekton.cel import CelError, Unsupported, evaluate
from localdsp.tekton.custom import CustomTask, RunContext, RunOutcome
from localdsp.tekton.status import SUCCEEDED

VALIDATION_FAILED = "RunValidationFailed"
UNSUPPORTED = "CELNotSupportedLocally"  # localdsp's own reason: the Run could not be evaluated


class CelPlugin:
    """Plays the CEL controller."""

    def check(self, task: str, custom: CustomTask) -> None:
        """Any spec is the controller's to judge at run time: nothing to refuse up front."""

    def run(self, context: RunContext) -> RunOutcome:
        invalid = _invalid(context.params)
        if invalid:
            return RunOutcome(
                VALIDATION_FAILED,
                f"Run can't be run because it has an invalid spec - {invalid}",
            )
        results = {}
        for name, expression in context.params.items():
            try:
                results[name] = evaluate(expression)
            except CelError as err:
                verb = "parsed" if err.reason == "SyntaxError" else "evaluated"
                return RunOutcome(err.reason, f"CEL expression {name} could not be {verb}: {err}")
            except Unsupported as err:
                return RunOutcome(
                    UNSUPPORTED,
                    f'task "{context.task}": CEL expression {name} uses {err}, which the local '
                    "executor does not evaluate",
                )
        return RunOutcome(SUCCEEDED, "CEL expressions were evaluated successfully", results)


def _invalid(params: dict[str, str]) -> str:
    """The controller's validation: params required, each a non-empty string."""
    if not params:
        return "missing field(s): params"
    empty = [name for name, value in params.items() if value == ""]
    if empty:
        return f"invalid value: CEL expression parameter {empty[0]} must be a string: value"
    return ""


PLUGIN = CelPlugin()
