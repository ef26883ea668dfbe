"""Orchestration on Dask: blocks and halos, clusters, per-worker model caches."""

from .blocks import BlockSpec, keep_owned, owned_mask, plan_blocks, required_halo
from .cluster import CLUSTER_KINDS, connect, make_cluster, worker_thread_env

__all__ = [
    "BlockSpec",
    "keep_owned",
    "owned_mask",
    "plan_blocks",
    "required_halo",
    "CLUSTER_KINDS",
    "connect",
    "make_cluster",
    "worker_thread_env",
]
