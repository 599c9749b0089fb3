"""The FLUX.2 [klein] adapter: options, conditioning, velocity, latents (see the package docs)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from rewardkit.backbone import Condition
from rewardkit.core.schedules import exponential_shift_sigmas, flux2_empirical_mu
from rewardkit_backbones import _common
from rewardkit_backbones._pipeline_adapter import AdapterOptions, PipelineAdapter, load_pipeline
from rewardkit_backbones.flux2_klein.positions import reference_ids

__all__ = ["NAME", "Flux2Klein", "Flux2KleinOptions", "load"]

NAME = "flux2-klein"


@dataclass(frozen=True)
class Flux2KleinOptions(AdapterOptions):
    """Options of the FLUX.2 [klein] adapter (``load_backbone(..., **options)``).

    Besides [`AdapterOptions`][rewardkit_backbones._pipeline_adapter.AdapterOptions] (device,
    dtype, autocast_dtype, resolution — here a square target's side —, position_scheme,
    gradient_checkpointing, adapter):

    Attributes:
        reference_area: references with a larger pixel area are resized down to it (the
            pipeline uses 1024²; DyRef trains with 512²).
        min_reference_side: smallest accepted reference side (the pipeline's 64 px).
        max_reference_aspect: largest accepted reference aspect ratio (the pipeline's 8).
        max_sequence_length: text tokens the prompt is padded/truncated to (512).
        text_encoder_out_layers: hidden-state layers concatenated into the prompt features.
    """

    reference_area: int = 1024 * 1024
    min_reference_side: int = 64
    max_reference_aspect: float = 8.0
    max_sequence_length: int = 512
    text_encoder_out_layers: tuple[int, ...] = (9, 18, 27)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_positive_ints("reference_area", "min_reference_side", "max_sequence_length")
        if not self.text_encoder_out_layers or any(int(i) < 0 for i in self.text_encoder_out_layers):
            raise ValueError(
                "text_encoder_out_layers must be non-negative layer indices, got "
                f"{self.text_encoder_out_layers}"
            )


class Flux2Klein(PipelineAdapter):
    """FLUX.2 [klein] as a :class:`rewardkit.backbone.Backbone` (see the module docstring).

    Build it with ``rewardkit.load_backbone("flux2-klein", path, **options)``.
    """

    name: ClassVar[str] = NAME
    family: ClassVar[str] = "FLUX.2 [klein]"
    lora_target_modules: ClassVar[tuple[str, ...]] = (
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

    def _check_pipeline(self, pipe: Any) -> None:
        if pipe.transformer.config.guidance_embeds:
            raise ValueError(
                "this checkpoint's transformer has guidance_embeds=True (a guidance-distilled FLUX.2); the "
                "flux2-klein adapter drives klein base models, which take guidance=None"
            )
        layers = pipe.text_encoder.config.num_hidden_layers
        if max(self.options.text_encoder_out_layers) > layers:
            raise ValueError(
                f"text_encoder_out_layers={self.options.text_encoder_out_layers} exceeds the text encoder's "
                f"{layers} layers"
            )

    # -- conditions -----------------------------------------------------------------------------

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
        embeds, ids = self.pipe.encode_prompt(
            prompt=[prompt],
            device=self._text_device,
            max_sequence_length=self.options.max_sequence_length,
            text_encoder_out_layers=tuple(self.options.text_encoder_out_layers),
        )
        return embeds.to(self._device), ids.to(self._device)

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

    def _forward(self, hidden: Tensor, timestep: Tensor, condition: Condition, *, negative: bool) -> Tensor:
        embeds = condition.negative_prompt_embeds if negative else condition.prompt_embeds
        assert embeds is not None
        return self.transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=embeds.expand(hidden.shape[0], -1, -1),
            txt_ids=condition.extras["negative_txt_ids" if negative else "txt_ids"],
            img_ids=condition.extras["img_ids"].to(self._device),
            return_dict=False,
        )[0]

    def _guide(self, v: Tensor, v_neg: Tensor, guidance_scale: float) -> Tensor:
        """Plain CFG, as the FLUX.2 pipeline guides."""
        return v_neg + guidance_scale * (v - v_neg)

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


def load(path: str, **options: Any) -> Flux2Klein:
    """Load the pipeline components with ``from_pretrained`` (local directory or hub id)."""
    return load_pipeline(
        Flux2Klein, Flux2KleinOptions, "Flux2KleinPipeline", path, options,
        layout="transformer/, vae/, text_encoder/, tokenizer/, scheduler/",
    )  # fmt: skip
