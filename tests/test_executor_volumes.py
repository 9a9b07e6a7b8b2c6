"""Volumes run as folders of the run: a VolumeOp's claim shared by the tasks that mount it, emptyDir
per pod, cluster-state volumes refused by name (pipelines compiled by TektonCompiler)."""

import copy
import json
import os
import threading

import kfp_tekton
import yaml
from kfp import components, dsl
from kfp.components import InputPath, OutputPath
from kfp.dsl import data_passing_methods
from kubernetes.client import (
    V1ConfigMapVolumeSource,
    V1PersistentVolumeClaimVolumeSource,
    V1SecretVolumeSource,
    V1Volume,
    V1VolumeMount,
)

from localdsp.runs import LocalExecutor
from localdsp.tekton.run import execute

RUN = "shared-claim-abcde"


def shell(name: str, script: str, **kwargs) -> dsl.ContainerOp:
    return dsl.ContainerOp(name=name, image="alpine", command=["sh", "-c", script], **kwargs)


@dsl.pipeline(name="shared-claim")
def claim_pipeline(size: str = "1Gi"):
    claim = dsl.VolumeOp(
        name="create-pvc", resource_name="data", modes=dsl.VOLUME_MODE_RWO, size=size
    )
    write = shell("write", "echo written by A > /data/file.txt", pvolumes={"/data": claim.volume})
    shell(
        "read",
        "cat /mnt/in/file.txt > /tmp/outputs/text/data",
        pvolumes={"/mnt/in": write.pvolume},
        file_outputs={"text": "/tmp/outputs/text/data"},
    )


@dsl.pipeline(name="loop-claim")
def loop_claim_pipeline():
    claim = dsl.VolumeOp(name="create-pvc", resource_name="data", size="1Gi")
    with dsl.ParallelFor(["a", "b", "c"]) as item:
        wrote = dsl.ContainerOp(
            name="write",
            image="alpine",
            command=["sh", "-c", 'echo "$0" > "/data/$0.txt"', item],
            pvolumes={"/data": claim.volume},
        )
    shell(
        "list",
        "ls /data > /tmp/outputs/names/data",
        pvolumes={"/data": claim.volume},
        file_outputs={"names": "/tmp/outputs/names/data"},
    ).after(wrote)


@dsl.pipeline(name="deleted-claim")
def deleted_claim_pipeline():
    claim = dsl.VolumeOp(name="create-pvc", resource_name="data", size="1Gi")
    use = shell("use", "echo x > /data/f", pvolumes={"/data": claim.volume})
    claim.delete().after(use)


@dsl.pipeline(name="kubectl-apply")
def kubectl_apply_pipeline():
    dsl.ContainerOp(
        name="apply", image="bitnami/kubectl", command=["kubectl", "apply", "-f", "/tmp/x.yaml"]
    )


@dsl.pipeline(name="bound-claim")
def bound_pipeline():
    dsl.VolumeOp(
        name="create-pvc",
        resource_name="data",
        size="2Gi",
        success_condition="status.phase = Bound",
    )


@dsl.pipeline(name="job-op")
def job_pipeline():
    dsl.ResourceOp(
        name="make-job",
        k8s_resource={"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}},
    )


@dsl.pipeline(name="existing-claim")
def existing_claim_pipeline():
    shell("use", "ls /data", pvolumes={"/data": dsl.PipelineVolume(pvc="team-data")})


show_text = components.load_component_from_text("""
name: Show
inputs: [{name: text}]
outputs: [{name: seen, type: String}]
implementation:
  container:
    image: alpine
    command: [sh, -c, 'cat "$0" > "$1"', {inputPath: text}, {outputPath: seen}]
""")


@dsl.pipeline(name="raw-artifacts")
def artifacts_pipeline():
    show_text("one")
    show_text("two")


@dsl.pipeline(name="secret-volume")
def secret_pipeline():
    op = shell("use", "ls /creds")
    op.add_volume(V1Volume(name="creds", secret=V1SecretVolumeSource(secret_name="gcp")))
    op.container.add_volume_mount(V1VolumeMount(name="creds", mount_path="/creds"))


@dsl.pipeline(name="config-volume")
def config_pipeline():
    op = shell("use", "ls /conf")
    op.add_volume(V1Volume(name="conf", config_map=V1ConfigMapVolumeSource(name="settings")))


def produce(out: OutputPath(str)):
    with open(out, "w") as f:
        f.write("through the claim")


def consume(inp: InputPath(str)) -> str:
    with open(inp) as f:
        return f.read()


produce_op = components.create_component_from_func(produce, base_image="python:3.11")
consume_op = components.create_component_from_func(consume, base_image="python:3.11")


@dsl.pipeline(name="artifacts-on-claim")
def claim_artifacts_pipeline():
    consume_op(produce_op().output)
    claim = V1PersistentVolumeClaimVolumeSource(claim_name="artifacts")
    dsl.get_pipeline_conf().data_passing_method = data_passing_methods.KubernetesVolume(
        volume=V1Volume(name="data", persistent_volume_claim=claim), path_prefix="runs/"
    )


def compiled(pipeline, tmp_path, name: str = RUN) -> dict:
    path = tmp_path / "pipeline.yaml"
    kfp_tekton.compiler.TektonCompiler().compile(pipeline, str(path))
    document = yaml.safe_load(path.read_text())
    document["metadata"]["name"] = name
    document["metadata"]["namespace"] = "team-a"
    return document


def run(pipelinerun: dict, tmp_path):
    return execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "work", timeout=60)


