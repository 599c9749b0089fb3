"""Stages 2 and 4 on real models: a diffusers text-to-image pipeline and a rewardkit backbone.

The target is sampled from the scene prompt by any diffusers text-to-image pipeline folder
(``DiffusionPipeline.from_pretrained``; e.g. Qwen-Image or FLUX.2). The background, style and
lighting references are edits of the target by a registered backbone (e.g.
``qwen-image-edit-2511`` given the target as image 1 and an instruction), sampled with
[`rollout`][rewardkit.backbone.rollout] — the same code that trains and evaluates it. Both
draw from the record's seed, so a re-run makes the same images.

``"tiny"`` as a path builds a tiny random-weight model of the same classes in code (no
download): the pipeline's plumbing can be tested on a CPU; its images are noise.
"""

import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np

from rewardkit.data.pipeline.record import SceneSpec
from rewardkit.data.pipeline.steps import Image, RecordPlan, check_model_path

__all__ = ["INSTRUCTIONS", "ModelImages"]

#: The edit instruction of each reference type; ``{background}``, ``{style}`` and ``{lighting}``
#: are the scene's descriptions.
INSTRUCTIONS: Final[dict[str, str]] = {
    "background": (
        "Remove every object and person from image 1 and fill in what was behind them; keep the "
        "background ({background}) exactly as it is."
    ),
    "style": (
        "Draw a completely different scene, with none of the objects of image 1, in exactly the visual "
        "style of image 1 ({style})."
    ),
    "lighting": (
        "Replace the content of image 1 with an empty white room and one grey sphere, lit exactly like "
        "image 1 ({lighting})."
    ),
}


def _tiny_text_to_image(directory: Path) -> Any:
    """A tiny random-weight Qwen-Image text-to-image pipeline (the tiny edit checkpoint's parts)."""
    from diffusers import DiffusionPipeline, QwenImagePipeline

    from rewardkit.backbone import make_tiny_checkpoint

    folder = str(make_tiny_checkpoint("qwen-image-edit-2511", directory))
    edit = DiffusionPipeline.from_pretrained(folder)  # type: ignore[no-untyped-call]
    return QwenImagePipeline(  # type: ignore[no-untyped-call]
        scheduler=edit.scheduler,
        vae=edit.vae,
        text_encoder=edit.text_encoder,
        tokenizer=edit.tokenizer,
        transformer=edit.transformer,
    )


