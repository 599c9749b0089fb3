"""The paper's five objective metrics, registered like any other metric.

See [`metric_registry`][rewardkit.evaluation.metric_registry]; scoring order: subject, style,
background, lighting, pose.
"""

import numpy as np

from rewardkit.evaluation._images import load_rgb
from rewardkit.evaluation.benchmark import load_keypoints
from rewardkit.evaluation.lighting import lighting_consistency
from rewardkit.evaluation.metric_registry import MetricContext, MetricOutput, register_metric
from rewardkit.evaluation.metrics import (
    background_consistency,
    pose_caption,
    style_consistency,
    subject_consistency,
)
from rewardkit.evaluation.pose import pose_consistency

__all__: list[str] = []


def subject(ctx: MetricContext) -> MetricOutput:
    """CLIP-I and DINOv2 cosines of each subject crop with its reference."""
    refs = [load_rgb(ctx.bench.resolve(r.path)) for r in ctx.instance.references_of("subject")]
    result = subject_consistency(
        ctx.image,
        refs,
        ctx.boxes(),
        clip=ctx.resources.get("clip"),
        dino=ctx.resources.get("dino"),
        pad=ctx.config.crop_padding,
        faithful=ctx.faithful,
    )
    failures = {"subject_misses": result.misses} if result.misses else {}
    return MetricOutput(failures=failures, subject_clip=result.clip, subject_dino=result.dino)


def style(ctx: MetricContext) -> MetricOutput:
    """Style-encoder cosine of the image with the style reference."""
    reference = load_rgb(ctx.bench.resolve(ctx.reference("style").path))
    return MetricOutput(style_consistency(ctx.image, reference, encoder=ctx.resources.get("style")))


def background(ctx: MetricContext) -> MetricOutput:
    """Encoder cosine of the image's background (subjects masked) with the background reference."""
    reference = load_rgb(ctx.bench.resolve(ctx.reference("background").path), opencv_decoder=ctx.faithful)
    foreground = ctx.resources.get("masks").foreground(ctx.image, ctx.boxes(), instance=ctx.instance)
    value = background_consistency(
        ctx.image,
        reference,
        np.asarray(foreground, dtype=bool),
        encoder=ctx.resources.get("background"),
        faithful=ctx.faithful,
    )
    return MetricOutput(value)


def lighting(ctx: MetricContext) -> MetricOutput:
    """Luminance / colour / direction agreement with the lighting reference."""
    reference = load_rgb(ctx.bench.resolve(ctx.reference("lighting").path), opencv_decoder=ctx.faithful)
    result = lighting_consistency(reference, ctx.image, faithful=ctx.faithful)
    return MetricOutput(result.total, details=result.as_dict())


def pose(ctx: MetricContext) -> MetricOutput:
    """Keypoint agreement with the pose reference (0 and a ``pose_miss`` when no person is found)."""
    ref = ctx.reference("pose")
    if ref.keypoints_path is None:
        raise ValueError(f"instance {ctx.instance.index}: pose reference {ref.path} has no keypoints file")
    kp_ref = load_keypoints(ctx.bench.resolve(ref.keypoints_path))
    caption = pose_caption(ref.path, faithful=ctx.faithful)
    kp = ctx.resources.get("keypoints").keypoints(ctx.image, instance=ctx.instance, caption=caption)
    if kp is None:  # no person found: scored 0 (the reference's failed-crop zero-fill)
        return MetricOutput(0.0, failures={"pose_miss": 1})
    kp = np.asarray(kp, dtype=np.float64)
    if ctx.faithful and not (kp[:, 2] > 0).any():
        return MetricOutput(failures={"pose_dropped": 1})  # the reference skipped "no keypoints" images
    result = pose_consistency(kp, kp_ref, faithful=ctx.faithful)
    return MetricOutput(result.overall, details=result.as_dict())


register_metric(
    "subject",
    subject,
    applies=lambda inst: bool(inst.references_of("subject")),
    needs=("clip", "dino", "detector"),
)
register_metric("style", style, applies=lambda inst: inst.applies("style"), needs=("style",))
register_metric(
    "background",
    background,
    applies=lambda inst: inst.applies("background"),
    needs=("background", "detector", "masks"),
)
register_metric("lighting", lighting, applies=lambda inst: inst.applies("lighting"))
register_metric("pose", pose, applies=lambda inst: inst.applies("pose"), needs=("keypoints",))
