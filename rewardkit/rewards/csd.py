r"""CSD style descriptor: a CLIP ViT-L/14 visual tower with a learned style head.

CSD (Somepalli et al., *Measuring Style Similarity in Diffusion Models*, 2024) keeps OpenAI
CLIP's ViT-L/14 image tower without its output projection and adds two linear heads
initialised from that projection:

$$
h(x) = \operatorname{LN}_{\text{post}}\big(\operatorname{ViT}(x)_{\text{CLS}}\big)
      \in \mathbb{R}^{1024},\qquad
f_{\text{style}}(x) = \frac{W_{\text{style}}^{\top} h(x)}{\lVert W_{\text{style}}^{\top} h(x)\rVert},\quad
W_{\text{style}} \in \mathbb{R}^{1024\times 768}
$$

(and likewise $f_{\text{content}}$). The style score of a generated image $x$ against a style
reference $y$ is $\langle f_{\text{style}}(x), f_{\text{style}}(y)\rangle \in [-1, 1]$, with
no sigmoid. Preprocessing: resize the shorter side to 224 (bicubic), centre-crop 224,
normalise with CLIP's mean/std.

The tower here is rewardkit's own implementation whose parameter names match OpenAI CLIP's
``VisionTransformer`` (``conv1``, ``class_embedding``, ``positional_embedding``, ``ln_pre``,
``transformer.resblocks.*``, ``ln_post``), so the public CSD checkpoint
(HF ``tomg-group-umd/CSD-ViT-L``, ``pytorch_model.bin``) loads without the ``clip`` package.
That file is a pickle: it is read only with ``torch.load(weights_only=True)``, and
[`convert_csd_checkpoint`][rewardkit.convert_csd_checkpoint] rewrites it once as safetensors.
"""

import argparse
import contextlib
import pickle
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rewardkit.rewards._images import Preprocess
from rewardkit.rewards.encoders import (
    CLIP_MEAN,
    CLIP_STD,
    DeviceLike,
    DtypeLike,
    TorchImageEncoder,
    _random_init,
)

__all__ = [
    "CSDConfig",
    "CSDModel",
    "convert_csd_checkpoint",
    "csd_encoder",
    "csd_preprocess",
    "load_csd_state_dict",
]

CSD_HUB_ID = "tomg-group-umd/CSD-ViT-L"


@dataclass(frozen=True)
class CSDConfig:
    """Architecture of the CSD model (defaults: CSD-ViT-L = CLIP ViT-L/14 at 224 px).

    Attributes:
        image_size: input side in pixels.
        patch_size: ViT patch size.
        width: transformer width (the feature $h$ dimension).
        layers: transformer blocks.
        heads: attention heads.
        style_dim: output dimension of the style head.
        content_dim: output dimension of the content head.
    """

    image_size: int = 224
    patch_size: int = 14
    width: int = 1024
    layers: int = 24
    heads: int = 16
    style_dim: int = 768
    content_dim: int = 768

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"CSDConfig.{key} must be a positive int, got {value!r}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size {self.image_size} must be a multiple of patch_size {self.patch_size}"
            )
        if self.width % self.heads:
            raise ValueError(f"width {self.width} must be divisible by heads {self.heads}")

    @classmethod
    def tiny(cls) -> "CSDConfig":
        """A 2-layer, 32-wide, 32-px config for tests and benchmarks (random weights)."""
        return cls(image_size=32, patch_size=8, width=32, layers=2, heads=2, style_dim=16, content_dim=16)


class _QuickGELU(nn.Module):
    r"""OpenAI CLIP's activation $x\,\sigma(1.702x)$."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class _Block(nn.Module):
    """Pre-LN transformer block with OpenAI CLIP's parameter names."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, 4 * width)),
                    ("gelu", _QuickGELU()),
                    ("c_proj", nn.Linear(4 * width, width)),
                ]
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        out: Tensor = x + self.mlp(self.ln_2(x))
        return out


class _Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.Sequential(*[_Block(width, heads) for _ in range(layers)])

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.resblocks(x)
        return out


