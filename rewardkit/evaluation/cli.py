"""``rewardkit eval``: evaluate image folders and/or backbones on a benchmark, write table and plots.

Thin argparse front end of [`evaluate`][rewardkit.evaluate]; every option maps to an
[`EvalConfig`][rewardkit.evaluation.pipeline.EvalConfig] field.
"""

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["configure", "run"]

_DESCRIPTION = """\
Evaluate one or several methods on a benchmark and write the paper's table and plots.

A method (a "run") is either a folder of generated images named {index}.png after the benchmark's
index field (--images NAME=DIR; other files in the folder are ignored), or a backbone to generate
them with (--generate NAME BACKBONE CHECKPOINT [LORA]; images go to OUT/images/NAME, existing ones
are kept, so an interrupted run resumes). Several runs appear side by side in one table.

The benchmark format is detected from the file:
  OmniRef-Bench metadata (edit_image lists; also OmniRef-mini from rewardkit.data) -> the five
    objective metrics (subject, style, background, lighting, pose) and, with a judge, the six MLLM
    dimensions; table shaped like the paper's Tab. 2 plus breakdowns by number of references;
    with ground-truth targets also PSNR, SSIM, a perceptual distance and a collapse check;
  MICo-Bench-style cases (sources + reference) -> Weighted-Ref-VIEScore (seed 004, 0-100);
  dual-reference cases (inputs) -> the three-question yes/no judge (seed 003, 0-1).
"""

_EPILOG = """\
outputs (in --out):
  scores_<run>.jsonl   one line per image: scores, sub-scores, failure counts
  summary.json         per run: each type, Obj Avg, MLLM dimensions and Avg, by number of references
  report.md            the table (Tab. 2 layout), per-run breakdowns, notes, settings
  score_vs_n_refs.png  score versus number of references, one line per run
  scores_by_type.png   per-type bar chart (MICo / dual-reference: scores_by_group.png)
  contact_sheet.png    references, target and each run's image for a few instances (with targets)

encoders (--clip, --dino, --background, --style take SPEC = NAME[=WEIGHTS][,KEY=VALUE...], the
options going to the builder, e.g. clip=/models/clip-b16,dtype=bfloat16,batch_size=64):
  offline_similarity   EfficientNet-Lite0 features, offline stand-in for CLIP-I / DINOv2 (default)
  offline_style        EfficientNet-Lite0 Gram matrices, offline stand-in for CSD (default)
  clip[=DIR|HUB_ID]    CLIP image embedding (default openai/clip-vit-base-patch16, the protocol's)
  dinov2[=DIR|HUB_ID]  DINOv2 token mean (default facebook/dinov2-base)
  csd=FILE             CSD ViT-L style embedding (tomg-group-umd/CSD-ViT-L checkpoint)
  siglip[=DIR|HUB_ID]  SigLIP pooled embedding
  Stand-in numbers are not comparable with the paper's; the report says so.

providers:
  --detector ground_truth        boxes from ground_truth.json (synthetic sets; the target layout)
  --detector zero_shot=MODEL     transformers zero-shot detector (Grounding DINO, OWL-ViT, OWLv2)
  --masks box                    foreground = detected boxes (the reference used SAM2 masks)
  --keypoints ground_truth       keypoints from ground_truth.json (an oracle: checks the pipeline)
  Any of them also takes MODULE:ATTR, a factory called as factory(benchmark=...) or a ready object.

judge (MLLM metric, MICo and dual-reference cases): --judge-url and --judge-model (or the env
variables REWARDKIT_JUDGE_BASE_URL / REWARDKIT_JUDGE_MODEL); the API key is read from
REWARDKIT_JUDGE_API_KEY or OPENAI_API_KEY, never from the command line.

--faithful reproduces the reference scripts' deterministic quirks (BGR subject crops, swapped
background channels, images looked up by list position, lighting grid and rounding, pose alignment
on all 17 points, judge temperature 0.9 trusting its -1); the default fixes them (misses score 0).

examples:
  rewardkit eval data/test/metadata.json --images base=gen/base --images rl=gen/rl --out report
  rewardkit eval OmniRef-Bench/metadata.json --generate rl flux2-klein /models/klein /runs/rl/lora \\
      --clip clip=/models/clip-vit-base-patch16 --dino dinov2=/models/dinov2-base \\
      --style csd=/models/CSD-ViT-L.safetensors --detector zero_shot=/models/grounding-dino-tiny \\
      --metrics subject,style,background,lighting,mllm --judge-url http://127.0.0.1:8000/v1 \\
      --judge-model Qwen3-VL-30B-A3B-Instruct --out report
"""