def test_a_volumeop_claim_carries_a_file_from_one_task_to_the_next(tmp_path):
    result = run(compiled(claim_pipeline, tmp_path), tmp_path)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["read"].results["text"] == "written by A\n"
    made = result.tasks["create-pvc"].results
    assert made["name"] == f"{RUN}-data"
    assert made["size"] == ""  # still Pending: nothing waited for it to bind
    claim = json.loads(made["manifest"])
    assert claim["kind"] == "PersistentVolumeClaim"
    assert claim["metadata"]["namespace"] == "team-a"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert claim["status"] == {"phase": "Pending"}
    assert (tmp_path / "work" / "_claims" / f"{RUN}-data" / "file.txt").is_file()


def test_loop_iterations_share_the_claim_made_outside_the_loop(tmp_path):
    result = run(compiled(loop_claim_pipeline, tmp_path, "loop-claim-abcde"), tmp_path)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["list"].results["names"] == "a.txt\nb.txt\nc.txt\n"


def test_a_volumeops_delete_removes_its_claim(tmp_path):
    result = run(compiled(deleted_claim_pipeline, tmp_path, "deleted-claim-abcde"), tmp_path)

    assert result.reason == "Succeeded", result.message
    delete = result.tasks["kubernetes-resource-delete"]
    assert delete.logs["main"].read_text() == "persistentvolumeclaim/deleted-claim-abcde-data\n"
    assert not (tmp_path / "work" / "_claims" / "deleted-claim-abcde-data").exists()


def test_kubectl_other_than_deleting_a_claim_is_refused_never_sent_to_a_cluster(tmp_path):
    result = run(compiled(kubectl_apply_pipeline, tmp_path), tmp_path)

    assert result.reason == "PipelineValidationFailed"
    assert "kubectl apply needs a Kubernetes API server" in result.message
    assert not result.tasks


def test_a_claim_that_waits_to_bind_reports_its_capacity(tmp_path):
    result = run(compiled(bound_pipeline, tmp_path, "bound-claim-abcde"), tmp_path)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["create-pvc"].results["size"] == "2Gi"


def test_empty_dir_volumes_are_a_folder_per_pod(tmp_path):
    result = run(compiled(artifacts_pipeline, tmp_path), tmp_path)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["show"].results["seen"] == "one"
    assert result.tasks["show-2"].results["seen"] == "two"


def test_a_claim_that_does_not_exist_fails_its_task_naming_the_folder_to_make(tmp_path):
    result = run(compiled(existing_claim_pipeline, tmp_path), tmp_path)

    assert result.reason == "Failed"
    assert 'PersistentVolumeClaim "team-data" does not exist' in result.message
    assert str(tmp_path / "work" / "_claims" / "team-data") in result.message


def test_claims_live_in_the_namespaces_folder_and_outlive_runs(tmp_path):
    claims = tmp_path / "claims"
    (claims / "team-data").mkdir(parents=True)
    (claims / "team-data" / "kept.txt").write_text("from an earlier run")
    env = {**os.environ, "LOCALDSP_CLAIMS": str(claims)}

    result = execute(
        compiled(existing_claim_pipeline, tmp_path), workdir=tmp_path / "work", env=env
    )
    made = execute(compiled(claim_pipeline, tmp_path), workdir=tmp_path / "other", env=env)

    assert result.reason == "Succeeded", result.message
    assert result.tasks["use"].logs["main"].read_text() == "kept.txt\n"
    assert made.reason == "Succeeded", made.message
    assert (claims / f"{RUN}-data" / "file.txt").read_text() == "written by A\n"


def test_a_workspace_bound_to_a_claim_passes_artifacts_through_its_folder(tmp_path):
    claims = tmp_path / "claims"
    env = {**os.environ, "LOCALDSP_CLAIMS": str(claims)}
    pipelinerun = compiled(claim_artifacts_pipeline, tmp_path)

    missing = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "w1", env=env)
    (claims / "artifacts").mkdir(parents=True)
    result = execute(copy.deepcopy(pipelinerun), workdir=tmp_path / "w2", env=env)

    assert missing.reason == "Failed"
    assert 'PersistentVolumeClaim "artifacts" does not exist' in missing.message
    assert result.reason == "Succeeded", result.message
    assert result.tasks["consume"].results["Output"] == "through the claim"
    assert list((claims / "artifacts").rglob("*")), "the artifacts stay in the claim"


def test_a_resource_op_other_than_a_claim_is_refused_naming_it(tmp_path):
    result = run(compiled(job_pipeline, tmp_path), tmp_path)

    assert result.reason == "PipelineValidationFailed"
    assert "create a Job with kubectl (a resource op)" in result.message
    assert "not supported by the local executor" in result.message
    assert not result.tasks


def test_secret_and_config_map_volumes_are_refused_by_name(tmp_path):
    secret = run(compiled(secret_pipeline, tmp_path), tmp_path)
    config = run(compiled(config_pipeline, tmp_path), tmp_path)

    assert secret.reason == config.reason == "PipelineValidationFailed"
    assert 'volume "creds" is a secret volume, which holds cluster state' in secret.message
    assert 'volume "conf" is a configMap volume, which holds cluster state' in config.message
    assert not secret.tasks and not config.tasks


def test_localdsp_keeps_claims_in_its_data_folder(tmp_path):
    ended = threading.Event()
    executor = LocalExecutor(tmp_path / "data")

    def on_status(reason: str, live: dict) -> None:
        if reason not in ("Running", ""):
            ended.set()

    executor.start("run-1", compiled(claim_pipeline, tmp_path), on_status)

    assert ended.wait(60)
    executor.close()
    assert (tmp_path / "data" / "claims" / f"{RUN}-data" / "file.txt").is_file()