class ModelImages:
    """The image stages on models (see the module docstring).

    Args:
        text_to_image: a diffusers text-to-image pipeline folder (or hub id when online), or
            ``"tiny"``.
        edit_path: the edit backbone's checkpoint folder, or ``"tiny"``.
        edit_backbone: the registered backbone that edits (default Qwen-Image-Edit-2511).
        steps: sampling steps of the target.
        edit_steps: sampling steps of each edit.
        device: where both run (None: CUDA if available, else CPU).
        text_to_image_options: extra keyword arguments of the pipeline call (e.g.
            ``{"true_cfg_scale": 4.0, "negative_prompt": " "}``).
        edit_options: backbone options (``load_backbone(..., **edit_options)``).
        edit_guidance_scale: guidance of the edits (needs ``negative_prompt`` > 1).
        instructions: per-type instruction templates replacing
            [`INSTRUCTIONS`][rewardkit.data.pipeline.model_images.INSTRUCTIONS].
    """

    def __init__(
        self,
        text_to_image: str,
        edit_path: str,
        *,
        edit_backbone: str = "qwen-image-edit-2511",
        steps: int = 30,
        edit_steps: int = 30,
        device: str | None = None,
        text_to_image_options: dict[str, Any] | None = None,
        edit_options: dict[str, Any] | None = None,
        edit_guidance_scale: float = 1.0,
        instructions: dict[str, str] | None = None,
    ) -> None:
        for name, value in (("steps", steps), ("edit_steps", edit_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        unknown = sorted(set(instructions or {}) - set(INSTRUCTIONS))
        if unknown:
            raise ValueError(
                f"instructions: unknown reference types {unknown}; expected {sorted(INSTRUCTIONS)}"
            )
        check_model_path("text_to_image", text_to_image)
        check_model_path("edit_path", edit_path)
        self.text_to_image, self.edit_path, self.edit_backbone = text_to_image, edit_path, edit_backbone
        self.steps, self.edit_steps = steps, edit_steps
        self.device = device
        self.text_to_image_options = dict(text_to_image_options or {})
        self.edit_options = dict(edit_options or {})
        self.edit_guidance_scale = float(edit_guidance_scale)
        self.instructions = {**INSTRUCTIONS, **(instructions or {})}
        self._pipe: Any = None
        self._backbone: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def _scratch(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rewardkit-tiny-")
        return Path(self._tmp.name)

    def _text_to_image(self) -> Any:
        if self._pipe is None:
            import torch
            from diffusers import DiffusionPipeline

            if self.text_to_image == "tiny":
                pipe = _tiny_text_to_image(self._scratch() / "t2i")
            else:
                pipe = DiffusionPipeline.from_pretrained(self.text_to_image)  # type: ignore[no-untyped-call]
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            self._pipe = pipe
        return self._pipe

    def _editor(self) -> Any:
        if self._backbone is None:
            from rewardkit.backbone import load_backbone, make_tiny_checkpoint

            path = self.edit_path
            if path == "tiny":
                path = str(make_tiny_checkpoint(self.edit_backbone, self._scratch() / "edit"))
            options = {"device": self.device, **self.edit_options}
            self._backbone = load_backbone(self.edit_backbone, path, **options)
        return self._backbone

    def target(self, plan: RecordPlan, spec: SceneSpec) -> Image:
        """Sample the target from ``spec.scene_prompt`` (``plan.size`` square, seeded by the record)."""
        import torch
        from PIL import Image as PILImage

        pipe = self._text_to_image()
        result = pipe(
            prompt=spec.scene_prompt,
            height=plan.size,
            width=plan.size,
            num_inference_steps=self.steps,
            generator=torch.Generator().manual_seed(plan.seed),
            **self.text_to_image_options,
        )
        image = result.images[0].convert("RGB")
        if image.size != (plan.size, plan.size):
            image = image.resize((plan.size, plan.size), PILImage.Resampling.BICUBIC)
        return np.asarray(image, dtype=np.uint8).copy()

    def reference(self, plan: RecordPlan, spec: SceneSpec, kind: str, target: Image) -> Image:
        """Edit the target into the ``kind`` reference with the backbone."""
        import torch
        from PIL import Image as PILImage

        from rewardkit.backbone.rollout import rollout
        from rewardkit.evaluation._images import to_uint8

        if kind not in self.instructions:
            raise ValueError(
                f"no edit instruction for a {kind!r} reference; expected one of {sorted(self.instructions)}"
            )
        instruction = self.instructions[kind].format(
            background=spec.background or "the background", style=spec.style or "its style",
            lighting=spec.lighting or "its light",
        )  # fmt: skip
        backbone = self._editor()
        negative = " " if self.edit_guidance_scale > 1 else None
        (condition,) = backbone.encode_condition(
            [instruction],
            [[PILImage.fromarray(target)]],
            height=plan.size,
            width=plan.size,
            negative_prompt=negative,
        )
        offset = sorted(INSTRUCTIONS).index(kind) + 1  # each edit of a record draws its own noise
        result = rollout(
            backbone,
            condition,
            group_size=1,
            num_steps=self.edit_steps,
            generator=torch.Generator().manual_seed(plan.seed + offset),
            sde_steps=None,
            guidance_scale=self.edit_guidance_scale,
        )
        assert result.images is not None
        return to_uint8(result.images[0])
