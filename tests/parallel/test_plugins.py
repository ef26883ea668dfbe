"""The model travels as a reference, never inside the task graph."""

import pickle

import numpy as np

from stemscale import AcquisitionMetadata
from stemscale.io import open_mosaic, write_array
from stemscale.parallel.plugins import ModelWarmup, warm_up_workers


def test_plugin_is_small_and_loads_model_on_every_worker(client):
    plugin = ModelWarmup()
    assert len(pickle.dumps(plugin)) < 2_000  # a path and a digest, not 0.7 M parameters
    warm_up_workers(client)

    def cached_models():
        from stemscale.detect import weights

        return len(weights._CACHE)

    counts = client.run(cached_models)
    assert counts and all(n >= 1 for n in counts.values())


def test_block_graph_stays_small_for_a_store_backed_mosaic(tmp_path):
    image = np.random.default_rng(0).poisson(5.0, (1024, 1024)).astype("float32")
    url = tmp_path / "m.zarr"
    write_array(url, image, AcquisitionMetadata(0.2074), chunks=(128, 128), shards=(256, 256))
    mosaic = open_mosaic(url)
    atoms = mosaic.stem.find_atoms(stats=(5.0, 2.2))
    graph = atoms.__dask_graph__()
    size = len(pickle.dumps(dict(graph)))
    # 16 blocks: each task holds a block spec, a small config and the store's URL.
    assert size < 16 * 4_000, size
