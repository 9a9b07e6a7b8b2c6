"""Benchmark dsp-runner against the seed article's way, in one run, and print a table.

The venv decides the flavour (`make bench`: v1, kfp 1.8 + kfp-tekton against localdsp's DSP
1.x; `make bench BACKEND=v2`: kfp 2 against localdsp --api v2); what differs is a `Flavour`.
For N generated pipeline modules, against localdsp with a fixed added latency per request
(modelling a cluster route through the OAuth proxy), it measures side by side:
- seed way: one process per module that imports kfp, compiles (TektonCompiler; kfp 2's
  Compiler), uploads with the SDK's own client (kfp_tekton's; kfp 2's `kfp.Client`) under a
  unique version name so re-runs work, and starts a run, sequentially;
- dsp-runner deploy with everything new, with nothing changed, and with one pipeline changed;
and prints wall time, the ratio to the seed way, requests per pipeline (from localdsp's request
log), peak RSS, and the floor: import time + compile CPU / cores + minimal requests x latency /
concurrency. Also the time `--help` and a configuration error take to exit.

Usage: python bench/bench.py [--sizes 1 10 50] [--latency-ms 20] [--scale 200]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

MODULE_V1 = '''
"""Generated benchmark pipeline {index}: prepare, train, evaluate, report."""
import kfp
from kfp import dsl

IMAGE = "registry.access.redhat.com/ubi9/python-311:latest"


def prepare(samples: int, seed: int) -> str:
    import json
    import random
    rng = random.Random(seed)
    return json.dumps([[x, 3 * x + rng.random()] for x in range(samples)])


def train(data: str, epochs: int, rate: float) -> str:
    import json
    points = json.loads(data)
    slope = 0.0
    for _ in range(epochs):
        slope -= rate * sum(2 * (slope * x - y) * x for x, y in points) / len(points)
    return json.dumps({{"slope": slope}})


def evaluate(model: str, data: str) -> float:
    import json
    slope = json.loads(model)["slope"]
    points = json.loads(data)
    return sum((slope * x - y) ** 2 for x, y in points) / len(points)


def report(mse: float, limit: float) -> str:
    return "accepted" if mse <= limit else "rejected"


prepare_op = kfp.components.create_component_from_func(prepare, base_image=IMAGE)
train_op = kfp.components.create_component_from_func(train, base_image=IMAGE)
evaluate_op = kfp.components.create_component_from_func(evaluate, base_image=IMAGE)
report_op = kfp.components.create_component_from_func(report, base_image=IMAGE)


@dsl.pipeline(name="Bench Pipeline {index:03d}", description="generated for the benchmark")
def bench_pipeline_{index}(samples="{samples}", seed="{index}", epochs="10", rate="0.001",
                           limit="1.0"):
    data = prepare_op(samples, seed)
    model = train_op(data.output, epochs, rate)
    mse = evaluate_op(model.output, data.output)
    report_op(mse.output, limit)
'''

SEED_SCRIPT_V1 = """
import importlib.util, os, sys, time
import kfp_tekton

