"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import os

import pytest

# Tests must never pick up a GPU by accident or oversubscribe the 2-core CI machine.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def local_cluster():
    """A real distributed LocalCluster with 2 worker processes (1 thread each)."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        memory_limit="4GiB",
    ) as cluster:
        yield cluster


@pytest.fixture()
def client(local_cluster):
    """A client connected to the session's LocalCluster; restored afterwards."""
    from distributed import Client

    with Client(local_cluster) as c:
        yield c
