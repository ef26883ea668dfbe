"""Residual U-Net (ResUNet) for per-pixel atom-column and defect classification.

The layout follows the network of Lee, Khan et al. (Nano Lett. 2020): an
encoder of residual blocks with max-pooling, a bottleneck, and a decoder of
transposed convolutions, each followed by a residual block, concatenation
with the matching encoder output and a second residual block.  With 4 levels
and 16 base filters (16, 32, 64, 128, bottleneck 256) it has about 2.6 M
parameters.  Width (``base_filters``) and ``depth`` are configurable so a
narrow model can be trained on a CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..classes import DEFECT_CLASSES, SITE_CHALCOGEN, SITE_METAL

__all__ = ["ModelConfig", "ResUNet", "OUTPUT_CLASSES", "count_parameters"]

#: Output channels of the multi-class head: background, the two atom-column
#: sites (used for peak finding) and every defect class, in this order.
OUTPUT_CLASSES: tuple[str, ...] = ("background", SITE_METAL, SITE_CHALCOGEN, *DEFECT_CLASSES)


@dataclass(frozen=True)
class ModelConfig:
    """Shape of a :class:`ResUNet`.

    Parameters
    ----------
    base_filters
        Filters of the first level; level ``i`` has ``base_filters * 2**i``
        and the bottleneck ``base_filters * 2**depth``.
    depth
        Number of down-sampling levels (the input side must be a multiple of
        ``2**depth``).
    in_channels
        Input channels (1 for a HAADF image).
    classes
        Names of the output channels, background first.
    dropout
        Dropout rate after each pooling step (the paper uses 0.1).
    """

    base_filters: int = 16
    depth: int = 4
    in_channels: int = 1
    classes: tuple[str, ...] = OUTPUT_CLASSES
    dropout: float = 0.1

    def __post_init__(self) -> None:
        from ..errors import InputError

        if int(self.base_filters) < 1:
            raise InputError(f"base_filters must be >= 1, got {self.base_filters!r}")
        if not 1 <= int(self.depth) <= 6:
            raise InputError(f"depth must be between 1 and 6, got {self.depth!r}")
        if len(self.classes) < 2:
            raise InputError(f"classes needs background plus at least one class, got {self.classes!r}")
        object.__setattr__(self, "classes", tuple(self.classes))

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def multiple(self) -> int:
        """Input sides must be multiples of this."""
        return 2**self.depth

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        d = dict(d)
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        return cls(**d)


class ResidualBlock(nn.Module):
    """Two 3x3 conv + batch-norm layers with a (1x1 conv) shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        if c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, bias=False), nn.BatchNorm2d(c_out)
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


class _Up(nn.Module):
    """Transposed conv (x2), residual block, concatenation with the skip, residual block."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1)
        self.pre = ResidualBlock(c_out, c_out)
        self.post = ResidualBlock(2 * c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.pre(self.up(x))
        return self.post(torch.cat([x, skip], dim=1))


class ResUNet(nn.Module):
    """Residual U-Net returning per-pixel class logits of shape (N, n_classes, H, W).

    Parameters
    ----------
    config
        Network shape; the default is the paper's (4 levels, 16..256 filters).
    """

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or ModelConfig()
        widths = [config.base_filters * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList()
        c_prev = config.in_channels
        for w in widths[:-1]:
            self.down.append(ResidualBlock(c_prev, w))
            c_prev = w
        self.pool = nn.MaxPool2d(2)
        self.drop = nn.Dropout2d(config.dropout) if config.dropout > 0 else nn.Identity()
        self.bottleneck = ResidualBlock(widths[-2], widths[-1])
        self.up = nn.ModuleList(
            _Up(widths[i + 1], widths[i]) for i in reversed(range(config.depth))
        )
        self.head = nn.Conv2d(widths[0], config.n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.config.multiple
        if x.shape[-1] % m or x.shape[-2] % m:
            raise ValueError(f"input sides must be multiples of {m}, got {tuple(x.shape[-2:])}")
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.drop(self.pool(x))
        x = self.bottleneck(x)
        for up, skip in zip(self.up, reversed(skips)):
            x = up(x, skip)
        return self.head(x)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
