"""`make mutate`'s mutmut run: incremental, within one time bound.

mutmut keeps every mutant's verdict in mutants/. For a mutated file newer than its mutants it
re-makes them and forgets the verdicts of the functions whose source hash changed, so a plain
`mutmut run` tests those, and any never tested; it also maps each new test (by name) to the
functions it reaches, and a change to its own settings in pyproject.toml forgets every verdict.
It does not look at the tests' code, so a mutant that survived may be killed by a test written
or sharpened since: every mutant not killed last time is re-tested by name afterwards. A killed
verdict of an unchanged function stands; it can be stale only if what killed it changed since (a
test weakened, localdsp made kinder, a module outside the mutated ones changed how the code is
reached), and `--fresh` (FRESH=1) is the check: it starts from nothing.

The bound covers both passes. On reaching it, mutmut is interrupted as Ctrl-C does (it ignores
SIGTERM): it stops its workers and saves what it has; untested mutants count as not killed.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

MUTMUT = str(Path(sys.executable).with_name("mutmut"))
MUTANTS = Path("mutants")
NOT_KILLED = {"survived", "no tests", "suspicious", "segfault", "check was interrupted by user"}
TIMED_OUT = 124
GRACE_S = 60.0


def verdicts() -> dict[str, str]:
    """Every current mutant's name and status, as `mutmut results --all true` prints them."""
    listing = subprocess.run(
        [MUTMUT, "results", "--all", "true"], check=True, capture_output=True, text=True
    ).stdout
    pairs = (line.strip().split(": ", 1) for line in listing.splitlines() if ": " in line)
    return {name: status for name, status in pairs}


def run(args: list[str], deadline: float) -> int:
    """One `mutmut run`, interrupted (SIGINT, then SIGKILL after a grace) at the deadline."""
    child = subprocess.Popen([MUTMUT, "run", *args], preexec_fn=_interruptible)
    interrupted = False
    while True:
        remaining = deadline - time.monotonic() + (GRACE_S if interrupted else 0.0)
        try:
            code = child.wait(timeout=max(remaining, 0.0))
            return TIMED_OUT if interrupted else code
        except subprocess.TimeoutExpired:
            if interrupted:
                child.kill()
            else:
                child.send_signal(signal.SIGINT)
                interrupted = True
        except KeyboardInterrupt:
            interrupted = True  # Ctrl-C reached mutmut too: let it save what it has


def refresh_unmutated_copies() -> None:
    """mutmut copies a source file it does not mutate only once, when mutants/ lacks it, so a
    later change to one (settings, commands) would be tested against its old copy: copy each
    one that differs again. The mutated files it re-makes itself when their source is newer."""
    settings = tomllib.loads(Path("pyproject.toml").read_text())["tool"]["mutmut"]
    mutated = {Path(name) for name in settings["only_mutate"]}
    for folder in settings["source_paths"]:
        for source in Path(folder).rglob("*.py"):
            copy = MUTANTS / source
            if source in mutated or not copy.exists():
                continue
            if copy.read_bytes() != source.read_bytes():
                shutil.copy2(source, copy)


def _interruptible() -> None:
    """A job started in the background (`make mutate &`, CI) inherits SIGINT ignored, and mutmut
    would then carry on past the bound: give it the default back, so Python's Ctrl-C handling."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="forget every earlier verdict")
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=60.0)
    options = parser.parse_args()
    deadline = time.monotonic() + options.minutes * 60
    if options.fresh:
        shutil.rmtree(MUTANTS, ignore_errors=True)
    before = verdicts() if MUTANTS.is_dir() else {}
    refresh_unmutated_copies()
    code = run(["--max-children", str(options.children)], deadline)
    if code:
        return code
    retest = sorted(name for name in verdicts() if before.get(name) in NOT_KILLED)
    if not retest:
        return 0
    print(f"re-testing the {len(retest)} mutants not killed last time", flush=True)
    return run(["--max-children", str(options.children), *retest], deadline)


if __name__ == "__main__":
    sys.exit(main())
