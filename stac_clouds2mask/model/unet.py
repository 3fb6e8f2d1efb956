"""Native PyTorch U-Net with an EfficientNet-B4 encoder, laid out like the ukis-csmask ONNX graphs.

Module and parameter names mirror the ONNX initializer names (``encoder._blocks.N._depthwise_conv.weight``,
``decoder.blocks.N.conv1.0.weight`` ...) so the shipped weights load with ``strict=True`` and nothing
is renamed by hand. The encoder's "same" padding is static and sometimes asymmetric (it was computed
by efficientnet-pytorch for a 380 px input when the model was built); the pads below are the ones in
the ONNX graphs' Pad nodes, and symmetric padding would give different results.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_BN_EPS = 1e-3
DECODER_BN_EPS = 1e-5
STEM_CHANNELS = 48
STEM_PADS = (0, 1, 0, 1)
DECODER_CHANNELS = (256, 128, 64, 32, 16)
# Encoder blocks whose outputs feed the decoder skips (after the stem): strides 4, 8, 16.
SKIP_BLOCKS = (5, 9, 21)


@dataclass(frozen=True)
class _Stage:
    repeats: int
    kernel: int
    stride: int
    expand: int
    out_channels: int
    first_pads: tuple[int, int, int, int]  # F.pad order (left, right, top, bottom), from the ONNX graph


# EfficientNet-B4 (width 1.4, depth 1.8). Blocks after the first of a stage have stride 1 and
# symmetric pads k // 2.
_STAGES = (
    _Stage(2, 3, 1, 1, 24, (1, 1, 1, 1)),
    _Stage(4, 3, 2, 6, 32, (0, 1, 0, 1)),
    _Stage(4, 5, 2, 6, 56, (2, 2, 2, 2)),
    _Stage(6, 3, 2, 6, 112, (0, 1, 0, 1)),
    _Stage(6, 5, 1, 6, 160, (2, 2, 2, 2)),
    _Stage(8, 5, 2, 6, 272, (1, 2, 1, 2)),
    _Stage(2, 3, 1, 6, 448, (1, 1, 1, 1)),
)


class BatchNorm(nn.Module):
    """Inference-only batch norm: the four tensors the ONNX graph stores, and no step counter,
    so a state dict read from the graph matches the module key for key."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


