"""Deployment configurations rendered from one Python source of truth.

Functions here return plain dicts / strings for Kubernetes (dask-kubernetes
operator ``DaskCluster`` and ``DaskWorkerGroup``, operator Helm values) and
SLURM (dask-jobqueue ``jobqueue.yaml``, an ``sbatch`` script that starts a
scheduler and workers).  ``deploy/render.py`` writes them to ``deploy/`` and
tests validate them against the dask-kubernetes CRD schemas, so the checked-in
files can never drift from the code.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from ._version import __version__
from .errors import InputError

__all__ = [
    "DEFAULT_IMAGE",
    "kubernetes_cluster_spec",
    "kubernetes_gpu_worker_group",
    "operator_helm_values",
    "slurm_jobqueue_config",
    "slurm_batch_script",
    "crd_schema",
    "validate_kubernetes",
]

DEFAULT_IMAGE = f"ghcr.io/stemscale/stemscale:{__version__}"


def _env_list(env: dict[str, str] | None) -> list[dict[str, str]]:
    return [{"name": str(k), "value": str(v)} for k, v in (env or {}).items()]


def _worker_pod(
    image: str, command: str, nthreads: int, memory: str, resources: dict[str, Any],
    env: dict[str, str] | None, node_selector: dict[str, str] | None = None,
) -> dict[str, Any]:
    args = [
        command, "--name", "$(DASK_WORKER_NAME)", "--dashboard", "--dashboard-address", "8788",
        "--nthreads", str(nthreads), "--memory-limit", memory,
    ]
    pod: dict[str, Any] = {
        "containers": [
            {
                "name": "worker",
                "image": image,
                "args": args,
                "env": _env_list(env),
                "resources": resources,
                "ports": [{"name": "http-dashboard", "containerPort": 8788, "protocol": "TCP"}],
            }
        ]
    }
    if node_selector:
        pod["nodeSelector"] = dict(node_selector)
    return pod


def kubernetes_cluster_spec(
    name: str = "stemscale",
    *,
    image: str = DEFAULT_IMAGE,
    n_workers: int = 4,
    worker_cpu: int = 4,
    worker_memory: str = "16Gi",
    env: dict[str, str] | None = None,
    idle_timeout: int = 0,
) -> dict[str, Any]:
    """A dask-kubernetes operator ``DaskCluster`` with a CPU worker group.

    Parameters
    ----------
    name
        Cluster name (a DNS label).
    image
        Container image with stemscale installed.
    n_workers
        Replicas of the default (CPU) worker group.
    worker_cpu, worker_memory
        Requests and limits of each CPU worker pod; the worker runs one thread
        per core with torch/BLAS threads pinned to 1.
    env
        Extra environment for scheduler and workers.
    idle_timeout
        Seconds of scheduler idleness before the operator deletes the cluster (0: never).
    """
    _check_name(name)
    if n_workers < 0 or worker_cpu < 1:
        raise InputError(f"n_workers must be >= 0 and worker_cpu >= 1, got {n_workers}, {worker_cpu}")
    worker_env = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                  **(env or {})}
    limits = {"cpu": str(worker_cpu), "memory": worker_memory}
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskCluster",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "stemscale"}},
        "spec": {
            "idleTimeout": int(idle_timeout),
            "worker": {
                "replicas": int(n_workers),
                "spec": _worker_pod(image, "dask-worker", worker_cpu, worker_memory,
                                    {"requests": limits, "limits": limits}, worker_env),
            },
            "scheduler": {
                "spec": {
                    "containers": [
                        {
                            "name": "scheduler",
                            "image": image,
                            "args": ["dask-scheduler", "--host", "0.0.0.0"],
                            "env": _env_list(env),
                            "resources": {"requests": {"cpu": "1", "memory": "4Gi"},
                                          "limits": {"cpu": "2", "memory": "8Gi"}},
                            "ports": [
                                {"name": "tcp-comm", "containerPort": 8786, "protocol": "TCP"},
                                {"name": "http-dashboard", "containerPort": 8787, "protocol": "TCP"},
                            ],
                            "readinessProbe": {"httpGet": {"port": "http-dashboard", "path": "/health"},
                                               "initialDelaySeconds": 5, "periodSeconds": 10},
                            "livenessProbe": {"httpGet": {"port": "http-dashboard", "path": "/health"},
                                              "initialDelaySeconds": 15, "periodSeconds": 20},
                        }
                    ]
                },
                "service": {
                    "type": "ClusterIP",
                    "selector": {
                        "dask.org/cluster-name": name,
                        "dask.org/component": "scheduler",
                    },
                    "ports": [
                        {"name": "tcp-comm", "protocol": "TCP", "port": 8786, "targetPort": "tcp-comm"},
                        {"name": "http-dashboard", "protocol": "TCP", "port": 8787,
                         "targetPort": "http-dashboard"},
                    ],
                },
            },
        },
    }


def kubernetes_gpu_worker_group(
    cluster: str = "stemscale",
    *,
    image: str = DEFAULT_IMAGE,
    n_workers: int = 1,
    gpus_per_worker: int = 1,
    worker_cpu: int = 8,
    worker_memory: str = "64Gi",
    node_selector: dict[str, str] | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A ``DaskWorkerGroup`` of GPU workers (dask-cuda, one thread per GPU) for a cluster.

    Workers advertise a ``GPU`` resource so GPU-only steps can be pinned to them.
    """
    _check_name(cluster)
    if gpus_per_worker < 1:
        raise InputError(f"gpus_per_worker must be >= 1, got {gpus_per_worker}")
    limits = {"cpu": str(worker_cpu), "memory": worker_memory, "nvidia.com/gpu": str(gpus_per_worker)}
    pod = _worker_pod(
        image, "dask-cuda-worker", 1, worker_memory,
        {"requests": {"cpu": str(worker_cpu), "memory": worker_memory}, "limits": limits},
        {"STEMSCALE_DEVICE": "cuda", **(env or {})},
        node_selector or {"nvidia.com/gpu.present": "true"},
    )
    # dask-cuda-worker takes no --nthreads (always 1 per GPU); advertise the GPU resource instead.
    args = pod["containers"][0]["args"]
    i = args.index("--nthreads")
    args[i:i + 2] = ["--resources", f"GPU={gpus_per_worker}"]
    pod["tolerations"] = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "apiVersion": "kubernetes.dask.org/v1",
        "kind": "DaskWorkerGroup",
        "metadata": {"name": f"{cluster}-gpu"},
        "spec": {"cluster": cluster, "worker": {"replicas": int(n_workers), "spec": pod}},
    }


