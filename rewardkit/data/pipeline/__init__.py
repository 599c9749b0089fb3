"""DyRef's data construction pipeline (seed paper, App. B.2), with pluggable providers.

Stages and their protocols: [`steps`][rewardkit.data.pipeline.steps]; the record and its JSONL
form: [`record`][rewardkit.data.pipeline.record]; the resumable, sharded build:
[`runner`][rewardkit.data.pipeline.runner]; the config and provider registry:
[`config`][rewardkit.data.pipeline.config]; offline providers:
[`procedural`][rewardkit.data.pipeline.procedural]; model-free filters:
[`filters`][rewardkit.data.pipeline.filters]. Command line: ``rewardkit data build``.
"""

from rewardkit.data.pipeline.record import DataRecord, ReferenceImage, SceneSpec, Subject
from rewardkit.data.pipeline.runner import (
    Providers,
    ShardReport,
    finalize,
    make_record,
    plan_records,
    run_shard,
)
from rewardkit.data.pipeline.steps import (
    FilterResult,
    Grounder,
    ImageProvider,
    PoseEstimator,
    RecordFilter,
    RecordImages,
    RecordPlan,
    Segmenter,
    TextProvider,
    compose_prompt,
    skeleton_image,
    subject_reference,
)

__all__ = [
    "DataRecord",
    "FilterResult",
    "Grounder",
    "ImageProvider",
    "PoseEstimator",
    "Providers",
    "RecordFilter",
    "RecordImages",
    "RecordPlan",
    "ReferenceImage",
    "SceneSpec",
    "Segmenter",
    "ShardReport",
    "Subject",
    "TextProvider",
    "compose_prompt",
    "finalize",
    "make_record",
    "plan_records",
    "run_shard",
    "skeleton_image",
    "subject_reference",
]
