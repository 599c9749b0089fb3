r"""Image encoders behind one small interface: images in, one feature vector per image out.

Every encoder is an [`ImageEncoder`][rewardkit.ImageEncoder]; similarity rewards compare its
features with the cosine

$$
s(x, y) = \frac{\langle f(x), f(y)\rangle}{\lVert f(x)\rVert\,\lVert f(y)\rVert}.
$$

Builders here wrap transformers' SigLIP / SigLIP2, CLIP and DINOv2 vision towers and any
open_clip model. Each takes a local directory or a hub id (``pretrained=``) **or** a config
(``config=``, random weights, for tests and benchmarks); the frameworks are imported only
when a builder runs, so ``import rewardkit`` stays light. Nothing is downloaded unless you pass
a hub id and the hub is reachable.
"""

import importlib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias, runtime_checkable

import torch
from torch import Tensor, nn

from rewardkit.rewards._images import Images, Preprocess, as_image_list

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageEncoder",
    "TorchImageEncoder",
    "clip_encoder",
    "dinov2_encoder",
    "open_clip_encoder",
    "resolve_device",
    "resolve_dtype",
    "siglip_encoder",
    "tiny_encoder_config",
]

#: OpenAI CLIP normalisation (also CSD's).
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD: tuple[float, float, float] = (0.26862954, 0.26130258, 0.27577711)
#: ImageNet normalisation (DINOv2).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

SIGLIP_DEFAULT = "google/siglip2-base-patch16-384"
CLIP_DEFAULT = "openai/clip-vit-large-patch14"
DINOV2_DEFAULT = "facebook/dinov2-base"

SiglipMode: TypeAlias = Literal["flat", "mean_pool", "pooler"]
DeviceLike: TypeAlias = str | torch.device | None
DtypeLike: TypeAlias = str | torch.dtype | None
FeatureFn: TypeAlias = Callable[[Any, Tensor], Tensor]


@runtime_checkable
class ImageEncoder(Protocol):
    """Maps images to feature vectors that are compared with the cosine.

    ``encode`` takes an `(N, 3, H, W)` tensor in ``[0, 1]`` or a sequence of images (tensors
    of any size, or PIL) and returns `(N, D)` float32 features on the encoder's device.
    """

    name: str

    def encode(self, images: Images) -> Tensor:
        """Return `(N, D)` float32 features, one row per image."""
        ...


def resolve_device(device: DeviceLike) -> torch.device:
    """``None`` → CUDA when available, else CPU; strings and devices pass through."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}  # fmt: skip


def resolve_dtype(dtype: DtypeLike) -> torch.dtype:
    """``None`` → float32; accepts a ``torch.dtype`` or a name such as ``"bfloat16"``."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {sorted(_DTYPES)} or a torch.dtype, got {dtype!r}")
    return _DTYPES[dtype]


