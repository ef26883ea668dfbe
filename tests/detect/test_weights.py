"""Weights on disk: manifest, sha256 verification, weights_only loading, per-process cache."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from stemscale.detect import (ModelConfig, ResUNet, WeightsIntegrityError, available_models,
                              clear_cache, get_model, model_ref, write_model)
from stemscale.detect.weights import sha256_file
from stemscale.errors import InputError, StemscaleError


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(0)
    net = ResUNet(ModelConfig(base_filters=4, depth=2)).eval()
    ref = write_model(net, tmp_path, "tiny", pixel_size_angstrom=0.2074, material="WSe2",
                      training={"steps": 1}, metrics={"f1": 0.5})
    clear_cache()
    yield net, ref
    clear_cache()


def test_roundtrip_gives_the_same_network(saved):
    net, ref = saved
    loaded = get_model(ref)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.network(x), net(x))
    assert loaded.pixel_size_angstrom == pytest.approx(0.2074)
    assert not loaded.network.training


def test_manifest_records_digest_classes_and_provenance(saved):
    _, ref = saved
    m = json.loads(open(ref.manifest_path).read())
    assert m["sha256"] == sha256_file(ref.weights_path) == ref.sha256
    assert m["classes"][0] == "background" and "SV" in m["classes"]
    assert m["model"]["base_filters"] == 4 and m["training"] == {"steps": 1}


def test_tampered_weights_are_refused_with_a_clear_message(saved):
    _, ref = saved
    data = bytearray(ref.weights_path.read_bytes())
    data[-10] ^= 0xFF
    ref.weights_path.write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match=r"sha256.*corrupt or was modified") as exc:
        get_model(ref)
    assert isinstance(exc.value, StemscaleError)
    assert str(ref.weights_path) in str(exc.value)


def test_cache_returns_one_network_per_process_and_key(saved):
    _, ref = saved
    a = get_model(ref)
    b = get_model(ref.manifest_path)
    assert a is b
    assert get_model(ref, dtype=torch.float64) is not a


def test_ref_is_small_and_picklable(saved):
    _, ref = saved
    blob = pickle.dumps(ref)
    assert len(blob) < 1000
    assert pickle.loads(blob) == ref


def test_unknown_model_name_lists_the_shipped_ones():
    with pytest.raises(InputError, match="unknown model 'nope'"):
        model_ref("nope")


def test_missing_cuda_is_a_clear_error(saved):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(InputError, match="CUDA is not available"):
        get_model(saved[1], device="cuda")


def test_shipped_model_loads_and_is_small():
    names = available_models()
    if not names:
        pytest.skip("no shipped weights yet")
    for name in names:
        ref = model_ref(name)
        assert ref.weights_path.stat().st_size <= 15 * 2**20
        loaded = get_model(name)
        assert loaded.manifest.name == name
