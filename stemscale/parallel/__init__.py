"""Orchestration on Dask: blocks and halos, clusters, per-worker model caches, the
block runs of detection and fitting, the averaging reduction and mosaic simulation."""

from .blocks import BlockSpec, keep_owned, owned_mask, plan_blocks, required_halo
from .averaging import average_classes, block_accumulate
from .cluster import CLUSTER_KINDS, connect, make_cluster, worker_thread_env
from .simulate import simulate_mosaic

__all__ = [
    "average_classes",
    "block_accumulate",
    "simulate_mosaic",
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
