"""`make corpus`: each pipeline of a folder gets one end state, and the network rule is the one
its docstring states."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import localdsp_corpus as corpus


def pipelinerun(script: str = "echo hi", *, param: str = "x", manifest: str = "") -> dict:
    step = {"name": "main", "image": "alpine", "command": ["sh", "-c", script]}
    if manifest:
        step["args"] = [f"--manifest={manifest}"]
    return {
        "spec": {
            "params": [{"name": "p", "value": param}],
            "pipelineSpec": {"tasks": [{"name": "t", "taskSpec": {"steps": [step]}}]},
        }
    }


@pytest.mark.parametrize(
    ("run", "why"),
    [
        (pipelinerun("gsutil cp gs://b/x /tmp/x"), "gsutil"),
        (pipelinerun("python3 -m pip install pandas && python3 x.py"), "pip install"),
        (pipelinerun("python3 -c 'import requests; requests.get(u)'"), "import requests"),
        (pipelinerun("cat $0", param="https://example.com/data.csv"), "parameter p"),
    ],
)
def test_steps_that_reach_out_need_the_network(run, why):
    assert why in corpus.network_use(run)


def test_words_that_only_look_like_clients_do_not_count():
    manifest = "kind: PersistentVolumeClaim\nspec:\n  resources:\n    requests:\n      storage: 1Gi"
    run = pipelinerun("echo mc escape; cat /tmp/oc.txt", manifest=manifest)

    assert corpus.network_use(run) is None


MODULE = """
import kfp
from kfp import dsl

def add(a: float, b: float) -> float:
    return a + b

add_op = kfp.components.create_component_from_func(add)

@dsl.pipeline(name="adds")
def adds(a: float = 1, b: float = 2):
    add_op(a, b)

@dsl.pipeline(name="reads-a-secret")
def secret():
    from kubernetes.client import V1SecretVolumeSource, V1Volume
    op = dsl.ContainerOp(name="use", image="alpine", command=["ls"])
    op.add_volume(V1Volume(name="s", secret=V1SecretVolumeSource(secret_name="x")))

@dsl.pipeline(name="fails")
def fails():
    dsl.ContainerOp(name="boom", image="alpine", command=["sh", "-c", "echo no; exit 3"])
"""


def test_each_pipeline_gets_its_end_state_and_the_share_counts_those_that_ran(tmp_path):
    (tmp_path / "pipes.py").write_text(MODULE)
    (tmp_path / "broken.py").write_text("import not_a_module\n")

    rows = corpus.measure(tmp_path, timeout=60, compile_timeout=120)

    states = {row.pipeline: (row.state, row.detail) for row in rows}
    assert states["adds"][0] == "Succeeded"
    assert states["reads-a-secret"][0] == "unsupported"
    assert 'volume "s" is a secret volume' in states["reads-a-secret"][1]
    assert states["fails"] == ("Failed", "Failed: boom: Failed no")
    assert states["-"][0] == "compile error"
    assert corpus.summary(rows).splitlines()[-1] == (
        "unsupported: 1 of 3 network-free pipelines that compiled (33.3%)"
    )


SLEEPER = """
from kfp import dsl

@dsl.pipeline(name="sleeps")
def sleeps(pidfile: str = "PIDFILE"):
    dsl.ContainerOp(
        name="nap", image="alpine", command=["sh", "-c", 'echo $$$$ > "$0"; sleep 60', pidfile]
    )
"""


def test_a_stopped_measurement_leaves_no_step_running(tmp_path):
    pidfile = tmp_path / "pid"
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "sleeper.py").write_text(SLEEPER.replace("PIDFILE", str(pidfile)))
    script = Path(corpus.__file__)
    measuring = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "corpus")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert time.monotonic() < deadline and measuring.poll() is None
            time.sleep(0.05)
        step = int(pidfile.read_text())
        measuring.send_signal(signal.SIGTERM)
        measuring.wait(30)
    finally:
        measuring.kill()
    with pytest.raises(ProcessLookupError):
        os.kill(step, 0)


LOOP_MODULE = """
import kfp
from kfp import dsl

@dsl.pipeline(name="refused-in-a-loop")
def refused_in_a_loop():
    from kubernetes.client import V1SecretVolumeSource, V1Volume
    with dsl.ParallelFor(["a"]):
        op = dsl.ContainerOp(name="use", image="alpine", command=["ls"])
        op.add_volume(V1Volume(name="s", secret=V1SecretVolumeSource(secret_name="x")))

@dsl.pipeline(name="fails-in-a-loop")
def fails_in_a_loop():
    with dsl.ParallelFor(["a"]):
        dsl.ContainerOp(name="boom", image="alpine", command=["sh", "-c", "exit 3"])
"""


def test_a_refusal_inside_a_loop_counts_as_unsupported_not_failed(tmp_path):
    (tmp_path / "loops.py").write_text(LOOP_MODULE)

    rows = corpus.measure(tmp_path, timeout=60, compile_timeout=120)

    states = {row.pipeline: (row.state, row.detail) for row in rows}
    state, detail = states["refused-in-a-loop"]
    assert state == corpus.UNSUPPORTED
    assert 'volume "s" is a secret volume' in detail
    assert states["fails-in-a-loop"][0] == corpus.FAILED
