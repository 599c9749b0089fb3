r"""FLUX.2 [klein] adapter (diffusers ``Flux2KleinPipeline`` components).

Conditioning (docs: Backbones), for a prompt and references $r_0 \dots r_{n-1}$:

* **Text.** Qwen3 chat template (``add_generation_prompt``, ``enable_thinking=False``) padded to
  ``max_sequence_length`` tokens; the hidden states of layers ``text_encoder_out_layers``
  ((9, 18, 27) for the 9B model) are concatenated along channels. Text ids
  ``(T, H, W, L) = (0, 0, 0, l)``.
* **Target.** ``(H/16)·(W/16)`` tokens of 128 channels with ids ``(0, h, w, 0)`` (not centred).
* **References.** Each $r_i$ is resized down to area ``reference_area`` only if larger (aspect
  kept), floored to multiples of 16 by a centre crop, VAE-encoded (posterior mode),
  2×2-patchified, batch-norm normalised $(z - \mu_{bn})/\sqrt{\sigma^2_{bn} + \epsilon}$ and
  packed; the transformer sees $[x_{target}; r_0; \dots]$ and its output is sliced to the
  target. Position ids (scheme ``"index"``, the model's own): ``(10 + 10 i, h, w, 0)``.
  ``"offset"``/``"diagonal"`` (seed 003) put every reference at ``T = 10`` and move its rows/cols
  (see :func:`reference_ids`).
* References share the target's σ embedding (no ``zero_cond_t``); ``guidance=None`` in every
  forward (klein base has no guidance embedding).
* **Guidance.** Plain CFG with the negative prompt (``""`` by default in the pipeline):
  $v = v_\varnothing + w\,(v_c - v_\varnothing)$.
* **Schedule.** Exponential time shift with FLUX.2's empirical $\mu(L, N)$; no terminal stretch
  unless the checkpoint's scheduler config sets one.
* **Target size.** Explicit, else ``resolution × resolution`` (no aspect auto-resize).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from rewardkit.backbone import BackbonePlugin, Condition
from rewardkit.core.schedules import exponential_shift_sigmas, flux2_empirical_mu
from rewardkit_backbones import _common
from rewardkit_backbones._common import POSITION_SCHEMES, PositionScheme

__all__ = [
    "NAME",
    "PLUGIN",
    "Flux2Klein",
    "Flux2KleinOptions",
    "load",
    "make_tiny_checkpoint",
    "reference_ids",
]

NAME = "flux2-klein"

# FLUX.2 puts reference i at time coordinate SCALE + SCALE·i (the pipeline's _prepare_image_ids).
_T_SCALE = 10


@dataclass(frozen=True)
class Flux2KleinOptions:
    """Options of the FLUX.2 [klein] adapter (``load_backbone(..., **options)``).

    Attributes:
        device: where to run (None: CUDA if available, else CPU).
        dtype: dtype of the loaded weights (``"bfloat16"`` recommended on GPU).
            LoRA weights are always float32.
        autocast_dtype: mixed-precision dtype of the transformer forward (rollout and training
            alike), or None for none.
        resolution: target side when the size is not given (square target).
        reference_area: references with a larger pixel area are resized down to it (the
            pipeline uses 1024²; DyRef trains with 512²).
        min_reference_side: smallest accepted reference side (the pipeline's 64 px).
        max_reference_aspect: largest accepted reference aspect ratio (the pipeline's 8).
        max_sequence_length: text tokens the prompt is padded/truncated to (512).
        text_encoder_out_layers: hidden-state layers concatenated into the prompt features.
        position_scheme: ``"index"`` (the model's own), ``"offset"`` or ``"diagonal"``.
        gradient_checkpointing: checkpoint transformer blocks in the training forward.
        adapter: directory of a LoRA adapter to load at start (e.g. the SFT adapter).
    """

    device: str | None = None
    dtype: str = "float32"
    autocast_dtype: str | None = "bfloat16"
    resolution: int = 512
    reference_area: int = 1024 * 1024
    min_reference_side: int = 64
    max_reference_aspect: float = 8.0
    max_sequence_length: int = 512
    text_encoder_out_layers: tuple[int, ...] = (9, 18, 27)
    position_scheme: PositionScheme = "index"
    gradient_checkpointing: bool = False
    adapter: str | None = None

    def __post_init__(self) -> None:
        _common.resolve_dtype(self.dtype, option="dtype")
        _common.resolve_dtype(self.autocast_dtype, option="autocast_dtype")
        for name in ("resolution", "reference_area", "min_reference_side", "max_sequence_length"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not self.text_encoder_out_layers or any(int(i) < 0 for i in self.text_encoder_out_layers):
            raise ValueError(
                "text_encoder_out_layers must be non-negative layer indices, got "
                f"{self.text_encoder_out_layers}"
            )
        if self.position_scheme not in POSITION_SCHEMES:
            raise ValueError(
                f"position_scheme must be one of {POSITION_SCHEMES}, got {self.position_scheme!r}"
            )


def _grid_ids(t: int, h: int, w: int, row0: int = 0, col0: int = 0) -> Tensor:
    """`(h·w, 4)` ids ``(t, row0 + r, col0 + c, 0)`` in row-major order."""
    return torch.cartesian_prod(
        torch.tensor([t]), torch.arange(row0, row0 + h), torch.arange(col0, col0 + w), torch.tensor([0])
    )


def reference_ids(
    target: tuple[int, int], references: Sequence[tuple[int, int]], scheme: PositionScheme = "index"
) -> Tensor:
    r"""Position ids ``(T, H, W, L)`` of the target tokens followed by the reference tokens.

    The target takes ``(0, r, c, 0)``. Reference $i$ (0-based, grid $h_i \times w_i$ patches):

    * ``"index"``: ``(10 + 10 i, r, c, 0)`` (the FLUX.2 pipeline's layout);
    * ``"offset"``: ``(10, r + a_i, c + b_i, 0)`` with $(a_i, b_i)$ the corner of reference $i$
      on a canvas where each one goes right of or below the previous ones (``place_on_canvas``);
    * ``"diagonal"``: ``(10, r + H + \sum_{k<i} h_k, c + W + \sum_{k<i} w_k, 0)``, UNO-style:
      the references sit on a diagonal beyond the $H \times W$ target grid.

    Args:
        target: ``(H, W)`` target grid in latent patches.
        references: ``(h_i, w_i)`` per reference, in order.
        scheme: position scheme.

    Returns:
        `(H·W + Σ h_i·w_i, 4)` int64 ids.

    Example:
        >>> reference_ids((1, 2), [(1, 1), (1, 1)]).tolist()
        [[0, 0, 0, 0], [0, 0, 1, 0], [10, 0, 0, 0], [20, 0, 0, 0]]
        >>> reference_ids((1, 2), [(1, 1), (1, 1)], "diagonal").tolist()
        [[0, 0, 0, 0], [0, 0, 1, 0], [10, 1, 2, 0], [10, 2, 3, 0]]
    """
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"scheme must be one of {POSITION_SCHEMES}, got {scheme!r}")
    blocks = [_grid_ids(0, *target)]
    if scheme == "index":
        blocks += [_grid_ids(_T_SCALE + _T_SCALE * i, h, w) for i, (h, w) in enumerate(references)]
    elif scheme == "offset":
        corners = _common.place_on_canvas(references)
        blocks += [
            _grid_ids(_T_SCALE, h, w, r, c) for (h, w), (r, c) in zip(references, corners, strict=True)
        ]
    else:
        row, col = target
        for h, w in references:
            blocks.append(_grid_ids(_T_SCALE, h, w, row, col))
            row, col = row + h, col + w
    return torch.cat(blocks)


class Flux2Klein:
    """FLUX.2 [klein] as a :class:`rewardkit.backbone.Backbone` (see the module docstring).

    Build it with ``rewardkit.load_backbone("flux2-klein", path, **options)``.
    """

    name = NAME
    lora_target_modules: tuple[str, ...] = (
        "to_q",
        "to_k",
        "to_v",
        "to_out.0",
        "add_q_proj",
        "add_k_proj",
        "add_v_proj",
        "to_add_out",
        "to_qkv_mlp_proj",
    )

    def __init__(self, pipe: Any, options: Flux2KleinOptions) -> None:
        self.pipe = pipe
        self.options = options
        self.transformer: Any = pipe.transformer
        self.vae: Any = pipe.vae
        self._device = _common.resolve_device(options.device)
        self._autocast = _common.resolve_dtype(options.autocast_dtype, option="autocast_dtype")
        if self.transformer.config.guidance_embeds:
            raise ValueError(
                "this checkpoint's transformer has guidance_embeds=True (a guidance-distilled FLUX.2); the "
                "flux2-klein adapter drives klein base models, which take guidance=None"
            )
        layers = self.pipe.text_encoder.config.num_hidden_layers
        if max(options.text_encoder_out_layers) > layers:
            raise ValueError(
                f"text_encoder_out_layers={options.text_encoder_out_layers} exceeds the text encoder's "
                f"{layers} layers"
            )
        config = dict(pipe.scheduler.config)
        if (
            not config.get("use_dynamic_shifting")
            or config.get("time_shift_type", "exponential") != "exponential"
        ):
            raise ValueError(
                "the checkpoint's scheduler must use dynamic exponential shifting "
                "(use_dynamic_shifting=true, "
                f"time_shift_type='exponential') as FLUX.2 does; got {config}"
            )
        pipe.to(self._device)
        for module in (pipe.transformer, pipe.vae, pipe.text_encoder):
            module.eval()
            module.requires_grad_(False)
        self.vae_scale_factor: int = pipe.vae_scale_factor
        self.multiple_of = self.vae_scale_factor * 2
        self.set_gradient_checkpointing(options.gradient_checkpointing)
        if options.adapter is not None:
            self.load_adapter(options.adapter)

    @property
    def device(self) -> torch.device:
        """Device of the transformer."""
        return self._device

    # -- conditions -----------------------------------------------------------------------------

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

    def _prepare_reference(self, image: Any) -> Tensor:
        """Resize down to the area cap, crop to multiples of 16, → `(1, 3, h, w)` in [-1, 1]."""
        processor = self.pipe.image_processor
        w, h = image.size
        if w * h > self.options.reference_area:
            image = processor._resize_to_target_area(image, self.options.reference_area)
            w, h = image.size
        m = self.multiple_of
        w, h = (w // m) * m, (h // m) * m
        return processor.preprocess(image, height=h, width=w, resize_mode="crop")

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
        refs = _common.check_references(
            references, min_side=opts.min_reference_side, max_aspect=opts.max_reference_aspect, where=where
        )
        size = _common.check_target_size(height, width, multiple_of=self.multiple_of)
        if size is None:
            side = (opts.resolution // self.multiple_of) * self.multiple_of
            if side < self.multiple_of:
                raise ValueError(f"resolution {opts.resolution} is below the minimum {self.multiple_of} px")
            size = (side, side)
        target_h, target_w = size
        latents, sizes = [], []
        for img in refs:
            pixels = self._prepare_reference(img)
            latents.append(self._encode_pixels(pixels))
            sizes.append((int(pixels.shape[-2]), int(pixels.shape[-1])))
        m = self.multiple_of
        grid = (target_h // m, target_w // m)
        img_ids = reference_ids(grid, [(h // m, w // m) for h, w in sizes], opts.position_scheme)
        embeds, txt_ids = self._encode_text(prompt)
        extras = {"img_ids": img_ids.unsqueeze(0).to(self._device), "txt_ids": txt_ids}
        neg_embeds = None
        if negative_prompt is not None:
            neg_embeds, extras["negative_txt_ids"] = self._encode_text(negative_prompt)
        return Condition(
            prompt=prompt,
            height=target_h,
            width=target_w,
            image_seq_len=grid[0] * grid[1],
            reference_sizes=tuple(sizes),
            prompt_embeds=embeds,
            prompt_mask=None,
            reference_latents=torch.cat(latents, dim=1),
            negative_prompt_embeds=neg_embeds,
            negative_prompt_mask=None,
            extras=extras,
        )

    def _encode_text(self, prompt: str) -> tuple[Tensor, Tensor]:
        return self.pipe.encode_prompt(
            prompt=[prompt],
            device=self._device,
            max_sequence_length=self.options.max_sequence_length,
            text_encoder_out_layers=tuple(self.options.text_encoder_out_layers),
        )

    def _encode_pixels(self, pixels: Tensor) -> Tensor:
        """`(B, 3, H, W)` in [-1, 1] → `(B, L, D)` patchified, BN-normalised, packed latents."""
        z = self.pipe._encode_vae_image(pixels.to(self._device, self.vae.dtype), generator=None)
        return self.pipe._pack_latents(z).float()

    # -- schedule, noise, velocity ----------------------------------------------------------------

    def sigmas(self, num_steps: int, height: int, width: int) -> Tensor:
        """Exponential shift with ``compute_empirical_mu(L, N)``; ``shift_terminal`` from the config."""
        seq_len = (height // self.multiple_of) * (width // self.multiple_of)
        terminal = self.pipe.scheduler.config.get("shift_terminal")
        mu = flux2_empirical_mu(seq_len, num_steps)
        sigmas = exponential_shift_sigmas(num_steps, mu, shift_terminal=float(terminal) if terminal else None)
        return sigmas

    def initial_latents(
        self, batch_size: int, height: int, width: int, *, generator: torch.Generator | None
    ) -> Tensor:
        """Noise drawn as ``Flux2KleinPipeline.prepare_latents`` draws it, packed, float32."""
        channels = self.transformer.config.in_channels // 4
        latents, _ = self.pipe.prepare_latents(
            batch_size, channels, height, width, torch.float32, self._device, generator
        )
        return latents

    def _forward(
        self, hidden: Tensor, timestep: Tensor, embeds: Tensor, txt_ids: Tensor, img_ids: Tensor
    ) -> Tensor:
        b = hidden.shape[0]
        return self.transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=embeds.expand(b, -1, -1),
            txt_ids=txt_ids,
            img_ids=img_ids,
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
        """Transformer velocity on ``[x; references]`` sliced to the target; plain CFG when w > 1."""
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
        img_ids = condition.extras["img_ids"].to(self._device)
        with (
            _common.autocast(self._device, self._autocast),
            _common.adapter_disabled(self.transformer, not adapter),
        ):
            v = self._forward(hidden, timestep, condition.prompt_embeds, condition.extras["txt_ids"], img_ids)
            if guidance_scale > 1.0:
                assert condition.negative_prompt_embeds is not None
                v_neg = self._forward(
                    hidden,
                    timestep,
                    condition.negative_prompt_embeds,
                    condition.extras["negative_txt_ids"],
                    img_ids,
                )
        v = v[:, :length].float()
        if guidance_scale > 1.0:
            neg = v_neg[:, :length].float()
            v = neg + guidance_scale * (v - neg)
        return v

    # -- latents and images -----------------------------------------------------------------------

    def pack_latents(self, latents: Tensor) -> Tensor:
        """`(B, C, h, w)` VAE latents → `(B, h/2 · w/2, 4C)` (2×2 patchify, then flatten)."""
        return self.pipe._pack_latents(self.pipe._patchify_latents(latents))

    def _to_grid(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """`(B, L, 4C)` tokens → `(B, 4C, h/2, w/2)` patchified grid (row-major token order)."""
        m = self.multiple_of
        b, length, d = tokens.shape
        gh, gw = height // m, width // m
        if length != gh * gw:
            raise ValueError(f"{length} tokens do not form a {height}×{width} image ({gh}×{gw} patches)")
        return tokens.reshape(b, gh, gw, d).permute(0, 3, 1, 2)

    def unpack_latents(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """Inverse of :meth:`pack_latents` for a ``height × width`` image."""
        return self.pipe._unpatchify_latents(self._to_grid(tokens, height, width))

    def encode_images(self, images: Tensor) -> Tensor:
        """`(B, 3, H, W)` in [0, 1] → normalised packed latents (H, W multiples of 16)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
        return self._encode_pixels(images * 2 - 1)

    def decode_latents(self, tokens: Tensor, height: int, width: int) -> Tensor:
        """Packed latents → images in [0, 1] (the pipeline's BN de-normalisation and decode)."""
        z = self._to_grid(tokens.to(self._device), height, width).to(self.vae.dtype)
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(z.device, z.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps).to(
            z.device, z.dtype
        )
        z = self.pipe._unpatchify_latents(z * std + mean)
        image = self.vae.decode(z, return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pt").float()

    # -- adapters -------------------------------------------------------------------------------

    def add_adapter(
        self, *, rank: int, alpha: float | None = None, target_modules: Sequence[str] | None = None
    ) -> None:
        """Attach a fresh LoRA adapter (rank r, scale α/r; default targets: attention projections)."""
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


def load(path: str, **options: Any) -> Flux2Klein:
    """Load the pipeline components with ``from_pretrained`` (local directory or hub id)."""
    from diffusers import Flux2KleinPipeline

    opts = _common.parse_options(Flux2KleinOptions, NAME, path, options)
    local = Path(path)
    if local.is_dir() and not (local / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{path!r} is not a diffusers pipeline directory (no model_index.json); expected the "
            "FLUX.2 [klein] layout with transformer/, vae/, text_encoder/, tokenizer/, scheduler/"
        )
    dtype = _common.resolve_dtype(opts.dtype, option="dtype")
    try:
        pipe = Flux2KleinPipeline.from_pretrained(path, dtype=dtype)
    except OSError as err:
        raise OSError(f"could not load {NAME!r} weights from {path!r}: {err}") from err
    return Flux2Klein(pipe, opts)


# Tiny-checkpoint defaults: the tiny Qwen3 has 2 layers, prompts are short.
TINY_OPTIONS: dict[str, Any] = {
    "resolution": 64,
    "reference_area": 64 * 64,
    "max_sequence_length": 96,
    "text_encoder_out_layers": [1, 2],
    "autocast_dtype": None,
}


def make_tiny_checkpoint(directory: Path) -> Path:
    """Write a tiny random-weight FLUX.2 [klein]-style pipeline to ``directory``.

    Same classes as the real checkpoint (``Flux2Transformer2DModel`` without guidance embedding,
    ``AutoencoderKLFlux2``, ``Qwen3ForCausalLM``) with tiny sizes (VAE scale factor 4, so a
    64×64 image is 8×8 = 64 tokens), deterministic weights (seed 0, global RNG untouched),
    non-trivial latent batch-norm statistics, and a byte-level tokenizer built in code.
    """
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen3Config, Qwen3ForCausalLM

    from rewardkit_backbones._tokenizer import make_byte_tokenizer

    tok = make_byte_tokenizer()
    tid = tok.convert_tokens_to_ids
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        transformer = Flux2Transformer2DModel(
            patch_size=1, in_channels=8, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, timestep_guidance_channels=256,
            axes_dims_rope=[4, 4, 4, 4], guidance_embeds=False,
        )  # fmt: skip
        text_encoder = Qwen3ForCausalLM(
            Qwen3Config(
                intermediate_size=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=2, head_dim=8, vocab_size=len(tok), max_position_embeddings=512,
                bos_token_id=None, eos_token_id=tid("<|im_end|>"), pad_token_id=tok.pad_token_id,
            )
        )  # fmt: skip
        vae = AutoencoderKLFlux2(
            sample_size=32, in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(4, 4, 4), layers_per_block=1,
            latent_channels=2, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
        )  # fmt: skip
        # Non-trivial latent statistics, so a missing (de)normalisation shows up in the tests.
        vae.bn.running_mean.copy_(0.1 * torch.randn_like(vae.bn.running_mean))
        vae.bn.running_var.copy_(0.5 + torch.rand_like(vae.bn.running_var))
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    pipe = Flux2KleinPipeline(
        scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tok, transformer=transformer
    )
    pipe.save_pretrained(str(directory))
    _common.write_checkpoint_defaults(directory, NAME, TINY_OPTIONS)
    return directory


#: Recipe settings for this backbone: LoRA rank 32 in both stages; SFT for 5 epochs on the grid
#: of its 50-step sampling schedule at 512² (μ = ``flux2_empirical_mu(1024, 50)`` ≈ 1.70) instead
#: of DiffSynth's extrapolated μ ≈ −3.51, which puts most timesteps at very low noise.
RECIPE_DEFAULTS: dict[str, dict[str, Any]] = {
    "sft": {
        "model": {"lora_rank": 32},
        "train": {
            "epochs": 5,
            "timestep_mu": round(flux2_empirical_mu(1024, 50), 4),
            "timestep_shift_terminal": None,
        },
    },
    "grpo": {"model": {"lora_rank": 32}},
}

PLUGIN = BackbonePlugin(
    name=NAME,
    load=load,
    make_tiny_checkpoint=make_tiny_checkpoint,
    options=Flux2KleinOptions,
    recipe_defaults=RECIPE_DEFAULTS,
)
