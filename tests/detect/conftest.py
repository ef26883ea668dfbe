"""Fixtures for the detection tests: small networks wrapped as loaded models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from stemscale.detect import LoadedModel, ModelConfig, ModelManifest, ResUNet


def wrap(network: nn.Module, config: ModelConfig, pixel_size: float = 0.2074) -> LoadedModel:
    manifest = ModelManifest(name="test", weights_file="none.pt", sha256="0" * 64,
                             model=config.to_dict(), pixel_size_angstrom=pixel_size)
    network.eval()
    return LoadedModel(network, manifest, torch.device("cpu"), torch.float32)


@pytest.fixture()
def random_model() -> LoadedModel:
    """A small ResUNet with random weights (BatchNorm statistics made non-trivial)."""
    torch.manual_seed(0)
    cfg = ModelConfig(base_filters=4, depth=2)
    net = ResUNet(cfg)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return wrap(net, cfg)


class Pointwise(nn.Module):
    """A per-pixel (1x1) classifier: its tiled output must equal its whole-image output."""

    def __init__(self, n_classes: int) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.conv = nn.Conv2d(1, n_classes, 1)
        with torch.no_grad():
            self.conv.weight.normal_(0, 2.0)

    def forward(self, x):
        return self.conv(x)


@pytest.fixture()
def pointwise_model() -> LoadedModel:
    cfg = ModelConfig(base_filters=4, depth=4)
    return wrap(Pointwise(cfg.n_classes), cfg)
