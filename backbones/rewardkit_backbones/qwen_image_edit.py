r"""Qwen-Image-Edit-2511 adapter (diffusers ``QwenImageEditPlusPipeline`` components).

Conditioning (docs: Backbones), for a prompt and references $r_1 \dots r_n$:

* **References → VAE tokens.** Each $r_j$ is resized to area ``vae_reference_area`` keeping its
  aspect ratio (sides rounded to multiples of 32), VAE-encoded (posterior mode), normalised
  $(z - \mu_{lat})/\sigma_{lat}$ and 2×2-packed. The transformer sees
  $[x_{target}; r_1; \dots; r_n]$ along the sequence axis; its output is sliced back to the
  $L$ target tokens.
* **References → text encoder.** Each $r_j$ is also resized to area ``text_reference_area``
  and put in the Qwen2.5-VL prompt as ``"Picture j: <|vision_start|><|image_pad|><|vision_end|>"``
  before the instruction, inside the edit system template; the last hidden layer is used and
  the first 64 template tokens are dropped (the pipeline's ``encode_prompt``).
* **Positions.** ``img_shapes = [(1, H/16, W/16), (1, h_1/16, w_1/16), …]``; 3-axis RoPE with
  the frame coordinate = image index (target 0, reference j → j) and centred rows/columns
  (position scheme ``"index"``, the model's own). ``"offset"`` and ``"diagonal"`` (seed 003)
  give every reference frame 1 and move its rows/columns instead (see :func:`image_positions`).
* **``zero_cond_t``.** The checkpoint's transformer embeds the timestep as ``[σ, 0]`` and
  modulates reference tokens with the $t = 0$ embedding (handled inside the diffusers model).
* **Guidance.** True CFG with a negative prompt:
  $v = \tilde v\,\lVert v_c\rVert / \lVert\tilde v\rVert$ per token, with
  $\tilde v = v_\varnothing + w\,(v_c - v_\varnothing)$.
* **Schedule.** Exponential time shift with $\mu = mL + b$ from the checkpoint's scheduler
  config (2511: the line through (256, 0.5) and (8192, 0.9)) and ``shift_terminal`` 0.02.
* **Target size.** Explicit, or with ``auto_resize`` the area ``resolution²`` with the aspect
  ratio of the *last* reference, floored to multiples of 16; else ``resolution × resolution``.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rewardkit.backbone import BackbonePlugin, Condition
from rewardkit.core.schedules import exponential_shift_sigmas, qwen_image_mu
from rewardkit_backbones import _common
from rewardkit_backbones._common import POSITION_SCHEMES, PositionScheme

__all__ = [
    "NAME",
    "PLUGIN",
    "QwenImageEdit",
    "QwenImageEditOptions",
    "image_positions",
    "load",
    "make_tiny_checkpoint",
    "rope_frequencies",
]

NAME = "qwen-image-edit-2511"


@dataclass(frozen=True)
class QwenImageEditOptions:
    """Options of the Qwen-Image-Edit-2511 adapter (``load_backbone(..., **options)``).

    Attributes:
        device: where to run (None: CUDA if available, else CPU).
        dtype: dtype of the loaded weights: ``"float32"``, ``"bfloat16"`` (recommended for
            real weights on GPU) or ``"float16"``. LoRA weights are always float32.
        autocast_dtype: mixed-precision dtype of the transformer forward (rollout and training
            alike, so the old and new log-probs match), or None for none.
        resolution: target side when the size is not given: area ``resolution²``.
        auto_resize: take the target aspect ratio from the last reference (else square).
        vae_reference_area: pixel area each reference is resized to before the VAE (the
            pipeline's ``VAE_IMAGE_SIZE``, 1024²; DyRef trains with 512²).
        text_reference_area: pixel area of the references shown to the vision-language text
            encoder (the pipeline's ``CONDITION_IMAGE_SIZE``, 384²).
        min_reference_side: smallest accepted reference side in pixels.
        max_sequence_length: longest accepted prompt (text tokens after the template drop).
        position_scheme: ``"index"`` (the model's own), ``"offset"`` or ``"diagonal"``.
        gradient_checkpointing: checkpoint transformer blocks in the training forward.
        adapter: directory of a LoRA adapter to load at start (e.g. the SFT adapter).
    """

    device: str | None = None
    dtype: str = "float32"
    autocast_dtype: str | None = "bfloat16"
    resolution: int = 512
    auto_resize: bool = True
    vae_reference_area: int = 1024 * 1024
    text_reference_area: int = 384 * 384
    min_reference_side: int = 32
    max_sequence_length: int = 1024
    position_scheme: PositionScheme = "index"
    gradient_checkpointing: bool = False
    adapter: str | None = None

    def __post_init__(self) -> None:
        _common.resolve_dtype(self.dtype, option="dtype")
        _common.resolve_dtype(self.autocast_dtype, option="autocast_dtype")
        for name in ("resolution", "vae_reference_area", "text_reference_area", "min_reference_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if self.max_sequence_length > 1024 or self.max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be in 1 … 1024, got {self.max_sequence_length}")
        if self.position_scheme not in POSITION_SCHEMES:
            raise ValueError(
                f"position_scheme must be one of {POSITION_SCHEMES}, got {self.position_scheme!r}"
            )


# ----------------------------------------------------------------------------------------------
# positions (pure functions)
# ----------------------------------------------------------------------------------------------


def _centred(n: int) -> Tensor:
    """Qwen's centred coordinates ``-(n - n//2) … n//2 - 1`` (``scale_rope=True``)."""
    return torch.arange(-(n - n // 2), n // 2)


def image_positions(
    shapes: Sequence[tuple[int, int, int]], scheme: PositionScheme = "index"
) -> tuple[Tensor, int]:
    r"""Per-token (frame, row, col) RoPE positions of the target and reference grids.

    ``shapes`` is ``img_shapes`` of one sample: ``[(1, H, W)_target, (1, h_1, w_1), …]`` in latent
    patches. The target always takes frame 0 and centred rows/cols $-(H - \lfloor H/2\rfloor)
    \dots \lfloor H/2\rfloor - 1$. Reference $j$ (1-based):

    * ``"index"``: frame $j$, centred rows/cols (the Qwen-Image-Edit layout);
    * ``"offset"``: frame 1; the references are placed on one canvas (each to the right of or
      below the previous ones, see ``place_on_canvas``) which is centred like the target;
    * ``"diagonal"``: frame 1; reference $j$'s first row is
      $\lfloor H/2\rfloor + \sum_{k<j} h_k$ and its first column
      $\lfloor W/2\rfloor + \sum_{k<j} w_k$, so the grids sit on a diagonal past the target.

    Text tokens start at position $M$ on all axes: $M = \max_j \max(\lfloor h_j/2\rfloor,
    \lfloor w_j/2\rfloor)$ for ``"index"`` (the model's rule), and one past the largest image
    row/column otherwise.

    Args:
        shapes: ``(frames, rows, cols)`` per image, target first.
        scheme: position scheme.

    Returns:
        `(L_img, 3)` int64 positions in sequence order, and the first text position M.

    Example:
        >>> pos, m = image_positions([(1, 2, 2), (1, 2, 2)])
        >>> pos.tolist(), m
        ([[0, -1, -1], [0, -1, 0], [0, 0, -1], [0, 0, 0], [1, -1, -1], [1, -1, 0], [1, 0, -1], [1, 0, 0]], 1)
    """
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"scheme must be one of {POSITION_SCHEMES}, got {scheme!r}")
    blocks = []
    text_start = 0
    target_h, target_w = shapes[0][1], shapes[0][2]
    ref_sizes = [(h, w) for _, h, w in shapes[1:]]
    if scheme == "offset":
        corners = _common.place_on_canvas(ref_sizes)
        canvas_h = max([r + h for (r, _), (h, _) in zip(corners, ref_sizes, strict=True)] or [0])
        canvas_w = max([c + w for (_, c), (_, w) in zip(corners, ref_sizes, strict=True)] or [0])
        # Centre the reference canvas the way a single grid is centred.
        starts = [(r - (canvas_h - canvas_h // 2), c - (canvas_w - canvas_w // 2)) for r, c in corners]
    elif scheme == "diagonal":
        starts, row, col = [], target_h // 2, target_w // 2
        for h, w in ref_sizes:
            starts.append((row, col))
            row, col = row + h, col + w
    for idx, (frames, h, w) in enumerate(shapes):
        if scheme == "index" or idx == 0:
            frame0, rows, cols = idx, _centred(h), _centred(w)
        else:
            r0, c0 = starts[idx - 1]
            frame0, rows, cols = 1, torch.arange(r0, r0 + h), torch.arange(c0, c0 + w)
        f = torch.arange(frame0, frame0 + frames)
        grid = torch.stack(torch.meshgrid(f, rows, cols, indexing="ij"), dim=-1).reshape(-1, 3)
        blocks.append(grid)
        text_start = max(text_start, h // 2, w // 2)
    positions = torch.cat(blocks)
    if scheme != "index":
        text_start = max(text_start, int(positions[:, 1:].max()) + 1)
    return positions, text_start


def rope_frequencies(positions: Tensor, axes_dim: Sequence[int], theta: float = 10000.0) -> Tensor:
    r"""Complex RoPE factors $e^{i\,p_a\,\theta^{-2k/d_a}}$ per token, axes concatenated.

    Matches diffusers' ``QwenEmbedRope.rope_params`` for every integer position (negative ones
    included), so ``"index"`` positions reproduce the model's own table.

    Args:
        positions: `(T, A)` int64 positions on A axes.
        axes_dim: the A rotary dims $d_a$ (even), e.g. ``(16, 56, 56)``.
        theta: RoPE base.

    Returns:
        `(T, Σ d_a / 2)` complex64 factors.
    """
    parts = []
    for a, dim in enumerate(axes_dim):
        inv = 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float32).div(dim))
        angles = torch.outer(positions[:, a].to(positions.device), inv.to(positions.device))
        parts.append(torch.polar(torch.ones_like(angles), angles))
    return torch.cat(parts, dim=1)


class _SchemeRope(nn.Module):
    """Drop-in for ``QwenEmbedRope`` that lays references out by a seed-003 position scheme."""

    def __init__(self, axes_dim: Sequence[int], theta: float, scheme: PositionScheme) -> None:
        super().__init__()
        self.axes_dim = list(axes_dim)
        self.theta = theta
        self.scheme: PositionScheme = scheme

    def forward(
        self, video_fhw: Any, device: torch.device | None = None, max_txt_seq_len: int | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if max_txt_seq_len is None:
            raise ValueError("max_txt_seq_len must be provided")
        shapes = video_fhw[0] if isinstance(video_fhw[0], list) else video_fhw
        positions, text_start = image_positions([tuple(s) for s in shapes], self.scheme)
        text = torch.arange(text_start, text_start + int(max_txt_seq_len)).unsqueeze(1).expand(-1, 3)
        image_freqs = rope_frequencies(positions, self.axes_dim, self.theta)
        text_freqs = rope_frequencies(text, self.axes_dim, self.theta)
        return image_freqs.to(device), text_freqs.to(device)


# ----------------------------------------------------------------------------------------------
# the adapter
# ----------------------------------------------------------------------------------------------


class QwenImageEdit:
    """Qwen-Image-Edit-2511 as a :class:`rewardkit.backbone.Backbone` (see the module docstring).

    Build it with ``rewardkit.load_backbone("qwen-image-edit-2511", path, **options)``.
    """

    name = NAME
    # DyRef's LoRA targets: attention projections, the MLP outputs and the modulation layers of
    # both streams. The one list for this backbone: add_adapter() and both recipes use it.
    lora_target_modules: tuple[str, ...] = (
        "to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out",
        "img_mlp.net.2", "img_mod.1", "txt_mlp.net.2", "txt_mod.1",
    )  # fmt: skip

    def __init__(self, pipe: Any, options: QwenImageEditOptions) -> None:
        self.pipe = pipe
        self.options = options
        self.transformer: Any = pipe.transformer
        self.vae: Any = pipe.vae
        self._device = _common.resolve_device(options.device)
        self._autocast = _common.resolve_dtype(options.autocast_dtype, option="autocast_dtype")
        pipe.to(self._device)
        for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
            module.eval()
            module.requires_grad_(False)
        self._check_scheduler(dict(pipe.scheduler.config))
        self.vae_scale_factor: int = pipe.vae_scale_factor
        self.multiple_of = self.vae_scale_factor * 2
        if options.position_scheme != "index":
            rope = self.transformer.pos_embed
            if type(rope).__name__ != "QwenEmbedRope":
                raise ValueError(
                    f"position_scheme={options.position_scheme!r} needs the standard QwenEmbedRope"
                )
            self.transformer.pos_embed = _SchemeRope(rope.axes_dim, rope.theta, options.position_scheme)
        self.set_gradient_checkpointing(options.gradient_checkpointing)
        if options.adapter is not None:
            self.load_adapter(options.adapter)

    @staticmethod
    def _check_scheduler(config: dict[str, Any]) -> None:
        if (
            not config.get("use_dynamic_shifting")
            or config.get("time_shift_type", "exponential") != "exponential"
        ):
            raise ValueError(
                "the checkpoint's scheduler must use dynamic exponential shifting "
                "(use_dynamic_shifting=true, "
                f"time_shift_type='exponential') as Qwen-Image does; got {config}"
            )

    # -- Backbone protocol ------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        """Device of the transformer."""
        return self._device

    def _target_size(self, height: int | None, width: int | None, last_ref: Any) -> tuple[int, int]:
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_dimensions

        explicit = _common.check_target_size(height, width, multiple_of=self.multiple_of)
        if explicit is not None:
            return explicit
        res = self.options.resolution
        if self.options.auto_resize:
            w, h = calculate_dimensions(res * res, last_ref.size[0] / last_ref.size[1])
        else:
            w, h = res, res
        m = self.multiple_of
        if h // m < 1 or w // m < 1:
            raise ValueError(
                f"the target size from resolution={res} and the last reference's aspect ratio "
                f"({last_ref.size[0]}×{last_ref.size[1]}) is {h}×{w} px, below {m}×{m}; pass height/width"
            )
        return (h // m) * m, (w // m) * m

    def _ref_size(self, area: int, image: Any, index: int) -> tuple[int, int]:
        from diffusers.pipelines.qwenimage.pipeline_qwenimage_edit_plus import calculate_dimensions

        w, h = calculate_dimensions(area, image.size[0] / image.size[1])
        if w < 32 or h < 32:
            raise ValueError(
                f"reference {index} ({image.size[0]}×{image.size[1]}) resized to area {area} gives "
                f"{w}×{h} px; "
                "each side must be at least 32 px (use a less elongated image or a larger area option)"
            )
        return int(h), int(w)

    @torch.no_grad()
    def encode_condition(
        self,
        prompts: Sequence[str],
        references: Sequence[Sequence[Any]],
        *,
        height: int | None = None,
        width: int | None = None,
        negative_prompt: str | None = None,
    ) -> list[Condition]:
        """Encode (prompt, ordered references) pairs (see ``Backbone.encode_condition``)."""
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings (one per sample), got a str")
        if len(prompts) != len(references):
            raise ValueError(f"got {len(prompts)} prompts but {len(references)} reference lists")
        return [
            self._encode_one(
                p, r, height=height, width=width, negative_prompt=negative_prompt, where=f" of sample {b}"
            )
            for b, (p, r) in enumerate(zip(prompts, references, strict=True))
        ]

    def _encode_one(
        self,
        prompt: str,
        references: Sequence[Any],
        *,
        height: int | None,
        width: int | None,
        negative_prompt: str | None,
        where: str,
    ) -> Condition:
        if not isinstance(prompt, str):
            raise TypeError(f"prompt{where} must be a str, got {type(prompt).__name__}")
        opts = self.options
        refs = _common.check_references(references, min_side=opts.min_reference_side, where=where)
        target_h, target_w = self._target_size(height, width, refs[-1])
        processor = self.pipe.image_processor
        text_images, latents, shapes = [], [], []
        for j, img in enumerate(refs):
            th, tw = self._ref_size(opts.text_reference_area, img, j)
            text_images.append(processor.resize(img, th, tw))
            vh, vw = self._ref_size(opts.vae_reference_area, img, j)
            pixels = processor.preprocess(img, vh, vw).unsqueeze(2)  # (1, 3, 1, vh, vw) in [-1, 1]
            latents.append(self._encode_pixels(pixels))
            shapes.append((vh, vw))
        embeds, mask = self._encode_text(prompt, text_images, where)
        neg_embeds = neg_mask = None
        if negative_prompt is not None:
            neg_embeds, neg_mask = self._encode_text(negative_prompt, text_images, where)
        patch = self.multiple_of
        return Condition(
            prompt=prompt,
            height=target_h,
            width=target_w,
            image_seq_len=(target_h // patch) * (target_w // patch),
            reference_sizes=tuple(shapes),
            prompt_embeds=embeds,
            prompt_mask=mask,
            reference_latents=torch.cat(latents, dim=1),
            negative_prompt_embeds=neg_embeds,
            negative_prompt_mask=neg_mask,
        )

    def _encode_text(self, prompt: str, images: list[Any], where: str) -> tuple[Tensor, Tensor | None]:
        embeds, mask = self.pipe.encode_prompt(prompt=[prompt], image=images, device=self._device)
        if embeds.shape[1] > self.options.max_sequence_length:
            raise ValueError(
                f"prompt{where} encodes to {embeds.shape[1]} text tokens > max_sequence_length="
                f"{self.options.max_sequence_length}; shorten it"
            )
        return embeds, mask

    def _encode_pixels(self, pixels: Tensor) -> Tensor:
        """`(B, 3, 1, H, W)` pixels in [-1, 1] → `(B, L, D)` normalised packed latents."""
        z = self.pipe._encode_vae_image(pixels.to(self._device, self.vae.dtype), generator=None)
        b, c, _, h, w = z.shape
        return self.pipe._pack_latents(z, b, c, h, w).float()

    def sigmas(self, num_steps: int, height: int, width: int) -> Tensor:
        """Schedule from the checkpoint's scheduler config, μ from the target token count."""
        config = self.pipe.scheduler.config
        seq_len = (height // self.multiple_of) * (width // self.multiple_of)
        mu = qwen_image_mu(
            seq_len,
            base_seq_len=int(config.get("base_image_seq_len", 256)),
            max_seq_len=int(config.get("max_image_seq_len", 4096)),
            base_shift=float(config.get("base_shift", 0.5)),
            max_shift=float(config.get("max_shift", 1.15)),
        )
        terminal = config.get("shift_terminal")
        sigmas = exponential_shift_sigmas(num_steps, mu, shift_terminal=float(terminal) if terminal else None)
        return sigmas

    def initial_latents(
        self, batch_size: int, height: int, width: int, *, generator: torch.Generator | None
    ) -> Tensor:
        """Noise drawn as ``QwenImageEditPlusPipeline.prepare_latents`` draws it, packed, float32."""
        channels = self.transformer.config.in_channels // 4
        latents, _ = self.pipe.prepare_latents(
            None, batch_size, channels, height, width, torch.float32, self._device, generator
        )
        return latents

    def _forward(
        self, hidden: Tensor, timestep: Tensor, embeds: Tensor, mask: Tensor | None, shapes: list[Any]
    ) -> Tensor:
        b = hidden.shape[0]
        return self.transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=embeds.expand(b, -1, -1),
            encoder_hidden_states_mask=None if mask is None else mask.expand(b, -1),
            img_shapes=shapes,
            return_dict=False,
        )[0]

    def velocity(
        self,
        latents: Tensor,
        sigma: float | Tensor,
        condition: Condition,
        *,
        guidance_scale: float = 1.0,
        adapter: bool = True,
    ) -> Tensor:
        """Transformer velocity on ``[x; references]`` sliced to the target; true CFG when w > 1."""
        if latents.ndim != 3 or latents.shape[1] != condition.image_seq_len:
            raise ValueError(
                f"latents must be (B, L={condition.image_seq_len}, D) for a "
                f"{condition.height}×{condition.width} "
                f"target, got {tuple(latents.shape)}"
            )
        if guidance_scale > 1.0 and not condition.has_negative:
            raise ValueError("guidance_scale > 1 needs a condition encoded with negative_prompt=...")
        b, length = latents.shape[:2]
        dtype = self.transformer.dtype
        refs = condition.reference_latents.to(self._device).expand(b, -1, -1)
        hidden = torch.cat([latents.to(self._device), refs], dim=1).to(dtype)
        timestep = _common.timesteps(sigma, b, device=self._device, dtype=dtype)
        patch = self.multiple_of
        grid = [(1, condition.height // patch, condition.width // patch)]
        grid += [(1, h // patch, w // patch) for h, w in condition.reference_sizes]
        shapes = [grid] * b
        with (
            _common.autocast(self._device, self._autocast),
            _common.adapter_disabled(self.transformer, not adapter),
        ):
            v = self._forward(hidden, timestep, condition.prompt_embeds, condition.prompt_mask, shapes)[
                :, :length
            ]
            if guidance_scale > 1.0:
                assert condition.negative_prompt_embeds is not None
                v_neg = self._forward(
                    hidden, timestep, condition.negative_prompt_embeds, condition.negative_prompt_mask, shapes
                )[:, :length]
        v = v.float()
        if guidance_scale > 1.0:
            combined = v_neg.float() + guidance_scale * (v - v_neg.float())
            # True CFG keeps the conditional velocity's norm per token.
            v = combined * (v.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))
        return v

    def pack_latents(self, latents: Tensor) -> Tensor:
        """`(B, C, h, w)` → `(B, h/2 · w/2, 4C)` (2×2 patches, channel-major inside a patch)."""
        b, c, h, w = latents.shape
        return self.pipe._pack_latents(latents, b, c, h, w)

    def unpack_latents(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """Inverse of :meth:`pack_latents` for a ``height × width`` image."""
        return self.pipe._unpack_latents(tokens, height, width, self.vae_scale_factor)[:, :, 0]

    def encode_images(self, images: Tensor) -> Tensor:
        """`(B, 3, H, W)` in [0, 1] → normalised packed latents (H, W multiples of 16)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return self._encode_pixels((images * 2 - 1).unsqueeze(2))

    def decode_latents(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """Packed latents → images in [0, 1] (the pipeline's decode and postprocess)."""
        z = self.pipe._unpack_latents(tokens.to(self._device), height, width, self.vae_scale_factor)
        z = z.to(self.vae.dtype)
        shape = (1, self.vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(self.vae.config.latents_mean).view(shape).to(z.device, z.dtype)
        std = torch.tensor(self.vae.config.latents_std).view(shape).to(z.device, z.dtype)
        z = z / (1.0 / std) + mean
        image = self.vae.decode(z, return_dict=False)[0][:, :, 0]
        return self.pipe.image_processor.postprocess(image, output_type="pt").float()

    def add_adapter(
        self, *, rank: int, alpha: float | None = None, target_modules: Sequence[str] | None = None
    ) -> None:
        """Attach a fresh LoRA adapter (rank r, scale α/r; default: ``lora_target_modules``)."""
        targets = self.lora_target_modules if target_modules is None else tuple(target_modules)
        _common.add_lora(self.transformer, rank=rank, alpha=alpha, target_modules=targets)

    def adapter_parameters(self) -> list[nn.Parameter]:
        """Trainable LoRA parameters (float32)."""
        return _common.lora_parameters(self.transformer)

    def save_adapter(self, directory: str | Path) -> Path:
        """Save the adapter in diffusers' LoRA format."""
        return _common.save_lora(self.transformer, directory)

    def load_adapter(self, directory: str | Path) -> None:
        """Load an adapter saved by :meth:`save_adapter`, replacing the current one."""
        _common.load_lora(self.transformer, directory)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Switch activation checkpointing of the transformer blocks."""
        if enabled:
            self.transformer.enable_gradient_checkpointing()
        else:
            self.transformer.disable_gradient_checkpointing()


# ----------------------------------------------------------------------------------------------
# loading and the tiny checkpoint
# ----------------------------------------------------------------------------------------------


def load(path: str, **options: Any) -> QwenImageEdit:
    """Load the pipeline components with ``from_pretrained`` (local directory or hub id)."""
    from diffusers import QwenImageEditPlusPipeline

    opts = _common.parse_options(QwenImageEditOptions, NAME, path, options)
    local = Path(path)
    if local.is_dir() and not (local / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{path!r} is not a diffusers pipeline directory (no model_index.json); expected the "
            "Qwen-Image-Edit-2511 layout with transformer/, vae/, text_encoder/, tokenizer/, processor/, "
            "scheduler/"
        )
    dtype = _common.resolve_dtype(opts.dtype, option="dtype")
    try:
        pipe = QwenImageEditPlusPipeline.from_pretrained(path, dtype=dtype)
    except OSError as err:
        raise OSError(f"could not load {NAME!r} weights from {path!r}: {err}") from err
    return QwenImageEdit(pipe, opts)


# Tiny-checkpoint defaults: small reference areas keep CPU tests fast (the pipeline's defaults
# resize every reference to 1024² for the VAE, 30 s per call with the tiny VAE).
TINY_OPTIONS: dict[str, Any] = {
    "resolution": 64,
    "vae_reference_area": 64 * 64,
    "text_reference_area": 56 * 56,
    "min_reference_side": 16,
    "autocast_dtype": None,
}


def make_tiny_checkpoint(directory: Path, *, tokenizer: Any = None) -> Path:
    """Write a tiny random-weight Qwen-Image-Edit-2511-style pipeline to ``directory``.

    Same classes as the real checkpoint (``QwenImageTransformer2DModel`` with
    ``zero_cond_t=True``, ``AutoencoderKLQwenImage``, ``Qwen2_5_VLForConditionalGeneration``,
    ``Qwen2VLProcessor``, the 2511 scheduler config) with tiny sizes, deterministic weights
    (seed 0, global RNG untouched) and a byte-level tokenizer built in code, or ``tokenizer``
    (e.g. from ``train_bpe_tokenizer``; the text encoder's vocabulary follows its size).
    """
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImageEditPlusPipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    from rewardkit_backbones._tokenizer import make_byte_tokenizer

    tok = make_byte_tokenizer() if tokenizer is None else tokenizer
    tid = tok.convert_tokens_to_ids
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = QwenImageTransformer2DModel(
            patch_size=2, in_channels=16, out_channels=4, num_layers=2, attention_head_dim=16,
            num_attention_heads=3, joint_attention_dim=16, guidance_embeds=False, axes_dims_rope=(8, 4, 4),
            zero_cond_t=True,
        )  # fmt: skip
        # Non-trivial latent statistics, so a missing (de)normalisation shows up in the tests.
        vae = AutoencoderKLQwenImage(
            base_dim=8, z_dim=4, dim_mult=[1, 1, 2], num_res_blocks=1, temperal_downsample=[False, True],
            latents_mean=[0.1, -0.2, 0.05, 0.0], latents_std=[0.8, 1.2, 0.9, 1.1],
        )  # fmt: skip
        text_config = {
            "hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 2, "vocab_size": len(tok), "rope_theta": 1e6, "bos_token_id": None,
            "rope_scaling": {"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"},
            "eos_token_id": tid("<|im_end|>"), "pad_token_id": tok.pad_token_id,
        }  # fmt: skip
        vision_config = {
            "depth": 2,
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_heads": 2,
            "out_hidden_size": 16,
        }
        text_encoder = Qwen2_5_VLForConditionalGeneration(
            Qwen2_5_VLConfig(
                text_config=text_config, vision_config=vision_config, image_token_id=tid("<|image_pad|>"),
                video_token_id=tid("<|video_pad|>"), vision_start_token_id=tid("<|vision_start|>"),
                vision_end_token_id=tid("<|vision_end|>"),
            )
        )  # fmt: skip
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=Qwen2VLVideoProcessor()
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256, max_image_seq_len=8192, base_shift=0.5, max_shift=0.9, shift_terminal=0.02,
        time_shift_type="exponential", use_dynamic_shifting=True, shift=1.0,
    )  # fmt: skip
    pipe = QwenImageEditPlusPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok, processor=processor,
        transformer=transformer,
    )  # fmt: skip
    pipe.save_pretrained(str(directory))
    _common.write_checkpoint_defaults(directory, NAME, TINY_OPTIONS)
    return directory


#: DyRef's recipe settings for this backbone: SFT LoRA rank 32 for 6 epochs on Qwen-Image's
#: timestep grid (μ = 0.8, terminal 0.02), GRPO LoRA rank 64; LoRA targets are the adapter's own.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {
        "model": {"lora_rank": 32},
        "train": {"epochs": 6, "timestep_mu": 0.8, "timestep_shift_terminal": 0.02},
    },
    "grpo": {"model": {"lora_rank": 64}},
}

PLUGIN = BackbonePlugin(
    name=NAME,
    load=load,
    make_tiny_checkpoint=make_tiny_checkpoint,
    options=QwenImageEditOptions,
    recipe_defaults=RECIPE_DEFAULTS,
)
