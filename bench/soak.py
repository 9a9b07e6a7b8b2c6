"""Soak: many deploys through injected faults and kills; the server must never hold a duplicate
and never lose an update.

Each round edits a few of the pipelines, then runs `python -m runner deploy` against localdsp
serving random faults (5xx and 429 answers, connections dropped after the server committed).
Some rounds SIGKILL the runner at a random moment. After a round that exited 0, every pipeline's
default version on the server must be the one made from the current source, with its run. At the
end one clean deploy must converge. Prints deploys, faults injected, duplicates found (must be 0),
lost updates (must be 0) and the exit codes seen; exits non-zero if either count is not 0.

Usage: python bench/soak.py [--rounds 100] [--pipelines 10] [--fault-rate 0.2] [--seed 7]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import PYTHON, REPO, Server, generate

sys.path.insert(0, str(REPO))
from runner import versions


def faulty_server(data: Path, fault_rate: float, seed: int) -> Server:
    """localdsp answering a share of requests with errors and dropping some after commit."""
    return Server(
        data,
        "--error-rate", str(fault_rate * 0.75),
        "--drop-after-commit-rate", str(fault_rate * 0.25),
        "--seed", str(seed),
    )  # fmt: skip


def deploy(env: dict[str, str], kill_after: float | None) -> int:
    process = subprocess.Popen(
        [PYTHON, "-m", "runner", "deploy"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if kill_after is None:
        return process.wait()
    try:
        return process.wait(kill_after)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGKILL)
        process.wait()
        return -9


def expected_versions(pipelines: Path, env: dict[str, str]) -> dict[str, str]:
    """Pipeline name → the version name its current source compiles to."""
    out = Path(env["DSP_OUTPUT_DIR"]) / "expected"
    subprocess.run(
        [PYTHON, "-m", "runner", "compile", "--output-dir", str(out)],
        cwd=REPO,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    summary = json.loads((out / "summary.json").read_text())
    result = {}
    for p in summary["pipelines"]:
        yaml_text = Path(p["version_name"]).read_text()
        slug = Path(p["version_name"]).stem
        result[p["pipeline"]] = versions.version_name(slug, versions.content_hash(yaml_text))
    return result


def check(state: dict, expected: dict[str, str]) -> tuple[int, int]:
    """(duplicates, lost updates) in a dump of the server's state."""
    duplicates = 0
    run_names = collections.Counter(r["name"] for r in state["runs"])
    duplicates += sum(n - 1 for n in run_names.values() if n > 1)
    pipeline_names = collections.Counter(p["name"].lower() for p in state["pipelines"])
    duplicates += sum(n - 1 for n in pipeline_names.values() if n > 1)
    experiments = collections.Counter(e["name"] for e in state["experiments"])
    duplicates += sum(n - 1 for n in experiments.values() if n > 1)
    lost = 0
    defaults = {p["name"]: p.get("default_version_name") for p in state["pipelines"]}
    ran = {r["name"].split("@")[0] for r in state["runs"]}
    for name, version in expected.items():
        if defaults.get(name) != version or version not in ran:
            lost += 1
    return duplicates, lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--pipelines", type=int, default=10)
    parser.add_argument("--fault-rate", type=float, default=0.2)
    parser.add_argument(
        "--kill-every",
        type=int,
        default=10,
        help="SIGKILL the runner at a random moment every Nth round (0: never)",
    )
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="dsp-soak-"))
    pipelines = root / "pipelines"
    generate(pipelines, args.pipelines)
    server = faulty_server(root / "server", args.fault_rate, args.seed)
    env = {
        **os.environ,
        "DSP_HOST": server.url,
        "DSP_TOKEN": server.token,
        "DSP_PIPELINES_DIR": str(pipelines),
        "DSP_OUTPUT_DIR": str(root / "out"),
        "DSP_RETRY_MAX_WAIT": "0.5",
        "DSP_REQUEST_TIMEOUT": "10",
        "LOG_FORMAT": "json",
    }
    codes: collections.Counter = collections.Counter()
    duplicates = lost = 0
    started = time.monotonic()
    try:
        for round_number in range(1, args.rounds + 1):
            for path in rng.sample(sorted(pipelines.glob("*.py")), k=2):
                text = path.read_text()
                epochs = int(text.split('epochs="')[1].split('"')[0])
                path.write_text(text.replace(f'epochs="{epochs}"', f'epochs="{epochs + 1}"'))
            env["DSP_GIT_COMMIT"] = f"{round_number:040x}"
            kill = args.kill_every and round_number % args.kill_every == 0
            code = deploy(env, rng.uniform(0.5, 2.5) if kill else None)
            codes[code] += 1
            if code == 0:
                dup, missing = check(
                    server.admin("GET", "state"), expected_versions(pipelines, env)
                )
                duplicates, lost = max(duplicates, dup), lost + missing
        faults = sum(1 for r in server.admin("GET", "requests") if r.get("fault"))
    finally:
        server.stop()
    clean = faulty_server(root / "server", 0.0, args.seed)
    env.update(DSP_HOST=clean.url, DSP_TOKEN=clean.token)
    try:
        final_code = deploy(env, None)
        dup, missing = check(clean.admin("GET", "state"), expected_versions(pipelines, env))
        duplicates, lost = max(duplicates, dup), lost + missing
    finally:
        clean.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(
        f"deploys: {args.rounds} ({args.pipelines} pipelines, 2 changed per round, "
        f"{args.fault_rate:.0%} faults, a SIGKILL every {args.kill_every} rounds) "
        f"in {time.monotonic() - started:.0f} s"
    )
    print(f"faults injected: {faults}")
    print(f"exit codes: {dict(sorted(codes.items()))}; final clean deploy: {final_code}")
    print(f"duplicates found on the server: {duplicates}")
    print(f"lost updates: {lost}")
    return 0 if duplicates == 0 and lost == 0 and final_code == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
