"""`make bench BACKEND=v2`: the benchmark measures the v2 flavour end to end (kfp 2 modules, the
seed way through kfp 2's own Client, dsp-runner deploys) against localdsp --api v2, and its table
names what it compares with."""

import importlib.util
import sys

from runner_helpers import REPO


def _bench():
    """bench/bench.py is a script, not a package: load it by path."""
    spec = importlib.util.spec_from_file_location("bench_v2", REPO / "bench" / "bench.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_the_v2_benchmark_ships_every_scenario_to_a_dsp_2_server(capsys):
    bench = _bench()
    flavour = bench.installed_flavour()
    assert flavour.name == "v2"
    measures, floor, import_s = bench.scenario(flavour, 2, latency_ms=0, with_seed=True)

    labels = [m.label for m in measures]
    assert labels == [
        "seed way (a process per module)",
        "dsp-runner deploy, all new",
        "dsp-runner deploy, nothing changed",
        "dsp-runner deploy, 1 of 2 changed",
    ]
    assert [m.exit_code for m in measures] == [0, 0, 0, 0]
    seed, all_new, unchanged, one_changed = measures
    # The seed way reached the server for both modules: an upload, a version and a run each.
    assert seed.requests >= 3 * 2
    # All new: a pipeline, a version and a run each and the fixed requests, plus the
    # fingerprint records' listing and the experiment looked up again before it is made; no
    # listing of the versions after the uploads (DSP 2.x has no default version to set).
    assert all_new.requests == flavour.minimal_requests(2) + 2
    # Nothing changed: five requests whatever the number of pipelines, every newest version
    # read from the one v1beta1 listing (the README's figure); one change uploads one version
    # and starts one run on top of that.
    assert unchanged.requests == 5
    assert one_changed.requests > unchanged.requests
    assert floor > import_s > 0

    bench.print_table(flavour, 2, measures, floor, import_s=1.0)
    table = capsys.readouterr().out
    assert "nothing changed / bare `import kfp` (" in table
    assert "kfp_tekton" not in table