def operator_helm_values(namespace_scoped: bool = False) -> dict[str, Any]:
    """Values for the ``dask-kubernetes-operator`` Helm chart suited to stemscale clusters."""
    return {
        "rbac": {"create": True, "cluster": not namespace_scoped},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                      "limits": {"cpu": "500m", "memory": "512Mi"}},
        "kopfArgs": ["--all-namespaces"] if not namespace_scoped else ["--namespace", "$(NAMESPACE)"],
    }


def slurm_jobqueue_config(
    *,
    cpu_queue: str = "cpu",
    gpu_queue: str = "gpu",
    cores: int = 16,
    memory: str = "64GB",
    walltime: str = "04:00:00",
    account: str | None = None,
    python: str = "python",
    prologue: list[str] | None = None,
) -> dict[str, Any]:
    """A ``jobqueue.yaml`` with a CPU default and a GPU variant for dask-jobqueue.

    Returns a mapping for ``dask.config`` under ``jobqueue``.  The GPU variant is
    in ``jobqueue.slurm-gpu`` (load it with ``SLURMCluster(config_name="slurm-gpu")``).
    """
    # Every key dask-jobqueue reads, so the extra "slurm-gpu" section works on its own.
    base = {
        "name": "stemscale-worker",
        "cores": cores,
        "memory": memory,
        "processes": cores,  # one single-threaded worker per core: no torch/BLAS oversubscription
        "walltime": walltime,
        "queue": cpu_queue,
        "account": account,
        "interface": None,
        "local-directory": "$TMPDIR",
        "python": python,
        "job-script-prologue": list(prologue or []) + ["export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1"],
        "job-extra-directives": [],
        "log-directory": "dask-logs",
        "death-timeout": 60,
        "env-extra": None,
        "extra": None,
        "job-cpu": None,
        "job-directives-skip": [],
        "job-extra": None,
        "job-mem": None,
        "scheduler-options": {},
        "shared-temp-directory": None,
        "shebang": "#!/usr/bin/env bash",
        "worker-command": "distributed.cli.dask_worker",
        "worker-extra-args": [],
    }
    gpu = {
        **base,
        "cores": 8,
        "processes": 1,
        "queue": gpu_queue,
        "job-extra-directives": ["--gres=gpu:1"],
        "worker-command": "dask_cuda.cli",
        "worker-extra-args": ["--resources", "GPU=1"],
    }
    return {"jobqueue": {"slurm": base, "slurm-gpu": gpu}}


