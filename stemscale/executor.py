"""Running Dask work: which scheduler is active, and progress bars for it.

The one place that asks "is a distributed client running?" and draws
progress, shared by the I/O writers and the orchestration layer (which is
why it sits beside :mod:`stemscale.errors` rather than inside either).
Dask, distributed and rich are imported inside the functions, so importing
this module costs nothing.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from distributed import Client
    from rich.progress import Progress

__all__ = [
    "compute",
    "current_client",
    "dask_progress",
    "progress_bar",
    "scheduler_for_collections",
]


def current_client() -> "Client | None":
    """The distributed client this process works with, or ``None`` (local schedulers)."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


def scheduler_for_collections() -> str | None:
    """Scheduler to pass to ``dask.compute`` of bags and delayed objects.

    ``None`` (Dask's choice) when a distributed client or a configured
    scheduler is active; otherwise ``"threads"``, because ``dask.bag``
    would default to processes, which re-import ``__main__``.
    """
    import dask

    if dask.config.get("scheduler", None) is not None or current_client() is not None:
        return None
    return "threads"


@contextlib.contextmanager
def progress_bar(total: float, description: str, *, enabled: bool = True,
                 unit: str | None = None) -> Iterator[Callable[..., None]]:
    """A rich progress bar; yields ``advance(n=1)``.

    Parameters
    ----------
    total
        Amount of work (blocks, pixels, columns...).
    description
        Text left of the bar.
    enabled
        ``False`` yields a no-op ``advance``.
    unit
        Shown after the counts (e.g. ``"Mpx"``); ``None`` shows ``done/total``.
    """
    if not enabled:
        yield lambda n=1: None
        return
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn,
                               TextColumn, TimeElapsedColumn, TimeRemainingColumn)

    count = (MofNCompleteColumn() if unit is None
             else TextColumn("{task.completed:,.0f}/{task.total:,.0f} " + unit))
    with Progress(TextColumn("{task.description}"), BarColumn(), count, TaskProgressColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(elapsed_when_finished=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)


@contextlib.contextmanager
def dask_progress(progress: "Progress | None" = None, description: str = "computing", *,
                  enabled: bool = True) -> Iterator[None]:
    """Show task completion of the local Dask schedulers in a rich bar.

    With a distributed client active nothing is drawn (its dashboard shows
    progress).  ``progress`` is an existing rich ``Progress`` to add the bar
    to; ``None`` makes one.  Later computations inside the block extend the
    same bar.
    """
    if not enabled or current_client() is not None:
        yield
        return
    from dask.callbacks import Callback

    with contextlib.ExitStack() as stack:
        if progress is None:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
            from rich.progress import TimeElapsedColumn

            progress = stack.enter_context(Progress(TextColumn("{task.description}"), BarColumn(),
                                                    MofNCompleteColumn(), TimeElapsedColumn()))
        bar = progress
        tasks: list[Any] = []

        class _Bar(Callback):
            def _start_state(self, dsk: Any, state: Any) -> None:
                total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
                if not tasks:  # created on the first computation, so errors before it show none
                    tasks.append(bar.add_task(description, total=total))
                else:  # a later computation (e.g. a pyramid level): extend the bar
                    current = bar.tasks[tasks[0]]
                    bar.update(tasks[0], total=(current.total or 0) + total)

            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                bar.advance(tasks[0], 1)

        with _Bar():
            yield
        if tasks:
            bar.update(tasks[0], completed=bar.tasks[tasks[0]].total or 0)


def compute(tasks: Sequence[Any], *, description: str = "computing", progress: bool = False,
            weights: Sequence[float] | None = None, unit: str | None = None,
            cancel_on_error: bool = True) -> list[Any]:
    """Compute Dask delayed tasks on the active scheduler, in completion order.

    Parameters
    ----------
    tasks
        Dask delayed objects.
    description
        Text of the progress bar.
    progress
        Draw a progress bar.
    weights
        Work of each task (e.g. pixels), so that the bar and its ETA advance
        by work done rather than by tasks; default 1 each.
    unit
        Unit of ``weights`` shown on the bar.
    cancel_on_error
        On a failed task (or Ctrl-C) cancel the rest on the cluster.

    Returns
    -------
    list
        Results, in completion order (distributed) or task order (local).
    """
    import dask

    tasks = list(tasks)
    if not tasks:
        return []
    w = [1.0] * len(tasks) if weights is None else [float(x) for x in weights]
    client = current_client()
    with progress_bar(sum(w), description, enabled=progress, unit=unit) as advance:
        if client is not None:
            from distributed import as_completed

            futures = client.compute(tasks)
            index = {f.key: i for i, f in enumerate(futures)}
            results = []
            try:
                for fut in as_completed(futures):
                    results.append(fut.result())  # re-raises a task's own error
                    advance(w[index[fut.key]])
            except BaseException:
                if cancel_on_error:
                    client.cancel(futures)
                raise
            finally:
                for fut in futures:
                    fut.release()
            return results
        from dask.callbacks import Callback

        keys = {}
        for i, t in enumerate(tasks):
            keys[getattr(t, "key", None)] = w[i]

        class _Tick(Callback):
            def _posttask(self, key: Any, result: Any, dsk: Any, state: Any, worker_id: Any) -> None:
                if key in keys:
                    advance(keys[key])

        with _Tick():
            return list(dask.compute(*tasks, scheduler=scheduler_for_collections()))