def _key_value(text: str, what: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise ValueError(f"{what} must look like NAME=VALUE, got {text!r}")
    return key, value


def _option_value(value: str) -> Any:
    """``--backbone-option`` values: JSON when it parses (numbers, booleans, null), else a string."""
    try:
        return json.loads(value)
    except ValueError:
        return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the ``rewardkit eval`` arguments to ``parser``."""
    from rewardkit.evaluation.pipeline import ALL_METRICS

    parser.description = _DESCRIPTION
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "benchmark", type=Path, help="benchmark file: OmniRef metadata.json, MICo or dual-ref cases"
    )
    parser.add_argument(
        "--root", type=Path, help="folder the benchmark's paths are relative to (default: its folder)"
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="output folder for the report (and generated images)"
    )

    runs = parser.add_argument_group("runs (at least one)")
    runs.add_argument(
        "--images",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="evaluate a folder of {index}.png images under this name (repeatable)",
    )
    runs.add_argument(
        "--generate",
        action="append",
        nargs="+",
        default=[],
        metavar="ARG",
        help="NAME BACKBONE CHECKPOINT [LORA]: generate images with a registered backbone (and an "
        "optional LoRA directory), then evaluate them (repeatable)",
    )
    runs.add_argument(
        "--backbone-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra load_backbone option for every --generate run, e.g. dtype=bfloat16, "
        "resolution=1024 (repeatable)",
    )

    gen = parser.add_argument_group("generation (the paper's settings are the defaults)")
    gen.add_argument("--steps", type=int, default=20, help="sampling steps (default 20)")
    gen.add_argument("--seed", type=int, default=1, help="noise seed, the same for every item (default 1)")
    gen.add_argument(
        "--cfg", type=float, default=4.0, help="classifier-free guidance scale, 1 = off (default 4)"
    )
    gen.add_argument("--negative-prompt", default="", help="negative prompt for guidance (default empty)")
    gen.add_argument("--height", type=int, help="target height (default: the backbone's rule)")
    gen.add_argument("--width", type=int, help="target width (default: the backbone's rule)")
    gen.add_argument("--batch-size", type=int, default=4, help="conditions encoded per call (default 4)")
    gen.add_argument("--overwrite", action="store_true", help="regenerate images that already exist")

    met = parser.add_argument_group("metrics")
    met.add_argument(
        "--metrics",
        default=None,
        help=f"comma-separated subset of {','.join(ALL_METRICS)} (default: the five objective "
        "metrics and fidelity (target PSNR/SSIM/perceptual/diversity, when the benchmark has targets), "
        "plus mllm when a judge URL is set)",
    )
    met.add_argument(
        "--metric-module",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): a module that registers metrics with "
        "rewardkit.evaluation.metric_registry.register_metric, selectable by name in --metrics",
    )
    met.add_argument("--faithful", action="store_true", help="reproduce the reference scripts' quirks")
    met.add_argument("--clip", default="offline_similarity", metavar="SPEC", help="CLIP-I encoder")
    met.add_argument("--dino", default="offline_similarity", metavar="SPEC", help="DINOv2 encoder")
    met.add_argument(
        "--background", default=None, metavar="SPEC", help="background encoder (default: the --clip encoder)"
    )
    met.add_argument("--style", default="offline_style", metavar="SPEC", help="style (CSD) encoder")
    met.add_argument(
        "--detector",
        default="ground_truth",
        metavar="NAME[=MODEL]",
        help="subject detector: ground_truth, zero_shot=MODEL or MODULE:ATTR",
    )
    met.add_argument("--box-threshold", type=float, default=0.35, help="zero_shot box score threshold (0.35)")
    met.add_argument(
        "--text-threshold",
        type=float,
        default=0.25,
        help="zero_shot text threshold, Grounding DINO only (0.25)",
    )
    met.add_argument("--masks", default="box", help="foreground masks: box or MODULE:ATTR")
    met.add_argument(
        "--keypoints", default="ground_truth", help="pose keypoints: ground_truth or MODULE:ATTR"
    )
    met.add_argument("--crop-padding", type=int, default=10, help="subject crop padding in pixels (10)")
    met.add_argument(
        "--device", default=None, help="device of encoders and detectors (default: cuda if available)"
    )

    judge = parser.add_argument_group("MLLM judge")
    judge.add_argument(
        "--judge-url", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1"
    )
    judge.add_argument("--judge-model", default=None, help="judge model name")
    judge.add_argument("--judge-cache", type=Path, default=None, help="answer cache folder (reruns are free)")
    judge.add_argument(
        "--judge-temperature",
        type=float,
        default=None,
        help="sampling temperature (default 0; 0.9 with --faithful)",
    )
    judge.add_argument(
        "--judge-applicability",
        choices=("metadata", "model"),
        default=None,
        help="which dimensions count: from the references (default) or the judge's -1 (faithful)",
    )
    judge.add_argument("--judge-concurrency", type=int, default=4, help="requests in flight (4)")
    judge.add_argument("--judge-timeout", type=float, default=120.0, help="seconds per attempt (120)")
    judge.add_argument(
        "--face-similarity",
        default=None,
        metavar="MODULE:ATTR",
        help="MICo face sources: f(source, generated) -> best-match cosine (e.g. ArcFace)",
    )
    judge.add_argument(
        "--faces-as-objects",
        action="store_true",
        help="MICo: judge face sources with the VLM yes/no (a recorded deviation)",
    )

    misc = parser.add_argument_group("other")
    misc.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    misc.add_argument(
        "--allow-missing", action="store_true", help="score the images present if some are missing"
    )
    misc.add_argument("--no-plots", action="store_true", help="do not write the PNG plots")
    misc.add_argument("--no-progress", action="store_true", help="no progress bars")


def _build(args: argparse.Namespace) -> tuple[list[Any], dict[str, Any]]:
    from rewardkit.evaluation.generation import GenerationSettings
    from rewardkit.evaluation.metrics import EncoderSpec
    from rewardkit.evaluation.pipeline import DEFAULT_METRICS, JudgeSettings, Run

    runs: list[Run] = []
    for text in args.images:
        name, folder = _key_value(text, "--images")
        runs.append(Run(name, images=folder))
    backbone_options = dict(_key_value(t, "--backbone-option") for t in args.backbone_option)
    options = {k: _option_value(v) for k, v in backbone_options.items()}
    if args.device is not None:
        options.setdefault("device", args.device)
    for values in args.generate:
        if len(values) not in (3, 4):
            raise ValueError(f"--generate takes NAME BACKBONE CHECKPOINT [LORA], got {values}")
        name, backbone, checkpoint, *lora = values
        runs.append(
            Run(
                name,
                backbone=backbone,
                checkpoint=checkpoint,
                lora=lora[0] if lora else None,
                options=options,
            )
        )
    if not runs:
        raise ValueError(
            "give at least one run: --images NAME=DIR or --generate NAME BACKBONE CHECKPOINT [LORA]"
        )

    judge_url = args.judge_url
    judge = None
    import os

    if judge_url or os.environ.get("REWARDKIT_JUDGE_BASE_URL"):
        face = None
        if args.face_similarity:
            module, _, attr = args.face_similarity.partition(":")
            face = getattr(_import_module(module, "--face-similarity"), attr, None)
            if face is None:
                raise ValueError(f"--face-similarity: module {module!r} has no attribute {attr!r}")
        judge = JudgeSettings(
            base_url=judge_url,
            model=args.judge_model,
            cache_dir=args.judge_cache,
            temperature=args.judge_temperature,
            applicability=args.judge_applicability,
            max_concurrency=args.judge_concurrency,
            timeout=args.judge_timeout,
            face_similarity=face,
            faces_as_objects=args.faces_as_objects,
        )
    for module_name in args.metric_module:
        _import_module(module_name, "--metric-module")  # registers its metrics
    if args.metrics is None:
        metrics = (*DEFAULT_METRICS, "mllm") if judge is not None else DEFAULT_METRICS
    else:
        metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    detector, _, model = args.detector.partition("=")
    detector_options: dict[str, Any] = {}
    if detector == "zero_shot":
        if not model:
            raise ValueError("--detector zero_shot needs a model: zero_shot=DIR_OR_HUB_ID")
        detector_options = {
            "model": model,
            "box_threshold": args.box_threshold,
            "text_threshold": args.text_threshold,
            "device": args.device,
        }
    elif model:
        raise ValueError(f"--detector {args.detector!r}: only zero_shot takes =MODEL")
    config = {
        "metrics": metrics,
        "faithful": args.faithful,
        "clip": EncoderSpec.parse(args.clip),
        "dino": EncoderSpec.parse(args.dino),
        "background": EncoderSpec.parse(args.background) if args.background else None,
        "style": EncoderSpec.parse(args.style),
        "detector": detector,
        "detector_options": detector_options,
        "masks": args.masks,
        "keypoints": args.keypoints,
        "crop_padding": args.crop_padding,
        "device": args.device,
        "judge": judge,
        "generation": GenerationSettings(
            num_steps=args.steps,
            seed=args.seed,
            guidance_scale=args.cfg,
            negative_prompt=args.negative_prompt,
            height=args.height,
            width=args.width,
            batch_size=args.batch_size,
        ),
        "overwrite": args.overwrite,
        "allow_missing": args.allow_missing,
        "limit": args.limit,
        "plots": not args.no_plots,
        "progress": not args.no_progress,
    }
    return runs, config


def _import_module(name: str, flag: str) -> Any:
    """Import a user module named on the command line; a missing one is a one-line error."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise ValueError(f"{flag}: cannot import {name!r} ({err}); is it on PYTHONPATH?") from err


def run(args: argparse.Namespace) -> int:
    """Run the evaluation; print the table and where the files are. Returns the exit status."""
    from rewardkit.evaluation.pipeline import evaluate

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        runs, config = _build(args)
        report = evaluate(runs, args.benchmark, out_dir=args.out, root=args.root, **config)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"rewardkit eval: error: {err}", file=sys.stderr)
        return 2
    print(report.table)
    for note in report.summary.get("notes", []):
        print(f"note: {note}")
    print(f"wrote {args.out}/summary.json, report.md, scores_<run>.jsonl and plots")
    return 0
