"""Print `make mutate`'s kill rate from mutmut's statistics and fail below the target.

Killed counts the mutants a test failed on and those that made the tests run past mutmut's time
limit (a hang is noticed too). The rate is over every mutant made, so one no test reaches or
the run's time bound cut off counts against it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STATS = Path("mutants/mutmut-cicd-stats.json")


def main(minimum: float) -> int:
    stats = json.loads(STATS.read_text())
    total = stats["total"]
    killed = stats["killed"] + stats["timeout"]
    counted = ("killed", "timeout", "survived", "no_tests", "skipped", "suspicious", "segfault")
    not_run = total - sum(stats[key] for key in counted)
    rate = 100.0 * killed / total if total else 0.0
    print(
        f"mutation kill rate: {killed}/{total} = {rate:.1f} % "
        f"(killed {stats['killed']}, timed out {stats['timeout']}; survived {stats['survived']}, "
        f"no test {stats['no_tests']}, suspicious {stats['suspicious']}, not run {not_run})"
    )
    if rate < minimum:
        print(f"below the {minimum:g} % target: `.venv/bin/mutmut results` lists the survivors")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 85.0))