class PaddedConv2d(nn.Conv2d):
    """Conv2d with static explicit padding; symmetric pads go to the convolution itself (no copy)."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        pads: tuple[int, int, int, int] = (0, 0, 0, 0),
        bias: bool = False,
    ) -> None:
        symmetric = len(set(pads)) == 1
        super().__init__(in_ch, out_ch, kernel, stride, padding=pads[0] if symmetric else 0, groups=groups, bias=bias)
        self.static_pads = None if symmetric else pads

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.static_pads is not None:
            x = F.pad(x, self.static_pads)
        return super().forward(x)


class MBConv(nn.Module):
    """EfficientNet inverted-residual block with squeeze-excitation."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int, pads: tuple[int, int, int, int]
    ) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = BatchNorm(mid, ENCODER_BN_EPS)
        self._depthwise_conv = PaddedConv2d(mid, mid, kernel, stride, groups=mid, pads=pads)
        self._bn1 = BatchNorm(mid, ENCODER_BN_EPS)
        squeezed = max(1, int(in_ch * 0.25))
        self._se_reduce = nn.Conv2d(mid, squeezed, 1)
        self._se_expand = nn.Conv2d(squeezed, mid, 1)
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = BatchNorm(out_ch, ENCODER_BN_EPS)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.silu(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = F.silu(self._bn1(self._depthwise_conv(h)))
        s = h.mean((2, 3), keepdim=True)
        s = self._se_expand(F.silu(self._se_reduce(s)))
        h = self._bn2(self._project_conv(h * torch.sigmoid(s)))
        return h + x if self.residual else h


class EfficientNetB4Encoder(nn.Module):
    """Stem plus 32 MBConv blocks; returns the five feature maps the U-Net decoder uses."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self._conv_stem = PaddedConv2d(in_channels, STEM_CHANNELS, 3, 2, pads=STEM_PADS)
        self._bn0 = BatchNorm(STEM_CHANNELS, ENCODER_BN_EPS)
        blocks = []
        ch = STEM_CHANNELS
        for stage in _STAGES:
            for i in range(stage.repeats):
                first = i == 0
                pads = stage.first_pads if first else (stage.kernel // 2,) * 4
                blocks.append(
                    MBConv(ch, stage.out_channels, stage.kernel, stage.stride if first else 1, stage.expand, pads)
                )
                ch = stage.out_channels
        self._blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = F.silu(self._bn0(self._conv_stem(x)))
        features = [x]
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in SKIP_BLOCKS:
                features.append(x)
        features.append(x)
        return features


def _conv_bn_relu(in_ch: int, out_ch: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False), BatchNorm(out_ch, DECODER_BN_EPS), nn.ReLU(inplace=True)
    )


class DecoderBlock(nn.Module):
    """x2 nearest upsampling, concatenation with the skip, two 3x3 conv-BN-ReLU."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_ch + skip_ch, out_ch)
        self.conv2 = _conv_bn_relu(out_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class UnetDecoder(nn.Module):
    def __init__(self, encoder_channels: tuple[int, ...]) -> None:
        super().__init__()
        # encoder_channels: deepest first, e.g. (448, 160, 56, 32, 48); the last block has no skip.
        ins = (encoder_channels[0],) + DECODER_CHANNELS[:-1]
        skips = encoder_channels[1:] + (0,)
        self.blocks = nn.ModuleList(DecoderBlock(i, s, o) for i, s, o in zip(ins, skips, DECODER_CHANNELS))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        deepest_first = features[::-1]
        x = deepest_first[0]
        skips = deepest_first[1:] + [None]
        for block, skip in zip(self.blocks, skips):
            x = block(x, skip)
        return x


class CSMaskUnet(nn.Module):
    """U-Net (EfficientNet-B4 encoder) mapping normalised NCHW reflectance to class logits.

    Fully convolutional: any height and width that are multiples of 32.
    """

    def __init__(self, in_channels: int, classes: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.encoder = EfficientNetB4Encoder(in_channels)
        self.decoder = UnetDecoder((448, 160, 56, 32, STEM_CHANNELS))
        self.segmentation_head = nn.Sequential(nn.Conv2d(DECODER_CHANNELS[-1], classes, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"spatial size must be a multiple of 32, got {tuple(x.shape[-2:])}")
        return self.segmentation_head(self.decoder(self.encoder(x)))


def _fold(conv: nn.Conv2d, bn: BatchNorm) -> None:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = bn.bias - bn.running_mean * scale
    if conv.bias is not None:
        bias = bias + conv.bias * scale
    conv.weight = nn.Parameter(conv.weight * scale.reshape(-1, 1, 1, 1))
    conv.bias = nn.Parameter(bias)


@torch.no_grad()
def fold_batchnorm(model: CSMaskUnet) -> CSMaskUnet:
    """Fold every BatchNorm into the convolution before it, in place (inference only: fewer
    passes over memory). The state dict no longer matches the ONNX initializers afterwards."""
    enc = model.encoder
    pairs: list[tuple[nn.Module, str, str]] = [(enc, "_conv_stem", "_bn0")]
    for block in enc._blocks:
        if block.has_expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv_name, bn_name in pairs:
        _fold(getattr(owner, conv_name), getattr(owner, bn_name))
        setattr(owner, bn_name, nn.Identity())
    for block in model.decoder.blocks:
        for seq in (block.conv1, block.conv2):
            _fold(seq[0], seq[1])
            seq[1] = nn.Identity()
    return model