path, index = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("bench_module", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
func = getattr(module, f"bench_pipeline_{index}")
package = path.replace(".py", ".yaml")
kfp_tekton.compiler.TektonCompiler().compile(func, package)
client = kfp_tekton.TektonClient(host=os.environ["DSP_HOST"],
                                 existing_token=os.environ["DSP_TOKEN"])
name = func._component_human_name
pipeline_id = client.get_pipeline_id(name)
if pipeline_id is None:
    pipeline_id = client.upload_pipeline(package, pipeline_name=name).id
version = client.upload_pipeline_version(package, f"seed-{time.time_ns()}",
                                         pipeline_id=pipeline_id)
experiment = client.create_experiment("seed-way")
client.run_pipeline(experiment.id, f"seed-run-{time.time_ns()}", pipeline_id=pipeline_id,
                    version_id=version.id)
"""

MODULE_V2 = '''
"""Generated benchmark pipeline {index} (kfp 2): prepare, train, evaluate, report."""
from kfp import dsl

IMAGE = "registry.access.redhat.com/ubi9/python-311:latest"


@dsl.component(base_image=IMAGE)
def prepare(samples: int, seed: int) -> str:
    import json
    import random
    rng = random.Random(seed)
    return json.dumps([[x, 3 * x + rng.random()] for x in range(samples)])


@dsl.component(base_image=IMAGE)
def train(data: str, epochs: int, rate: float) -> str:
    import json
    points = json.loads(data)
    slope = 0.0
    for _ in range(epochs):
        slope -= rate * sum(2 * (slope * x - y) * x for x, y in points) / len(points)
    return json.dumps({{"slope": slope}})


@dsl.component(base_image=IMAGE)
def evaluate(model: str, data: str) -> float:
    import json
    slope = json.loads(model)["slope"]
    points = json.loads(data)
    return sum((slope * x - y) ** 2 for x, y in points) / len(points)


@dsl.component(base_image=IMAGE)
def report(mse: float, limit: float) -> str:
    return "accepted" if mse <= limit else "rejected"


@dsl.pipeline(name="bench-pipeline-{index:03d}", description="generated for the benchmark")
def bench_pipeline_{index}(samples: int = {samples}, seed: int = {index}, epochs: int = 10,
                           rate: float = 0.001, limit: float = 1.0):
    data = prepare(samples=samples, seed=seed)
    model = train(data=data.output, epochs=epochs, rate=rate)
    mse = evaluate(model=model.output, data=data.output)
    report(mse=mse.output, limit=limit)
'''

SEED_SCRIPT_V2 = """
import importlib.util, os, sys, time
import kfp
from kfp import compiler

path, index = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("bench_module", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
func = getattr(module, f"bench_pipeline_{index}")
package = path.replace(".py", ".yaml")
compiler.Compiler().compile(func, package)
client = kfp.Client(host=os.environ["DSP_HOST"], existing_token=os.environ["DSP_TOKEN"])
name = func.name
pipeline_id = client.get_pipeline_id(name)
if pipeline_id is None:
    pipeline_id = client.upload_pipeline(package, pipeline_name=name).pipeline_id
version = client.upload_pipeline_version(package, f"seed-{time.time_ns()}",
                                         pipeline_id=pipeline_id)
experiment = client.create_experiment("seed-way")
client.run_pipeline(experiment.experiment_id, f"seed-run-{time.time_ns()}",
                    pipeline_id=pipeline_id, version_id=version.pipeline_version_id)
"""

COMPILE_PROBE_V1 = """
import importlib.util, pathlib, resource, sys, tempfile
import kfp_tekton
from kfp.compiler.main import PipelineCollectorContext
start = resource.getrusage(resource.RUSAGE_SELF)
for i, path in enumerate(sorted(pathlib.Path(sys.argv[1]).glob("*.py"))):
    spec = importlib.util.spec_from_file_location(f"m{i}", path)
    module = importlib.util.module_from_spec(spec)
    with PipelineCollectorContext() as funcs:
        spec.loader.exec_module(module)
    for func in funcs:
        with tempfile.NamedTemporaryFile(suffix=".yaml") as out:
            kfp_tekton.compiler.TektonCompiler().compile(func, out.name)
end = resource.getrusage(resource.RUSAGE_SELF)
print((end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime))
"""

COMPILE_PROBE_V2 = """
import importlib.util, pathlib, resource, sys, tempfile
from kfp import compiler
from kfp.dsl.graph_component import GraphComponent
start = resource.getrusage(resource.RUSAGE_SELF)
for i, path in enumerate(sorted(pathlib.Path(sys.argv[1]).glob("*.py"))):
    spec = importlib.util.spec_from_file_location(f"m{i}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for value in list(vars(module).values()):
        if isinstance(value, GraphComponent):
            with tempfile.NamedTemporaryFile(suffix=".yaml") as out:
                compiler.Compiler().compile(value, out.name)
end = resource.getrusage(resource.RUSAGE_SELF)
print((end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime))
"""


@dataclass(frozen=True)
class Flavour:
    """What differs between the v1 benchmark (kfp 1.8 + kfp-tekton against DSP 1.x) and the v2
    one (kfp 2 against DSP 2.x): the SDK the generated pipelines are written for, how the seed
    way compiles and uploads them, which server generation localdsp serves, the edit that
    changes one pipeline, and the fewest requests an all-new deploy can make."""

    name: str
    sdk_import: str
    """The bare import a no-op deploy is measured against."""
    module: str
    seed_script: str
    compile_probe: str
    edit: tuple[str, str]
    server_flags: tuple[str, ...]
    requests_per_pipeline: int
    fixed_requests: int

    def minimal_requests(self, count: int) -> int:
        return self.requests_per_pipeline * count + self.fixed_requests


FLAVOURS = {
    # All new on DSP 1.x: per pipeline upload + version upload + set default + run; plus the
    # two healthz (the server's generation), the listings (pipelines, jobs, experiment, runs)
    # and the experiment's creation.
    "v1": Flavour(
        name="v1",
        sdk_import="kfp_tekton",
        module=MODULE_V1,
        seed_script=SEED_SCRIPT_V1,
        compile_probe=COMPILE_PROBE_V1,
        edit=('epochs="10"', 'epochs="11"'),
        server_flags=(),
        requests_per_pipeline=4,
        fixed_requests=7,
    ),
    # All new on DSP 2.x: per pipeline create (empty) + version upload + run (2.x has no
    # default version to set); plus one healthz, the listings (pipelines with their newest
    # versions, recurring runs, experiment, runs) and the experiment's creation.
    "v2": Flavour(
        name="v2",
        sdk_import="kfp",
        module=MODULE_V2,
        seed_script=SEED_SCRIPT_V2,
        compile_probe=COMPILE_PROBE_V2,
        edit=("epochs: int = 10", "epochs: int = 11"),
        server_flags=("--api", "v2"),
        requests_per_pipeline=3,
        fixed_requests=6,
    ),
}


def installed_flavour() -> Flavour:
    """The flavour of the venv this runs in (the runner decides the same way)."""
    from runner import flavour

    return FLAVOURS[flavour.current()]


@dataclass
class Measure:
    label: str
    wall_s: float
    requests: int
    pipelines: int
    peak_rss_mb: float
    exit_code: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """localdsp in its own process, so the runner's measurements are its own."""

    def __init__(self, data: Path, *flags: str):
        """`flags` are `python -m localdsp serve`'s: latency, random faults."""
        self.token = secrets.token_urlsafe(24)
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [PYTHON, "-m", "localdsp", "serve", "--port", port, "--data-dir", str(data), *flags],
            cwd=REPO,
            env={**os.environ, "LOCALDSP_TOKEN": self.token, "LOCALDSP_EXECUTE": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.admin("GET", "requests")
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("localdsp did not start")

    def admin(self, method: str, path: str):
        request = urllib.request.Request(f"{self.url}/_localdsp/{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def count_requests(self) -> int:
        return len([r for r in self.admin("GET", "requests") if r["path"].startswith("/apis/")])

    def clear_requests(self) -> None:
        self.admin("DELETE", "requests")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def timed(command: list[str], env: dict[str, str], cwd: Path = REPO) -> tuple[float, float, int]:
    """Wall time, peak RSS (MB) of the largest process in the tree, exit code."""
    probe = (
        "import resource, subprocess, sys, json, time\n"
        "t = time.perf_counter()\n"
        "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, "
        "stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "print(json.dumps([wall, rss, code]))\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", probe, *command],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    wall, rss, code = json.loads(done.stdout)
    return wall, rss, code


def generate(flavour: Flavour, folder: Path, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        module = flavour.module.format(index=index, samples=50)
        (folder / f"bench_{index:03d}.py").write_text(module)


def runner_env(server: Server, root: Path, pipelines: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DSP_HOST": server.url,
        "DSP_TOKEN": server.token,
        "DSP_PIPELINES_DIR": str(pipelines),
        "DSP_OUTPUT_DIR": str(root / "out"),
        "DSP_GIT_COMMIT": "0" * 40,
        "LOG_FORMAT": "json",
    }


def measure_seed(flavour: Flavour, server: Server, pipelines: Path, count: int) -> Measure:
    script = pipelines.parent / "seed_way.py"
    script.write_text(flavour.seed_script)
    env = {**os.environ, "DSP_HOST": server.url, "DSP_TOKEN": server.token}
    server.clear_requests()
    started = time.perf_counter()
    peak, code = 0.0, 0
    for index in range(count):
        _, rss, rc = timed(
            [PYTHON, str(script), str(pipelines / f"bench_{index:03d}.py"), str(index)], env
        )
        peak, code = max(peak, rss), code or rc
    wall = time.perf_counter() - started
    return Measure(
        "seed way (a process per module)", wall, server.count_requests(), count, peak, code
    )


def measure_runner(label: str, server: Server, env: dict[str, str], count: int) -> Measure:
    """One deploy."""
    server.clear_requests()
    wall, rss, code = timed([PYTHON, "-m", "runner", "deploy"], env)
    return Measure(label, wall, server.count_requests(), count, rss, code)


def measure_noop(
    flavour: Flavour, label: str, server: Server, env: dict[str, str], count: int, repeat: int = 5
) -> tuple[Measure, float]:
    """The median of `repeat` deploys where nothing changed, and the median of as many bare
    imports of the SDK, each timed right before its deploy: on a shared machine the load
    drifts within minutes, and the two figures are compared with each other."""
    samples, imports = [], []
    for _ in range(repeat):
        imports.append(timed([PYTHON, "-c", f"import {flavour.sdk_import}"], dict(os.environ))[0])
        server.clear_requests()
        wall, rss, code = timed([PYTHON, "-m", "runner", "deploy"], env)
        samples.append(Measure(label, wall, server.count_requests(), count, rss, code))
    return sorted(samples, key=lambda m: m.wall_s)[len(samples) // 2], statistics.median(imports)


def import_time(flavour: Flavour, repeat: int = 5) -> float:
    """Median time of a bare import of the flavour's SDK in a fresh process."""
    command = [PYTHON, "-c", f"import {flavour.sdk_import}"]
    samples = [timed(command, dict(os.environ))[0] for _ in range(repeat)]
    return statistics.median(samples)


def compile_cpu(flavour: Flavour, pipelines: Path) -> float:
    """CPU seconds to compile every module once, in one process, imports excluded."""
    done = subprocess.run(
        [PYTHON, "-c", flavour.compile_probe, str(pipelines)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def scenario(
    flavour: Flavour, count: int, latency_ms: int, with_seed: bool
) -> tuple[list[Measure], float, float]:
    """The measures, the floor of 'all new', and the bare import time paired with the no-op."""
    root = Path(tempfile.mkdtemp(prefix=f"dsp-bench-{count}-"))
    try:
        pipelines = root / "pipelines"
        generate(flavour, pipelines, count)
        server = Server(root / "server", *flavour.server_flags, "--latency-ms", str(latency_ms))
        try:
            measures = []
            if with_seed:
                measures.append(measure_seed(flavour, server, pipelines, count))
                server.admin("POST", "reset")
            env = runner_env(server, root, pipelines)
            measures.append(measure_runner("dsp-runner deploy, all new", server, env, count))
            noop, import_s = measure_noop(
                flavour, "dsp-runner deploy, nothing changed", server, env, count
            )
            measures.append(noop)
            first = pipelines / "bench_000.py"
            first.write_text(first.read_text().replace(*flavour.edit))
            measures.append(
                measure_runner(f"dsp-runner deploy, 1 of {count} changed", server, env, count)
            )
        finally:
            server.stop()
        floor = (
            import_s
            + compile_cpu(flavour, pipelines) / (os.cpu_count() or 1)
            + flavour.minimal_requests(count) * latency_ms / 1000 / 4
        )
        return measures, floor, import_s
    finally:
        shutil.rmtree(root, ignore_errors=True)


def print_table(
    flavour: Flavour, count: int, measures: list[Measure], floor: float, import_s: float
) -> None:
    seed = next((m for m in measures if m.label.startswith("seed")), None)
    print(f"\nN = {count} pipelines; floor for 'all new' = {floor:.2f} s")
    print(
        f"{'scenario':<40} {'wall s':>8} {'vs seed':>8} {'vs floor':>9} "
        f"{'req/pipeline':>13} {'peak RSS MB':>12} {'exit':>5}"
    )
    for m in measures:
        vs_seed = f"{seed.wall_s / m.wall_s:.1f}x" if seed and m is not seed else "-"
        vs_floor = f"{m.wall_s / floor:.2f}x"
        print(
            f"{m.label:<40} {m.wall_s:>8.2f} {vs_seed:>8} {vs_floor:>9} "
            f"{m.requests / m.pipelines:>13.2f} {m.peak_rss_mb:>12.0f} {m.exit_code:>5}"
        )
    noop = next(m for m in measures if m.label.endswith("nothing changed"))
    print(
        f"nothing changed / bare `import {flavour.sdk_import}` ({import_s:.2f} s, timed beside "
        f"each no-op; medians of 5): {noop.wall_s / import_s:.2f}x"
    )


def startup_figures(flavour: Flavour) -> None:
    import_s = import_time(flavour)
    help_s, _, _ = timed([PYTHON, "-m", "runner", "--help"], dict(os.environ))
    bad = {**os.environ, "DSP_RETRIES": "many"}
    config_s, _, code = timed([PYTHON, "-m", "runner", "deploy"], bad)
    print(f"\n`import {flavour.sdk_import}` in a fresh process (median of 5): {import_s:.2f} s")
    print(f"`python -m runner --help`: {help_s:.2f} s")
    print(f"configuration error (exit {code}): {config_s:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 50])
    parser.add_argument(
        "--scale",
        type=int,
        default=200,
        help="a larger N run without the seed way, for memory (0: skip)",
    )
    parser.add_argument("--latency-ms", type=int, default=20)
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    flavour = installed_flavour()
    print(f"flavour: {flavour.name} (localdsp --api {flavour.name})")
    print(f"localdsp added latency: {args.latency_ms} ms per request")
    startup_figures(flavour)
    for count in args.sizes:
        print_table(flavour, count, *scenario(flavour, count, args.latency_ms, with_seed=True))
    if args.scale:
        print_table(
            flavour, args.scale, *scenario(flavour, args.scale, args.latency_ms, with_seed=False)
        )


if __name__ == "__main__":
    main()