class _VisionTower(nn.Module):
    """CLIP image tower without the output projection: pixels → LN(CLS) of width ``width``."""

    def __init__(self, config: CSDConfig) -> None:
        super().__init__()
        width, grid = config.width, config.image_size // config.patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=config.patch_size, stride=config.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = _Transformer(width, config.layers, config.heads)
        self.ln_post = nn.LayerNorm(width)

    def forward(self, pixels: Tensor) -> Tensor:
        x = self.conv1(pixels).flatten(2).transpose(1, 2)  # (B, L, W)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        out: Tensor = self.ln_post(x[:, 0])
        return out


class CSDModel(nn.Module):
    """CSD: CLIP ViT tower + style and content heads; ``forward`` → (feature, content, style).

    Parameter names follow the public checkpoint: ``backbone.*``, ``last_layer_style``
    (`(width, style_dim)`), ``last_layer_content`` (`(width, content_dim)`).

    Args:
        config: the architecture.
    """

    def __init__(self, config: CSDConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else CSDConfig()
        scale = self.config.width**-0.5
        self.backbone = _VisionTower(self.config)
        self.last_layer_style = nn.Parameter(scale * torch.randn(self.config.width, self.config.style_dim))
        self.last_layer_content = nn.Parameter(
            scale * torch.randn(self.config.width, self.config.content_dim)
        )

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Return the raw feature $h$ and the L2-normalised content and style embeddings."""
        feature = self.backbone(pixels)
        content = F.normalize(feature @ self.last_layer_content.to(feature.dtype), dim=1)
        style = F.normalize(feature @ self.last_layer_style.to(feature.dtype), dim=1)
        return feature, content, style


def csd_preprocess(config: CSDConfig | None = None) -> Preprocess:
    """CSD's ``transforms_branch0``: shorter side → 224 bicubic, centre crop 224, CLIP mean/std."""
    side = (config or CSDConfig()).image_size
    return Preprocess(
        size=side, resize="shorter", crop=side, mean=CLIP_MEAN, std=CLIP_STD, interpolation="bicubic"
    )


# --------------------------------------------------------------------------- checkpoints


@contextlib.contextmanager
def _allow(globals_: Sequence[Any]) -> Iterator[None]:
    ctx = getattr(torch.serialization, "safe_globals", None)
    if ctx is not None:
        with ctx(list(globals_)):
            yield
    else:  # torch < 2.5: only the global allowlist exists
        torch.serialization.add_safe_globals(list(globals_))
        yield


def _missing_weights_error(path: Path) -> FileNotFoundError:
    return FileNotFoundError(
        f"CSD weights not found at {str(path)!r}. Pass weights= the path of CSD-ViT-L's "
        f"pytorch_model.bin (HF {CSD_HUB_ID}), the .safetensors made from it by "
        "rewardkit.convert_csd_checkpoint, or the hub id itself; for random weights (tests) pass "
        "weights=None with config=CSDConfig(...)"
    )


def load_csd_state_dict(
    path: str | Path, *, safe_globals: Sequence[Any] = (argparse.Namespace,)
) -> dict[str, Tensor]:
    """Read CSD weights from a pickled ``.bin``/``.pth`` (safely) or a ``.safetensors`` file.

    Pickles are opened only with ``torch.load(weights_only=True)``, which refuses arbitrary
    Python objects; the training ``args`` (an ``argparse.Namespace``) stored in the public
    checkpoint is allow-listed by default. The state dict is taken from ``model_state_dict``
    (or ``state_dict``) when present, DDP's ``module.`` prefix is stripped and non-tensor
    entries are dropped.

    Args:
        path: checkpoint file.
        safe_globals: extra classes the unpickler may build (extend only for files you trust).

    Returns:
        ``{name: tensor}`` on CPU.

    Raises:
        FileNotFoundError: the file does not exist (the message says what to pass).
        ValueError: the pickle holds objects outside the allow-list, or no tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise _missing_weights_error(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return dict(load_file(str(path)))
    try:
        with _allow(safe_globals):
            obj: Any = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refused to unpickle {str(path)!r} with weights_only=True: {err}. rewardkit never "
            "loads pickles unsafely; if you trust the file, pass safe_globals=[...] with the classes "
            "named above, or convert it elsewhere to safetensors"
        ) from err
    if isinstance(obj, dict):
        for key in ("model_state_dict", "state_dict"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{str(path)!r} holds a {type(obj).__name__}, expected a state dict")
    state = {
        (k[len("module.") :] if k.startswith("module.") else k): v
        for k, v in obj.items()
        if isinstance(k, str) and isinstance(v, Tensor)
    }
    if not state:
        raise ValueError(f"{str(path)!r} contains no tensors under model_state_dict / state_dict")
    return state


def convert_csd_checkpoint(src: str | Path, dst: str | Path | None = None) -> Path:
    """One-time conversion of the pickled CSD checkpoint to a safetensors file.

    Args:
        src: the ``pytorch_model.bin`` (read with ``weights_only=True``).
        dst: output path (default: ``src`` with the suffix ``.safetensors``).

    Returns:
        The path written. Load it later with ``csd_encoder(weights=dst)``; no pickle involved.
    """
    from safetensors.torch import save_file

    state = load_csd_state_dict(src)
    out = Path(dst) if dst is not None else Path(src).with_suffix(".safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous().clone() for k, v in state.items()}, str(out), metadata={"source": "CSD"})
    return out


def _load_into(model: CSDModel, state: dict[str, Tensor], origin: str) -> None:
    expected = model.state_dict()
    needed = [k for k in expected if not k.startswith("last_layer_content")]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(
            f"{origin} lacks {len(missing)} CSD weight(s) needed for the style score, e.g. {missing[:3]}; "
            "is it a CSD checkpoint (keys backbone.*, last_layer_style)? A different size needs a "
            "matching CSDConfig"
        )
    bad = [
        (k, tuple(state[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if bad:
        raise ValueError(
            f"{origin}: shape mismatch (key, file, model) {bad[:3]}; pass the matching CSDConfig"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def csd_encoder(
    weights: str | Path | None = None,
    *,
    config: CSDConfig | None = None,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
    seed: int = 0,
) -> TorchImageEncoder:
    """CSD style encoder: L2-normalised style embeddings (`(N, style_dim)`).

    Args:
        weights: the CSD checkpoint: a ``.bin``/``.pth`` pickle, a ``.safetensors`` file, or
            the hub id ``tomg-group-umd/CSD-ViT-L`` (downloads ``pytorch_model.bin`` if the hub is
            reachable). ``None`` builds **random** weights and then requires ``config``.
        config: architecture (default CSD-ViT-L).
        batch_size: images per forward pass (the reference uses 16).
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32 (the DyRef reward runs in bfloat16).
        seed: RNG seed for random weights.

    Returns:
        A [`TorchImageEncoder`][rewardkit.TorchImageEncoder] named ``"csd"``.

    Raises:
        ValueError: ``weights`` and ``config`` both ``None``; wrong or partial checkpoint.
        FileNotFoundError: a weights path that does not exist.
    """
    if weights is None and config is None:
        raise ValueError(
            "csd_encoder needs weights: pass weights= the path of CSD-ViT-L's pytorch_model.bin "
            f"(HF {CSD_HUB_ID}) or its converted .safetensors; for random weights pass config=CSDConfig(...)"
        )
    cfg = config if config is not None else CSDConfig()
    model = _random_init(lambda: CSDModel(cfg), seed)
    assert isinstance(model, CSDModel)
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.exists() and str(weights) == CSD_HUB_ID:
            from huggingface_hub import hf_hub_download

            try:
                path = Path(hf_hub_download(CSD_HUB_ID, "pytorch_model.bin"))
            except Exception as err:  # offline, gated, ...: say what to pass instead
                raise OSError(
                    f"could not fetch {CSD_HUB_ID}/pytorch_model.bin ({type(err).__name__}); download it "
                    "and pass weights= the local file path"
                ) from err
        _load_into(model, load_csd_state_dict(path), str(path))

    def features(m: Any, pixels: Tensor) -> Tensor:
        style: Tensor = m(pixels)[2]
        return style

    return TorchImageEncoder(
        "csd", model, csd_preprocess(cfg), features, batch_size=batch_size, device=device, dtype=dtype
    )
