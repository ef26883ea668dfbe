"""Per-worker set-up: thread limits and the detection model, loaded once per process.

The plugin carries only a model reference (manifest path + sha256), never the
network, so registering it sends a few hundred bytes to each worker.  Tasks
still call :func:`stemscale.detect.get_model`, which returns the network this
plugin already put in the process cache.
"""

from __future__ import annotations

import os
from typing import Any

from distributed import WorkerPlugin

__all__ = ["ModelWarmup", "warm_up_workers"]


class ModelWarmup(WorkerPlugin):
    """Load and verify the detection model on every worker when it starts.

    Parameters
    ----------
    model
        Shipped model name, manifest path or ``ModelRef``; resolved to a
        ``ModelRef`` (path + digest) before it is pickled.
    device
        ``"cpu"`` or ``"cuda"``; GPU workers see their own GPU as device 0.
    torch_threads
        Intra-op threads for torch on this worker (default: the worker's
        ``nthreads`` when it has one thread per task, else 1).
    """

    name = "stemscale-model-warmup"

    def __init__(self, model: Any = None, device: str = "cpu", torch_threads: int | None = None):
        from ..detect import model_ref

        self.ref = model_ref(model)
        self.device = device
        self.torch_threads = torch_threads

    def setup(self, worker: Any) -> None:
        import torch

        threads = self.torch_threads or int(os.environ.get("STEMSCALE_TORCH_THREADS", "1"))
        torch.set_num_threads(max(1, threads))
        from ..detect import get_model

        get_model(self.ref, device=self.device)

    def teardown(self, worker: Any) -> None:
        from ..detect import clear_cache

        clear_cache()


def warm_up_workers(client: Any, model: Any = None, device: str = "cpu") -> dict[str, Any]:
    """Register :class:`ModelWarmup` on every worker (present and future); returns its report."""
    return client.register_plugin(ModelWarmup(model, device), name=ModelWarmup.name)
