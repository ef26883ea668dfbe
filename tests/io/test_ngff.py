"""NGFF 0.5 metadata: built correctly, validated by the community model, parsed back."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from stemscale import AcquisitionMetadata, MetadataError
from stemscale.io import write_mosaic
from stemscale.io.ngff import (
    multiscales_metadata,
    pixel_size_from_attrs,
    translation_from_attrs,
)


def test_multiscales_levels_scale_and_pixel_centre_translation():
    ome = multiscales_metadata(0.2, translation=(10.0, -5.0), levels=3)
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    assert [a["unit"] for a in ms["axes"]] == ["angstrom", "angstrom"]
    assert [a["name"] for a in ms["axes"]] == ["y", "x"]
    for k, dataset in enumerate(ms["datasets"]):
        scale, translation = dataset["coordinateTransformations"]
        assert dataset["path"] == str(k)
        assert scale["scale"] == pytest.approx([0.2 * 2**k] * 2)
        # Level-k pixel 0 averages level-0 pixels 0..2**k-1: its centre is their mean.
        centre = np.mean(np.arange(2**k)) * 0.2
        assert translation["translation"] == pytest.approx([10.0 + centre, -5.0 + centre])


@pytest.mark.parametrize("bad", [0, -0.1, float("nan"), float("inf"), "abc", None])
def test_bad_pixel_size_is_refused(bad):
    with pytest.raises(MetadataError, match="pixel"):
        multiscales_metadata(bad)


def test_parse_round_trip_and_level_out_of_range():
    attrs = {"ome": multiscales_metadata(0.127, translation=(1.0, 2.0), levels=2)}
    assert pixel_size_from_attrs(attrs) == pytest.approx(0.127)
    assert pixel_size_from_attrs(attrs, level=1) == pytest.approx(0.254)
    assert translation_from_attrs(attrs) == (1.0, 2.0)
    with pytest.raises(MetadataError, match="level 2 does not exist"):
        pixel_size_from_attrs(attrs, "m.zarr", level=2)


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({}, "no OME-NGFF 'multiscales'"),
        ({"ome": {"multiscales": []}}, "malformed"),
        ({"ome": {"multiscales": [{"axes": [{"name": "x"}, {"name": "y"}],
                                   "datasets": [{}]}]}}, "axes ending in"),
    ],
)
def test_missing_or_malformed_metadata_names_the_problem(attrs, message):
    with pytest.raises(MetadataError, match=message):
        pixel_size_from_attrs(attrs, "store.zarr")


def test_other_length_units_are_converted_to_angstrom():
    attrs = {"ome": multiscales_metadata(0.02, translation=(1.0, 2.0))}  # numbers in nm
    for axis in attrs["ome"]["multiscales"][0]["axes"]:
        axis["unit"] = "nanometer"
    assert pixel_size_from_attrs(attrs) == pytest.approx(0.2)
    assert translation_from_attrs(attrs) == pytest.approx((10.0, 20.0))
    for axis in attrs["ome"]["multiscales"][0]["axes"]:
        axis["unit"] = "second"
    with pytest.raises(MetadataError, match="length unit"):
        pixel_size_from_attrs(attrs, "store.zarr")
    del attrs["ome"]["multiscales"][0]["axes"][0]["unit"]
    with pytest.raises(MetadataError, match="length unit"):
        pixel_size_from_attrs(attrs, "store.zarr")


@pytest.mark.parametrize("levels", [1, 3])
def test_written_store_validates_against_ome_zarr_models(tmp_path, levels):
    image_model = pytest.importorskip("ome_zarr_models.v05.image")
    url = tmp_path / "m.zarr"
    data = np.arange(300 * 200, dtype=np.uint16).reshape(300, 200)
    write_mosaic(url, data, AcquisitionMetadata(pixel_size_angstrom=0.2074),
                 chunks=(64, 64), shards=(128, 128), levels=levels, translation=(3.0, 4.0))
    group = zarr.open_group(url, mode="r")
    image = image_model.Image.from_zarr(group)
    (ms,) = image.attributes.ome.multiscales
    assert [d.path for d in ms.datasets] == [str(k) for k in range(levels)]
    assert [a.unit for a in ms.axes] == ["angstrom", "angstrom"]
    # Every level is sharded with the same dimension names as the NGFF axes.
    for k in range(levels):
        array = group[str(k)]
        assert array.metadata.dimension_names == ("y", "x")
        assert array.shards is not None