class TorchImageEncoder:
    """A torch module + preprocessing + feature extraction, run in batches without gradients.

    All concrete encoders are instances of this class; what differs is the module, the
    [`Preprocess`][rewardkit.Preprocess] and the ``features`` function that maps
    ``(module, pixel_batch)`` to `(B, ...)` features (flattened to `(B, D)`).

    Args:
        name: short name used in logs and benchmarks.
        module: the network; moved to ``device``/``dtype`` and set to eval mode.
        preprocess: resize / crop / normalise.
        features: ``features(module, pixels) -> Tensor``.
        batch_size: images per forward pass.
        device: where to run (``None`` → CUDA if available, else CPU).
        dtype: weight and activation dtype (``None`` → float32; ``"bfloat16"`` on GPUs).
    """

    def __init__(
        self,
        name: str,
        module: nn.Module,
        preprocess: Preprocess,
        features: FeatureFn,
        *,
        batch_size: int = 16,
        device: DeviceLike = None,
        dtype: DtypeLike = None,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        self.name = name
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self.module = module.to(device=self.device, dtype=self.dtype).eval().requires_grad_(False)
        self.preprocess = preprocess
        self.features = features
        self.batch_size = batch_size

    def __repr__(self) -> str:
        return (
            f"TorchImageEncoder(name={self.name!r}, device={self.device}, dtype={self.dtype}, "
            f"batch_size={self.batch_size}, preprocess={self.preprocess})"
        )

    def encode(self, images: Images) -> Tensor:
        """Encode images to `(N, D)` float32 features on ``self.device``."""
        items = as_image_list(images)
        chunks: list[Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(items), self.batch_size):
                # Generated images may live on the GPU and references on the CPU: bring each
                # to the encoder's device first, so the batch forms and resizing runs there.
                chunk = [im.to(self.device) for im in items[start : start + self.batch_size]]
                pixels = self.preprocess(chunk).to(dtype=self.dtype)
                chunks.append(self.features(self.module, pixels).float().flatten(1))
        if not chunks:
            return torch.empty(0, 0, device=self.device)
        return torch.cat(chunks)


# --------------------------------------------------------------------------- loading helpers

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve_weights(pretrained: str | Path, *, what: str, example: str) -> tuple[str, bool]:
    """Classify ``pretrained`` as an existing local path or a hub id; reject a missing path.

    Returns:
        ``(source, is_local)``.

    Raises:
        FileNotFoundError: a path-like string (absolute, ``./``, ``~``, several ``/``) that does
            not exist; the message says what to pass instead.
    """
    text = str(pretrained)
    path = Path(text).expanduser()
    if path.exists():
        return str(path), True
    if isinstance(pretrained, Path) or not _HUB_ID.match(text) or text.startswith("."):
        raise FileNotFoundError(
            f"{what} weights not found at {text!r}. Pass pretrained= a local directory that holds "
            f"config.json and the weights (model.safetensors), or a hub id such as {example!r} "
            "(needs the hub or a local HF cache); for random weights (tests) pass config= instead"
        )
    return text, False


def _hub_error(what: str, source: str, err: Exception) -> OSError:
    return OSError(
        f"could not load {what} from {source!r} ({type(err).__name__}: {err}). It is not a local "
        "directory, so it was treated as a hub id. Pass pretrained= a local directory with config.json "
        f"and the weights (e.g. made with `hf download {source} --local-dir DIR`), or make the hub reachable"
    )


def _from_pretrained(cls: Any, source: str, is_local: bool, what: str, **kwargs: Any) -> nn.Module:
    try:
        model: nn.Module = cls.from_pretrained(source, **kwargs)
    except OSError as err:
        if is_local:
            raise OSError(
                f"could not load {what} from the local directory {source!r}: {err}. It must hold "
                "config.json and model.safetensors (or pytorch_model.bin) as written by save_pretrained"
            ) from err
        raise _hub_error(what, source, err) from err
    return model


def _load_config(source: str, is_local: bool, what: str) -> Any:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as err:
        if is_local:
            raise OSError(f"{source!r} has no readable config.json for {what}: {err}") from err
        raise _hub_error(what, source, err) from err


_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic", 1: "bicubic", 4: "bilinear", 5: "bicubic"}


def _read_processor_json(source: str, is_local: bool) -> dict[str, Any] | None:
    """The checkpoint's ``preprocessor_config.json`` as a dict, or ``None`` if unavailable."""
    file: str | None = None
    if is_local:
        candidate = Path(source) / "preprocessor_config.json"
        file = str(candidate) if candidate.is_file() else None
    else:
        try:
            from transformers.utils.hub import cached_file

            file = cached_file(
                source,
                "preprocessor_config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except (OSError, ValueError):
            file = None
    if file is None:
        return None
    data: dict[str, Any] = json.loads(Path(file).read_text())
    return data


def preprocess_from_processor_json(cfg: Mapping[str, Any], default: Preprocess) -> Preprocess:
    """Build a [`Preprocess`][rewardkit.Preprocess] from a HF processor config.

    Reads ``size`` (``{"height", "width"}`` → squash, ``{"shortest_edge"}`` → shorter side),
    ``crop_size`` / ``do_center_crop``, ``image_mean``, ``image_std`` and ``resample``; missing
    keys keep ``default``'s values. PIL's Lanczos / Hamming / Box filters map to bicubic /
    bilinear (the closest torch kernels).
    """
    size: Any = default.size
    resize = default.resize
    raw_size = cfg.get("size")
    if isinstance(raw_size, Mapping):
        if "height" in raw_size and "width" in raw_size:
            size, resize = (int(raw_size["height"]), int(raw_size["width"])), "squash"
        elif "shortest_edge" in raw_size:
            size, resize = int(raw_size["shortest_edge"]), "shorter"
    elif isinstance(raw_size, int):
        size = raw_size
    crop: Any = default.crop
    if cfg.get("do_center_crop") is False:
        crop = None
    elif "crop_size" in cfg and cfg.get("do_center_crop", True):
        raw_crop = cfg["crop_size"]
        if isinstance(raw_crop, Mapping):
            crop = (int(raw_crop["height"]), int(raw_crop["width"]))
        elif isinstance(raw_crop, int):
            crop = raw_crop
    if resize == "squash" and isinstance(size, tuple) and size[0] == size[1]:
        size = size[0]
    mean = tuple(float(v) for v in cfg.get("image_mean", default.mean))
    std = tuple(float(v) for v in cfg.get("image_std", default.std))
    interp = _RESAMPLE.get(int(cfg["resample"]), default.interpolation) if "resample" in cfg else None
    return Preprocess(
        size=size,
        resize=resize,
        crop=crop,
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        interpolation=interp or default.interpolation,  # type: ignore[arg-type]
    )


def _random_init(factory: Callable[[], nn.Module], seed: int) -> nn.Module:
    """Build a randomly initialised module reproducibly without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()


def _check_choice(name: str, value: object, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def tiny_encoder_config(family: str) -> dict[str, Any]:
    """Keyword arguments of a tiny vision config (32×32 input, 2 layers) for tests/benchmarks.

    Args:
        family: ``"siglip"``, ``"siglip2"`` (NaFlex), ``"clip"`` or ``"dinov2"``.

    Returns:
        A dict to pass as ``config=`` to the matching builder (random weights).
    """
    base: dict[str, Any] = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "patch_size": 8,
    }
    if family == "siglip":
        return {**base, "image_size": 32}
    if family == "siglip2":
        return {**base, "num_patches": 16}
    if family == "clip":
        return {**base, "image_size": 32, "projection_dim": 16}
    if family == "dinov2":
        return {**base, "image_size": 32}
    raise ValueError(f"family must be one of ('siglip', 'siglip2', 'clip', 'dinov2'), got {family!r}")


def _check_one_source(pretrained: object, config: object, default: str) -> str | None:
    if pretrained is not None and config is not None:
        raise ValueError("pass either pretrained= (real weights) or config= (random weights), not both")
    if pretrained is None and config is None:
        return default
    return None if pretrained is None else str(pretrained)


# --------------------------------------------------------------------------- SigLIP / SigLIP2


def _siglip_features(mode: SiglipMode, naflex: bool, patch: int, grid: int) -> FeatureFn:
    def features(module: nn.Module, pixels: Tensor) -> Tensor:
        if naflex:
            # NaFlex takes patch sequences: (B, 3, g*p, g*p) -> (B, g*g, p*p*3), channels last.
            b = pixels.shape[0]
            patches = pixels.reshape(b, 3, grid, patch, grid, patch).permute(0, 2, 4, 3, 5, 1)
            patches = patches.reshape(b, grid * grid, patch * patch * 3)
            mask = torch.ones(b, grid * grid, dtype=torch.long, device=pixels.device)
            shapes = torch.tensor([[grid, grid]] * b, dtype=torch.long, device=pixels.device)
            out = module(pixel_values=patches, pixel_attention_mask=mask, spatial_shapes=shapes)
        else:
            out = module(pixel_values=pixels)
        if mode == "pooler":
            pooled: Tensor = out.pooler_output
            return pooled
        hidden: Tensor = out.last_hidden_state  # post-layernorm tokens (B, L, D)
        return hidden.flatten(1) if mode == "flat" else hidden.mean(dim=1)

    return features


def siglip_encoder(
    pretrained: str | Path | None = None,
    *,
    config: Mapping[str, Any] | Any | None = None,
    mode: SiglipMode = "flat",
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
    preprocess: Preprocess | None = None,
    seed: int = 0,
) -> TorchImageEncoder:
    r"""SigLIP / SigLIP2 vision tower with DyRef's three feature modes.

    With $H \in \mathbb{R}^{L\times D}$ the post-layernorm ``last_hidden_state``
    (576 × 768 for ``siglip2-base-patch16-384``):

    $$
    f_{\text{flat}} = \operatorname{vec}(H) \in \mathbb{R}^{LD},\qquad
    f_{\text{mean\_pool}} = \frac1L\sum_{l} H_l,\qquad
    f_{\text{pooler}} = \operatorname{MAP}(H)
    $$

    ``flat`` (DyRef's setting) compares the images token by token, so it is sensitive to
    spatial layout; ``mean_pool`` and ``pooler`` (the attention-pooling head) are not.

    ``google/siglip2-base-patch16-384`` is a fixed-resolution checkpoint whose config says
    ``model_type: "siglip"``, so it loads as ``SiglipVisionModel`` (as in the reference code);
    NaFlex ``siglip2`` checkpoints load as ``Siglip2VisionModel`` and are fed a fixed square
    patch grid (``sqrt(num_patches)`` per side) so every image has the same token count.

    Args:
        pretrained: local directory or hub id (default ``google/siglip2-base-patch16-384``).
        config: instead of ``pretrained``: a ``SiglipVisionConfig`` / ``Siglip2VisionConfig``
            (or ``SiglipConfig``) or a dict of its fields (``num_patches`` selects SigLIP2
            NaFlex); builds **random** weights.
        mode: ``"flat"``, ``"mean_pool"`` or ``"pooler"``.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.
        preprocess: override the preprocessing (default: the checkpoint's
            ``preprocessor_config.json`` if found, else squash-resize to the config's
            ``image_size``, mean = std = 0.5).
        seed: RNG seed for random weights.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].

    Raises:
        FileNotFoundError: a path that does not exist (the message says what to pass).
        OSError: a hub id that cannot be loaded (offline, no local cache).
        ValueError: unknown ``mode``, both or an unsupported config.
    """
    _check_choice("mode", mode, ("flat", "mean_pool", "pooler"))
    from transformers import (
        Siglip2VisionConfig,
        Siglip2VisionModel,
        SiglipConfig,
        SiglipVisionConfig,
        SiglipVisionModel,
    )

    source = _check_one_source(pretrained, config, SIGLIP_DEFAULT)
    processor_cfg: dict[str, Any] | None = None
    module: nn.Module
    if source is None:
        cfg: Any = config
        if isinstance(cfg, Mapping):
            cfg = Siglip2VisionConfig(**cfg) if "num_patches" in cfg else SiglipVisionConfig(**cfg)
        elif isinstance(cfg, SiglipConfig):
            cfg = cfg.vision_config
        if isinstance(cfg, Siglip2VisionConfig):
            vcfg: Any = cfg
            module = _random_init(lambda: Siglip2VisionModel(vcfg), seed)
        elif isinstance(cfg, SiglipVisionConfig):
            vcfg = cfg
            module = _random_init(lambda: SiglipVisionModel(vcfg), seed)
        else:
            raise ValueError(
                f"config must be a SigLIP/SigLIP2 vision config or a dict, got {type(cfg).__name__}"
            )
    else:
        src, is_local = resolve_weights(source, what="SigLIP", example=SIGLIP_DEFAULT)
        model_type = getattr(_load_config(src, is_local, "SigLIP"), "model_type", "")
        if model_type in ("siglip", "siglip_vision_model"):
            module = _from_pretrained(SiglipVisionModel, src, is_local, "SigLIP")
        elif model_type in ("siglip2", "siglip2_vision_model"):
            module = _from_pretrained(Siglip2VisionModel, src, is_local, "SigLIP2")
        else:
            raise ValueError(f"{src!r} is a {model_type!r} checkpoint, not SigLIP/SigLIP2")
        processor_cfg = _read_processor_json(src, is_local)
    vision_cfg: Any = module.config
    naflex = isinstance(vision_cfg, Siglip2VisionConfig)
    patch = int(vision_cfg.patch_size)
    if naflex:
        grid = math.isqrt(int(vision_cfg.num_patches))
        if grid * grid != int(vision_cfg.num_patches):
            raise ValueError(f"SigLIP2 num_patches must be a square number, got {vision_cfg.num_patches}")
        side = grid * patch
    else:
        side, grid = int(vision_cfg.image_size), 0
    if mode == "pooler" and not getattr(vision_cfg, "vision_use_head", True):
        raise ValueError(
            "mode='pooler' needs the attention-pooling head, but this config has vision_use_head=False"
        )
    default = Preprocess(size=side, resize="squash", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    if preprocess is None:
        preprocess = preprocess_from_processor_json(processor_cfg, default) if processor_cfg else default
        if naflex:  # NaFlex's processor keeps the aspect ratio; we need a fixed square grid
            preprocess = Preprocess(size=side, resize="squash", mean=preprocess.mean, std=preprocess.std)
    return TorchImageEncoder(
        f"siglip-{mode}",
        module,
        preprocess,
        _siglip_features(mode, naflex, patch, grid),
        batch_size=batch_size,
        device=device,
        dtype=dtype,
    )


# --------------------------------------------------------------------------- CLIP


def clip_encoder(
    pretrained: str | Path | None = None,
    *,
    config: Mapping[str, Any] | Any | None = None,
    projected: bool = True,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
    preprocess: Preprocess | None = None,
    seed: int = 0,
) -> TorchImageEncoder:
    r"""CLIP vision tower (transformers): the projected image embedding ``get_image_features``.

    $$
    f(x) = W_{\text{proj}}\,\operatorname{LN}(h_{\text{CLS}}(x))
    $$

    (``projected=False`` drops $W_{\text{proj}}$). DyRef's ``clip`` similarity default is
    ``openai/clip-vit-large-patch14``; OmniRef-Bench's CLIP-I metric uses
    ``openai/clip-vit-base-patch16``.

    Args:
        pretrained: local directory or hub id (default ``openai/clip-vit-large-patch14``); full
            ``CLIPModel`` checkpoints work (their text tower is ignored).
        config: instead of ``pretrained``: a ``CLIPVisionConfig`` / ``CLIPConfig`` or a dict of
            ``CLIPVisionConfig`` fields; builds **random** weights.
        projected: use the projected embedding (True) or the pooled CLS state.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.
        preprocess: override (default: the checkpoint's processor config, else shorter side
            → ``image_size`` bicubic, centre crop, CLIP mean/std).
        seed: RNG seed for random weights.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].

    Raises:
        FileNotFoundError: a path that does not exist.
        OSError: a hub id that cannot be loaded.
    """
    from transformers import CLIPConfig, CLIPVisionConfig, CLIPVisionModelWithProjection

    source = _check_one_source(pretrained, config, CLIP_DEFAULT)
    processor_cfg: dict[str, Any] | None = None
    module: nn.Module
    if source is None:
        cfg: Any = CLIPVisionConfig(**config) if isinstance(config, Mapping) else config
        if isinstance(cfg, CLIPConfig):
            vision: Any = cfg.vision_config
            vision.projection_dim = cfg.projection_dim
            cfg = vision
        if not isinstance(cfg, CLIPVisionConfig):
            raise ValueError(f"config must be a CLIP(Vision)Config or a dict, got {type(cfg).__name__}")
        vcfg: Any = cfg
        module = _random_init(lambda: CLIPVisionModelWithProjection(vcfg), seed)
    else:
        src, is_local = resolve_weights(source, what="CLIP", example=CLIP_DEFAULT)
        full: Any = _load_config(src, is_local, "CLIP")
        kwargs: dict[str, Any] = {}
        if isinstance(full, CLIPConfig):  # a CLIPModel checkpoint: the projection size lives at the top
            vision_cfg: Any = full.vision_config
            vision_cfg.projection_dim = full.projection_dim
            kwargs["config"] = vision_cfg
        module = _from_pretrained(CLIPVisionModelWithProjection, src, is_local, "CLIP", **kwargs)
        processor_cfg = _read_processor_json(src, is_local)
    side = int(getattr(module.config, "image_size", 224))
    default = Preprocess(size=side, resize="shorter", crop=side, mean=CLIP_MEAN, std=CLIP_STD)
    if preprocess is None:
        preprocess = preprocess_from_processor_json(processor_cfg, default) if processor_cfg else default

    def features(m: Any, pixels: Tensor) -> Tensor:
        out = m(pixel_values=pixels)
        emb: Tensor = out.image_embeds if projected else out.last_hidden_state[:, 0]
        if not projected:  # the pooled CLS state goes through post_layernorm in CLIP
            emb = m.vision_model.post_layernorm(emb)
        return emb

    return TorchImageEncoder(
        "clip", module, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
    )


# --------------------------------------------------------------------------- DINOv2


def dinov2_encoder(
    pretrained: str | Path | None = None,
    *,
    config: Mapping[str, Any] | Any | None = None,
    pooling: Literal["cls", "mean"] = "cls",
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
    preprocess: Preprocess | None = None,
    seed: int = 0,
) -> TorchImageEncoder:
    r"""DINOv2 (transformers ``Dinov2Model``) features from the final layer-normed tokens $H$.

    $$
    f_{\text{cls}} = H_0,\qquad f_{\text{mean}} = \frac{1}{L+1}\sum_{l=0}^{L} H_l
    $$

    ``cls`` is DyRef's ``dinov2`` similarity; ``mean`` (over all tokens, CLS included) is
    OmniRef-Bench's DINO subject metric.

    Args:
        pretrained: local directory or hub id (default ``facebook/dinov2-base``).
        config: instead of ``pretrained``: a ``Dinov2Config`` or a dict of its fields;
            builds **random** weights.
        pooling: ``"cls"`` or ``"mean"``.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.
        preprocess: override (default: the checkpoint's processor config, else shorter side →
            256/224 · ``image_size`` bicubic, centre crop ``image_size``, ImageNet mean/std).
        seed: RNG seed for random weights.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].

    Raises:
        FileNotFoundError: a path that does not exist.
        OSError: a hub id that cannot be loaded.
    """
    _check_choice("pooling", pooling, ("cls", "mean"))
    from transformers import Dinov2Config, Dinov2Model

    source = _check_one_source(pretrained, config, DINOV2_DEFAULT)
    processor_cfg: dict[str, Any] | None = None
    module: nn.Module
    if source is None:
        cfg: Any = Dinov2Config(**config) if isinstance(config, Mapping) else config
        if not isinstance(cfg, Dinov2Config):
            raise ValueError(f"config must be a Dinov2Config or a dict, got {type(cfg).__name__}")
        module = _random_init(lambda: Dinov2Model(cfg), seed)
        image_size: Any = cfg.image_size
        side = int(image_size)
    else:
        src, is_local = resolve_weights(source, what="DINOv2", example=DINOV2_DEFAULT)
        module = _from_pretrained(Dinov2Model, src, is_local, "DINOv2")
        processor_cfg = _read_processor_json(src, is_local)
        side = 224  # DINOv2 checkpoints say image_size=518 (pretraining) but are used at 224
    default = Preprocess(
        size=round(side * 256 / 224), resize="shorter", crop=side, mean=IMAGENET_MEAN, std=IMAGENET_STD
    )
    if preprocess is None:
        preprocess = preprocess_from_processor_json(processor_cfg, default) if processor_cfg else default

    def features(m: Any, pixels: Tensor) -> Tensor:
        hidden: Tensor = m(pixel_values=pixels).last_hidden_state
        return hidden[:, 0] if pooling == "cls" else hidden.mean(dim=1)

    return TorchImageEncoder(
        f"dinov2-{pooling}", module, preprocess, features, batch_size=batch_size, device=device, dtype=dtype
    )


# --------------------------------------------------------------------------- open_clip


def open_clip_encoder(
    model_name: str = "ViT-L-14",
    pretrained: str | None = None,
    *,
    model: nn.Module | None = None,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
    preprocess: Preprocess | None = None,
) -> TorchImageEncoder:
    """Any open_clip model's ``encode_image`` (projected image embedding).

    Args:
        model_name: open_clip architecture name (``open_clip.list_models()``).
        pretrained: a local checkpoint file, or an open_clip tag such as ``"openai"`` (which
            downloads unless cached).
        model: an already built open_clip model (e.g. a tiny random one); then ``model_name``
            and ``pretrained`` are ignored.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.
        preprocess: override (default: the model's own preprocessing config).

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder].

    Raises:
        ValueError: neither ``pretrained`` nor ``model`` given.
        FileNotFoundError: a checkpoint path that does not exist.
    """
    open_clip: Any = importlib.import_module("open_clip")

    if model is None:
        if pretrained is None:
            raise ValueError(
                "open_clip_encoder needs weights: pass pretrained= a local checkpoint file (.pt, "
                ".bin, .safetensors) or an open_clip tag such as 'openai', or model= a built model"
            )
        is_file = Path(pretrained).expanduser().exists()
        if not is_file and ("/" in pretrained or pretrained.endswith((".pt", ".bin", ".safetensors"))):
            raise FileNotFoundError(
                f"open_clip checkpoint not found at {pretrained!r}; pass an existing file or an "
                f"open_clip tag (open_clip.list_pretrained_tags_by_model({model_name!r}))"
            )
        try:
            model = open_clip.create_model(model_name, pretrained=pretrained)
        except RuntimeError as err:
            raise _hub_error(f"open_clip {model_name}", pretrained, err) from err
    cfg: dict[str, Any] = dict(open_clip.get_model_preprocess_cfg(model))
    size = cfg.get("size", 224)
    side = int(size[0] if isinstance(size, Sequence) else size)
    if preprocess is None:
        preprocess = Preprocess(
            size=side,
            resize="squash" if cfg.get("resize_mode") == "squash" else "shorter",
            crop=side,
            mean=tuple(cfg.get("mean", CLIP_MEAN)),
            std=tuple(cfg.get("std", CLIP_STD)),
            interpolation="bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic",
        )

    def features(m: Any, pixels: Tensor) -> Tensor:
        emb: Tensor = m.encode_image(pixels)
        return emb

    return TorchImageEncoder(
        f"open_clip-{model_name}",
        model,
        preprocess,
        features,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
    )
