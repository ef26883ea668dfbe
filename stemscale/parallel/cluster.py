"""One factory for every place stemscale runs: laptop, GPU box, SLURM, Kubernetes.

``make_cluster(kind, ...)`` returns a Dask cluster object (or, for an existing
scheduler address, just the address) and ``connect(...)`` a ``Client``.  No
CUDA is touched in the client process: GPU workers choose their device
themselves (dask-cuda), and the optional packages (dask-cuda, dask-jobqueue,
dask-kubernetes) are imported only when their kind is asked for.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import InputError

__all__ = ["CLUSTER_KINDS", "make_cluster", "connect", "worker_thread_env"]

CLUSTER_KINDS = ("local", "cuda", "slurm", "kubernetes")


def worker_thread_env(threads: int = 1) -> dict[str, str]:
    """Environment that stops torch/BLAS/OpenMP from oversubscribing a worker's cores.

    distributed's Nanny also applies it to the client process, so it must not
    hold NUMBA_NUM_THREADS (numba refuses a change once its threads run); block
    tasks cap numba's threads with ``numba.set_num_threads`` instead.
    """
    value = str(max(1, int(threads)))
    return {
        "OMP_NUM_THREADS": value,
        "MKL_NUM_THREADS": value,
        "OPENBLAS_NUM_THREADS": value,
        "STEMSCALE_TORCH_THREADS": value,
    }


def _require(module: str, extra: str, kind: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(
            f"cluster kind '{kind}' needs the package '{module}': "
            f"install it with pip install 'stemscale[{extra}]'"
        ) from None


def make_cluster(kind: str = "local", **options: Any):
    """Create a Dask cluster of the given kind.

    Parameters
    ----------
    kind
        ``"local"``: :class:`distributed.LocalCluster` with one single-threaded
        worker process per core by default (torch and BLAS threads pinned to the
        worker's thread count, so nothing oversubscribes).
        ``"cuda"``: ``dask_cuda.LocalCUDACluster``, one worker per GPU, one thread
        each; with an RMM pool (``rmm_pool_size=...`` or ``rmm_async=True``, needs
        the ``rmm`` package) torch and CuPy allocate from it, else each keeps its
        own caching allocator.
        ``"slurm"``: ``dask_jobqueue.SLURMCluster``; options are passed through
        (``cores``, ``memory``, ``queue``, ``walltime``, ``job_extra_directives`` ...);
        call ``cluster.scale(jobs=n)`` afterwards.
        ``"kubernetes"``: ``dask_kubernetes.operator.KubeCluster`` built from
        :func:`stemscale.deploy.kubernetes_cluster_spec` options.
        A ``tcp://`` or ``tls://`` address: returned unchanged (connect to it).
    **options
        Passed to the cluster class.

    Returns
    -------
    cluster or str
    """
    if "://" in kind:
        return kind
    if kind not in CLUSTER_KINDS:
        raise InputError(
            f"unknown cluster kind {kind!r}; expected one of {', '.join(CLUSTER_KINDS)} "
            "or a scheduler address like tcp://host:8786"
        )
    if kind == "local":
        from distributed import LocalCluster

        threads = int(options.pop("threads_per_worker", 1))
        n_workers = int(options.pop("n_workers", max(1, (os.cpu_count() or 1) // threads)))
        env = {**worker_thread_env(threads), **options.pop("env", {})}
        # Nannies apply this environment before the worker process imports torch.
        import dask

        with dask.config.set({"distributed.nanny.pre-spawn-environ": env}):
            return LocalCluster(
                n_workers=n_workers,
                threads_per_worker=threads,
                processes=True,
                **{"dashboard_address": ":0", **options},
            )
    if kind == "cuda":
        dask_cuda = _require("dask_cuda", "gpu", kind)
        import importlib.util

        defaults: dict[str, Any] = {
            "threads_per_worker": 1,
            "rmm_pool_size": None,
            "dashboard_address": ":0",
        }
        # Routing torch and CuPy through RMM needs rmm (dask-cuda does not install it: without it
        # every worker fails to start) and only pays with a pool: RMM's default resource is plain
        # cudaMalloc, slower than torch's and CuPy's own caching allocators.
        pooled = options.get("rmm_pool_size") is not None or bool(options.get("rmm_async"))
        if pooled and importlib.util.find_spec("rmm") is not None:
            defaults["rmm_allocator_external_lib_list"] = ["torch", "cupy"]
        return dask_cuda.LocalCUDACluster(**{**defaults, **options})
    if kind == "slurm":
        jobqueue = _require("dask_jobqueue", "deploy", kind)
        defaults = {"cores": 1, "memory": "4GB", "processes": 1, "walltime": "01:00:00"}
        return jobqueue.SLURMCluster(**{**defaults, **options})
    # kubernetes
    operator = _require("dask_kubernetes.operator", "deploy", kind)
    from ..deploy import kubernetes_cluster_spec  # noqa: PLC0415 (optional path)

    spec = kubernetes_cluster_spec(**options)
    return operator.KubeCluster(custom_cluster_spec=spec)


def connect(cluster_or_address=None, **options: Any):
    """Return a ``distributed.Client`` for a cluster object, an address or a kind name."""
    from distributed import Client

    if cluster_or_address is None:
        cluster_or_address = make_cluster("local", **options)
    elif isinstance(cluster_or_address, str):
        if cluster_or_address.endswith(".json"):
            # A scheduler file written by `dask scheduler --scheduler-file` (batch jobs).
            if not os.path.exists(cluster_or_address):
                raise InputError(f"scheduler file '{cluster_or_address}' does not exist")
            return Client(scheduler_file=cluster_or_address)
        cluster_or_address = make_cluster(cluster_or_address, **options)
    return Client(cluster_or_address)
