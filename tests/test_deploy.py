"""Deployment files: rendered from code, valid against their schemas, never stale."""

import copy
import importlib.util
from pathlib import Path

import pytest
import yaml

from stemscale import deploy
from stemscale.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def _render_module():
    spec = importlib.util.spec_from_file_location("deploy_render", ROOT / "deploy" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_checked_in_files_match_the_code():
    assert _render_module().main(check=True) == 0


@pytest.mark.parametrize("name", ["daskcluster.yaml", "gpu-workergroup.yaml"])
def test_kubernetes_manifests_validate_against_crd(name):
    manifest = yaml.safe_load((ROOT / "deploy" / "kubernetes" / name).read_text())
    deploy.validate_kubernetes(manifest)


def test_gpu_worker_group_requests_a_gpu_and_uses_dask_cuda():
    group = deploy.kubernetes_gpu_worker_group("demo", gpus_per_worker=2)
    container = group["spec"]["worker"]["spec"]["containers"][0]
    assert container["args"][0] == "dask-cuda-worker"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "GPU=2" in container["args"]
    assert group["spec"]["cluster"] == "demo"


def test_invalid_manifest_is_rejected_naming_the_field():
    manifest = copy.deepcopy(deploy.kubernetes_cluster_spec())
    manifest["spec"]["worker"]["replicas"] = "four"
    with pytest.raises(InputError, match="spec/worker/replicas"):
        deploy.validate_kubernetes(manifest)


def test_bad_cluster_name_is_refused():
    with pytest.raises(InputError, match="DNS label"):
        deploy.kubernetes_cluster_spec("My_Cluster")


def test_helm_values_only_use_keys_the_chart_knows():
    import dask_kubernetes

    chart_values = yaml.safe_load(
        (Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
         / "dask-kubernetes-operator" / "values.yaml").read_text()
    )
    ours = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "operator-values.yaml").read_text())
    unknown = set(ours) - set(chart_values)
    assert not unknown, f"keys the dask-kubernetes-operator chart does not define: {unknown}"


def test_jobqueue_config_renders_slurm_job_scripts():
    import dask
    from dask_jobqueue import SLURMCluster

    config = yaml.safe_load((ROOT / "deploy" / "slurm" / "jobqueue.yaml").read_text())
    with dask.config.set(config):
        cpu = SLURMCluster.job_cls(scheduler="tcp://127.0.0.1:8786", config_name="slurm").job_script()
        gpu = SLURMCluster.job_cls(
            scheduler="tcp://127.0.0.1:8786", config_name="slurm-gpu"
        ).job_script()
    assert "#SBATCH -p cpu" in cpu and "OMP_NUM_THREADS=1" in cpu
    assert "--gres=gpu:1" in gpu and "dask_cuda.cli" in gpu and "GPU=1" in gpu


def test_batch_script_starts_scheduler_workers_and_pipeline():
    script = deploy.slurm_batch_script("pipelines/demo.yaml", nodes=3, gpus_per_node=1)
    assert script.startswith("#!/bin/bash")
    assert "#SBATCH --nodes=3" in script and "#SBATCH --gres=gpu:1" in script
    assert "dask cuda worker" in script
    assert "stemscale run pipelines/demo.yaml" in script
    with pytest.raises(InputError):
        deploy.slurm_batch_script(nodes=0)
