"""The Qwen-Image-Edit-2511 adapter: options, conditioning, velocity, latents (see the package docs)."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from rewardkit.backbone import Condition
from rewardkit.core.schedules import exponential_shift_sigmas, qwen_image_mu
from rewardkit_backbones import _common
from rewardkit_backbones._pipeline_adapter import AdapterOptions, PipelineAdapter, load_pipeline
from rewardkit_backbones.qwen_image_edit.positions import _SchemeRope

__all__ = ["NAME", "QwenImageEdit", "QwenImageEditOptions", "load"]

NAME = "qwen-image-edit-2511"


@dataclass(frozen=True)
class QwenImageEditOptions(AdapterOptions):
    """Options of the Qwen-Image-Edit-2511 adapter (``load_backbone(..., **options)``).

    Besides [`AdapterOptions`][rewardkit_backbones._pipeline_adapter.AdapterOptions] (device,
    dtype, autocast_dtype, resolution — here the target *area* ``resolution²`` —,
    position_scheme, gradient_checkpointing, adapter):

    Attributes:
        auto_resize: take the target aspect ratio from the last reference (else square).
        vae_reference_area: pixel area each reference is resized to before the VAE (the
            pipeline's ``VAE_IMAGE_SIZE``, 1024²; DyRef trains with 512²).
        text_reference_area: pixel area of the references shown to the vision-language text
            encoder (the pipeline's ``CONDITION_IMAGE_SIZE``, 384²).
        min_reference_side: smallest accepted reference side in pixels.
        max_sequence_length: longest accepted prompt (text tokens after the template drop).
    """

    auto_resize: bool = True
    vae_reference_area: int = 1024 * 1024
    text_reference_area: int = 384 * 384
    min_reference_side: int = 32
    max_sequence_length: int = 1024

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_positive_ints("vae_reference_area", "text_reference_area", "min_reference_side")
        if self.max_sequence_length > 1024 or self.max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be in 1 … 1024, got {self.max_sequence_length}")


class QwenImageEdit(PipelineAdapter):
    """Qwen-Image-Edit-2511 as a :class:`rewardkit.backbone.Backbone` (see the module docstring).

    Build it with ``rewardkit.load_backbone("qwen-image-edit-2511", path, **options)``.
    """

    name: ClassVar[str] = NAME
    family: ClassVar[str] = "Qwen-Image-Edit-2511"
    # DyRef's LoRA targets: attention projections, the MLP outputs and the modulation layers of
    # both streams. The one list for this backbone: add_adapter() and both recipes use it.
    lora_target_modules: ClassVar[tuple[str, ...]] = (
        "to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0", "to_add_out",
        "img_mlp.net.2", "img_mod.1", "txt_mlp.net.2", "txt_mod.1",
    )  # fmt: skip

    def _prepare_transformer(self) -> None:
        if self.options.position_scheme != "index":
            rope = self.transformer.pos_embed
            if type(rope).__name__ != "QwenEmbedRope":
                raise ValueError(
                    f"position_scheme={self.options.position_scheme!r} needs the standard QwenEmbedRope"
                )
            self.transformer.pos_embed = _SchemeRope(rope.axes_dim, rope.theta, self.options.position_scheme)

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
        embeds, mask = self.pipe.encode_prompt(prompt=[prompt], image=images, device=self._text_device)
        embeds, mask = embeds.to(self._device), None if mask is None else mask.to(self._device)
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

    def _forward(self, hidden: Tensor, timestep: Tensor, condition: Condition, *, negative: bool) -> Tensor:
        b, patch = hidden.shape[0], self.multiple_of
        grid = [(1, condition.height // patch, condition.width // patch)]
        grid += [(1, h // patch, w // patch) for h, w in condition.reference_sizes]
        embeds, mask = (
            (condition.negative_prompt_embeds, condition.negative_prompt_mask)
            if negative
            else (condition.prompt_embeds, condition.prompt_mask)
        )
        assert embeds is not None
        return self.transformer(
            hidden_states=hidden,
            timestep=timestep,
            guidance=None,
            encoder_hidden_states=embeds.expand(b, -1, -1),
            encoder_hidden_states_mask=None if mask is None else mask.expand(b, -1),
            img_shapes=[grid] * b,
            return_dict=False,
        )[0]

    def _guide(self, v: Tensor, v_neg: Tensor, guidance_scale: float) -> Tensor:
        """Qwen's true CFG: the guided velocity rescaled to the conditional one's norm per token."""
        combined = v_neg + guidance_scale * (v - v_neg)
        return combined * (v.norm(dim=-1, keepdim=True) / combined.norm(dim=-1, keepdim=True))

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


def load(path: str, **options: Any) -> QwenImageEdit:
    """Load the pipeline components with ``from_pretrained`` (local directory or hub id)."""
    return load_pipeline(
        QwenImageEdit, QwenImageEditOptions, "QwenImageEditPlusPipeline", path, options,
        layout="transformer/, vae/, text_encoder/, tokenizer/, processor/, scheduler/",
    )  # fmt: skip
