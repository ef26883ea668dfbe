"""The ResUNet: shapes, parameter count of the paper's configuration, configurability."""

from __future__ import annotations

import pytest
import torch

from stemscale.classes import DEFECT_CLASSES
from stemscale.detect import OUTPUT_CLASSES, ModelConfig, ResUNet, count_parameters
from stemscale.errors import InputError


def _expected_paper_parameters(base: int = 16, depth: int = 4, n_out: int = 9) -> int:
    """Parameter count of the paper's ResUNet, tallied layer by layer from its description."""

    def conv(ci, co, k, bias=False):
        return ci * co * k * k + (co if bias else 0)

    def bn(c):
        return 2 * c

    def res(ci, co):
        n = conv(ci, co, 3) + bn(co) + conv(co, co, 3) + bn(co)
        if ci != co:
            n += conv(ci, co, 1) + bn(co)
        return n

    w = [base * 2**i for i in range(depth + 1)]
    total = res(1, w[0]) + sum(res(w[i - 1], w[i]) for i in range(1, depth))
    total += res(w[depth - 1], w[depth])
    for i in reversed(range(depth)):
        total += conv(w[i + 1], w[i], 3, bias=True)  # transposed conv
        total += res(w[i], w[i]) + res(2 * w[i], w[i])
    total += conv(w[0], n_out, 1, bias=True)
    return total


def test_output_classes_are_background_sites_and_defects():
    assert OUTPUT_CLASSES[0] == "background"
    assert set(OUTPUT_CLASSES[1:3]) == {"M", "X"}
    assert OUTPUT_CLASSES[3:] == DEFECT_CLASSES


def test_paper_configuration_has_about_2_6_million_parameters():
    net = ResUNet(ModelConfig())
    n = count_parameters(net)
    assert n == _expected_paper_parameters()
    assert 2.4e6 < n < 2.8e6  # the paper's ~2.6 M


def test_shapes_of_paper_config():
    net = ResUNet().eval()
    with torch.no_grad():
        y = net(torch.randn(1, 1, 256, 256))
    assert y.shape == (1, len(OUTPUT_CLASSES), 256, 256)


@pytest.mark.parametrize("base,depth", [(4, 2), (8, 3), (6, 4)])
def test_width_and_depth_are_configurable(base, depth):
    net = ResUNet(ModelConfig(base_filters=base, depth=depth)).eval()
    assert count_parameters(net) == _expected_paper_parameters(base, depth)
    side = 2**depth * 3
    with torch.no_grad():
        y = net(torch.randn(1, 1, side, 2 * side))
    assert y.shape == (1, 9, side, 2 * side)


def test_input_not_multiple_of_pool_factor_is_refused():
    net = ResUNet(ModelConfig(base_filters=4, depth=2))
    with pytest.raises(ValueError, match="multiples of 4"):
        net(torch.randn(1, 1, 30, 32))


def test_bad_config_is_refused():
    with pytest.raises(InputError, match="depth"):
        ModelConfig(depth=0)
    with pytest.raises(InputError, match="base_filters"):
        ModelConfig(base_filters=0)