def slurm_batch_script(
    pipeline: str = "pipelines/defect_strain.yaml",
    *,
    nodes: int = 2,
    partition: str = "cpu",
    cores_per_node: int = 16,
    walltime: str = "04:00:00",
    gpus_per_node: int = 0,
    account: str | None = None,
    setup: list[str] | None = None,
) -> str:
    """An ``sbatch`` script that starts a scheduler and workers inside one allocation.

    Rank 0's node runs the scheduler and the ``stemscale run`` client; every node
    runs workers (dask-cuda workers when ``gpus_per_node`` > 0) connected through a
    scheduler file on the shared file system.
    """
    if nodes < 1 or cores_per_node < 1:
        raise InputError(f"nodes and cores_per_node must be >= 1, got {nodes}, {cores_per_node}")
    directives = [
        "#!/bin/bash",
        "#SBATCH --job-name=stemscale",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --cpus-per-task={cores_per_node}",
        f"#SBATCH --partition={partition}",
        f"#SBATCH --time={walltime}",
        "#SBATCH --output=stemscale-%j.log",
    ]
    if gpus_per_node:
        directives.append(f"#SBATCH --gres=gpu:{gpus_per_node}")
    if account:
        directives.append(f"#SBATCH --account={account}")
    if gpus_per_node:
        worker = "dask cuda worker --scheduler-file \"$SCHED\" --resources GPU=1"
    else:
        worker = ("dask worker --scheduler-file \"$SCHED\" --nworkers \"$SLURM_CPUS_PER_TASK\" "
                  "--nthreads 1")
    body = [
        "set -euo pipefail",
        *(setup or ["# source your environment here, e.g.: source .venv/bin/activate"]),
        "export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1",
        "SCHED=\"$PWD/scheduler-$SLURM_JOB_ID.json\"",
        "dask scheduler --scheduler-file \"$SCHED\" &",
        "while [ ! -f \"$SCHED\" ]; do sleep 1; done",
        f"srun --ntasks={nodes} --ntasks-per-node=1 {worker} &",
        f"stemscale run {shlex.quote(pipeline)} --cluster \"$SCHED\"",
        "kill %1 %2 2>/dev/null || true",
    ]
    return "\n".join(directives + [""] + body) + "\n"


def _check_name(name: str) -> None:
    import re

    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,50}[a-z0-9])?", name or ""):
        raise InputError(
            f"cluster name {name!r} must be a lowercase DNS label (a-z, 0-9, '-'), at most 52 characters"
        )


def crd_schema(kind: str) -> dict[str, Any]:
    """The OpenAPI v3 schema of a dask-kubernetes custom resource (needs dask-kubernetes)."""
    import yaml

    try:
        import dask_kubernetes
    except ImportError:
        raise InputError(
            "validating Kubernetes manifests needs dask-kubernetes: pip install 'stemscale[deploy]'"
        ) from None
    files = {"DaskCluster": "daskcluster.yaml", "DaskWorkerGroup": "daskworkergroup.yaml",
             "DaskJob": "daskjob.yaml", "DaskAutoscaler": "daskautoscaler.yaml"}
    if kind not in files:
        raise InputError(f"unknown dask-kubernetes kind {kind!r}; expected one of {sorted(files)}")
    crd_dir = (Path(dask_kubernetes.__file__).parent / "operator" / "deployment" / "helm"
               / "dask-kubernetes-operator" / "crds")
    crd = yaml.safe_load((crd_dir / files[kind]).read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def validate_kubernetes(manifest: dict[str, Any]) -> None:
    """Validate a rendered manifest against its CRD schema; raise InputError naming the field."""
    import jsonschema

    if manifest.get("apiVersion") != "kubernetes.dask.org/v1":
        raise InputError(f"not a dask-kubernetes manifest: apiVersion {manifest.get('apiVersion')!r}")
    schema = crd_schema(manifest.get("kind", ""))
    try:
        jsonschema.validate(manifest, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        raise InputError(f"{manifest['kind']} field '{where}': {exc.message}") from None
