"""DyRef end to end: OmniRef-mini → Stage I SFT → Stage II GRPO (GDPO + DAR + DRS) → evaluation.

With no arguments this runs offline on a CPU in about twelve minutes (2 cores): it writes the synthetic
OmniRef-mini splits, fine-tunes the embedded tiny Qwen-Image-Edit-architecture backbone
(``examples/assets/dyref-tiny-qwen``) with a LoRA on them (SFT), continues that LoRA with
Flow-GRPO on GDPO-normalised rewards, DAR loss weights and the DRS-shaped similarity reward
(offline EfficientNet-Lite0 stand-ins for SigLIP2 and CSD), and scores the base, SFT and RL
models on the test split with the OmniRef objective metrics. Everything lands in one run folder.

The same script runs the paper's setting: give real weights (``--model-path``), the real
training data (``--data``), the paper's rewards (``--rewards dyref``) and hyper-parameters
(``--config examples/configs/dyref_paper.yaml``), and launch it with
``accelerate launch --multi_gpu --num_processes 8 examples/dyref_full.py ...``.
"""

import argparse
import json
import logging
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rewardkit
from rewardkit.evaluation import Run
from rewardkit.evaluation.generation import GenerationSettings
from rewardkit.recipes import _common as rc
from rewardkit.recipes.config import GRPOConfig, SFTConfig, config_to_dict, deep_merge, load_config

logger = logging.getLogger("dyref")

EMBEDDED_BACKBONE = Path(__file__).resolve().parent / "assets" / "dyref-tiny-qwen"
DEFAULT_BACKBONE = "qwen-image-edit-2511"

#: Offline stand-ins of DyRef's reward set: DRS-shaped image similarity against the target
#: (EfficientNet-Lite0 feature maps compared position by position plus a colour anchor, for
#: SigLIP2's flat features; τ = 0.65 sits between a target blurred by 2 px and another scene)
#: and a covariance style score vs the style reference (for CSD; NaN without one).
OFFLINE_REWARDS: list[dict[str, Any]] = [
    {
        "reward": "offline_similarity",
        "name": "image_similarity",
        "weight": 1.0,
        "options": {"drs": True, "tau": 0.65, "image_size": 128},
    },
    {"reward": "offline_style", "name": "csd_score", "weight": 0.8, "options": {"image_size": 128}},
]

#: The paper's Tab. 6 rows: name → GRPO config overrides (``None``: the SFT model itself).
ABLATIONS: dict[str, dict[str, Any] | None] = {
    "sft_only": None,
    "full": {},
    "no_dar": {"dar": {"enabled": False}},
    "no_drs": {"rewards": "no_drs"},
    "no_style": {"rewards": "no_style"},
}


@dataclass(frozen=True)
class Preset:
    """Sizes of an offline run (data, stage lengths, evaluation sampling)."""

    n_train: int
    n_test: int
    sft: dict[str, Any]
    grpo: dict[str, Any]
    eval_steps: int = 10


_SHARED = {"model": {"lora_rank": 16}, "data": {"height": 64, "width": 64, "cache": True, "eval_limit": 8}}
PRESETS: dict[str, Preset] = {
    "default": Preset(
        n_train=240,
        n_test=60,
        sft={"optim": {"lr": 2e-3}, "train": {"epochs": 6, "batch_size": 4}},
        grpo={
            "optim": {"lr": 1e-3},
            "train": {
                "epochs": 24,
                "prompts_per_epoch": 8,
                "group_size": 8,
                "gradient_step_per_epoch": 2,
                "per_device_batch_size": 8,
            },
            "rollout": {"num_steps": 8, "train_steps": [0, 1, 2, 3], "num_train_steps": 2},
        },
    ),
    "quick": Preset(
        n_train=48,
        n_test=16,
        # 4 noise levels per instance in one batched forward: 4× the samples of 36 steps for
        # +20% of Stage I's time (SFT − base over seeds 0-11: +0.007 with, +0.002 without)
        sft={"optim": {"lr": 2e-3}, "train": {"epochs": 3, "batch_size": 4, "timesteps_per_instance": 4}},
        # Stage II beat the SFT model on 11 of 12 seeds (0-11)
        grpo={
            "optim": {"lr": 3e-3},
            "train": {
                "epochs": 8,
                "prompts_per_epoch": 4,
                "group_size": 8,
                "gradient_step_per_epoch": 2,
                "per_device_batch_size": 8,
            },
            "rollout": {"num_steps": 6, "train_steps": [0, 1, 2], "num_train_steps": 2},
        },
        eval_steps=8,
    ),
}
_GRPO_COMMON = {
    "advantage": {"clip_range": 1e-2},
    # the paper's β: without it Stage II drifted from the SFT images (seed 0, default size, an
    # intermediate base: RL − SFT PSNR −0.44 dB with β = 0, +0.30 dB with β = 0.04)
    "kl": {"beta": 0.04},
    "ema": {"enabled": False},
    "eval": {"every": 0, "num_steps": 8, "guidance_scale": 1.0, "negative_prompt": None},
}


@dataclass
class Plan:
    """Everything the run needs, resolved from the preset, ``--config`` and the flags."""

    out: Path
    train: Path | None
    test: Path | None
    model: dict[str, Any]
    sft: dict[str, Any]
    grpo: dict[str, Any]
    rewards: list[dict[str, Any]]
    generation: GenerationSettings
    evaluation: dict[str, Any] = field(default_factory=dict)
    n_train: int = 0
    n_test: int = 0
    seed: int = 0


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` lists every option)."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "outputs (in --out): data/ (OmniRef-mini), sft/ and grpo/ (checkpoints, adapter/, export/, "
            "metrics.jsonl, loss and reward curves), images/{base,sft,rl}/, summary.json, report.md, "
            "score_vs_n_refs.png, scores_by_type.png, reward_curves.png, ablation/ (with --ablation). "
            "See docs/tutorial.md."
        ),
    )
    parser.add_argument("--out", help="run folder (default: runs/dyref-<date>-<time>)")
    parser.add_argument("--quick", action="store_true", help="a smoke test (about 3 min on 2 CPU cores)")
    parser.add_argument(
        "--ablation",
        action="store_true",
        help="also train the Tab. 6 rows (without DAR, without DRS, without the style reward) and "
        "write ablation/report.md with SFT only / full / each row",
    )
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE, help="registered backbone name")
    parser.add_argument(
        "--model-path",
        help="backbone weights: a local diffusers folder or hub id (default: the embedded tiny "
        f"backbone {EMBEDDED_BACKBONE.relative_to(EMBEDDED_BACKBONE.parents[2])})",
    )
    parser.add_argument(
        "--data",
        help="training split metadata.json in the OmniRef-Bench format (default: OmniRef-mini written "
        "to OUT/data)",
    )
    parser.add_argument(
        "--test-data", help="test split metadata.json (default: test/metadata.json next to --data's folder)"
    )
    parser.add_argument(
        "--rewards",
        choices=("offline", "dyref"),
        default="offline",
        help="offline: EfficientNet-Lite0 stand-ins (no downloads); dyref: SigLIP2 similarity with DRS + "
        "CSD style, the paper's set (needs their weights; a rewards section in --config sets paths)",
    )
    parser.add_argument("--config", help="YAML with sections data, model, sft, grpo, rewards, eval")
    parser.add_argument("--device", help="device of the backbone and encoders (default: CUDA if available)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and of both stages")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


class UsageError(Exception):
    """A bad flag or config file (exit status 2)."""


def _read_yaml(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise UsageError(f"--config {path!r} does not exist")
    data = yaml.safe_load(file.read_text()) or {}
    known = {"data", "model", "sft", "grpo", "rewards", "eval"}
    if not isinstance(data, dict) or set(data) - known:
        raise UsageError(f"--config {path}: top-level keys must be among {sorted(known)}, got {data!r:.200}")
    return data


def make_plan(args: argparse.Namespace) -> Plan:
    """Resolve defaults ← ``--config`` ← flags into a :class:`Plan`.

    The embedded backbone starts from the CPU preset (``--quick`` or the default); any other
    model starts from the recipes' own defaults (the paper's), so a config file only states what
    differs.
    """
    preset = PRESETS["quick" if args.quick else "default"]
    user = _read_yaml(args.config) if args.config else {}
    out = Path(args.out or f"runs/dyref-{time.strftime('%Y%m%d-%H%M%S')}")
    data = user.get("data", {})
    train = args.data or data.get("train")
    test = args.test_data or data.get("test")
    if train and not test:
        guess = Path(train).parent.parent / "test" / "metadata.json"
        if not guess.is_file():
            raise UsageError(f"no test split at {guess} (next to --data {train}); pass --test-data")
        test = str(guess)
    model: dict[str, Any] = {"backbone": args.backbone}
    if args.model_path:
        model["path"] = args.model_path
    elif args.backbone == DEFAULT_BACKBONE and "path" not in user.get("model", {}):
        if not (EMBEDDED_BACKBONE / "model_index.json").is_file():
            raise UsageError(
                f"the embedded backbone {EMBEDDED_BACKBONE} is missing; recreate it with "
                "python examples/make_default_backbone.py, or pass --model-path"
            )
        model["path"] = str(EMBEDDED_BACKBONE)
    elif "path" not in user.get("model", {}):
        raise UsageError(f"--backbone {args.backbone} needs --model-path (the embedded backbone is Qwen's)")
    model = deep_merge(model, user.get("model", {}))
    if args.device:
        model = deep_merge(model, {"options": {"device": args.device}})
    embedded = Path(model["path"]) == EMBEDDED_BACKBONE
    rewards = user.get("rewards")
    if rewards is None:
        dyref = config_to_dict(GRPOConfig())["rewards"]  # SigLIP2 + DRS, CSD: the paper's set
        rewards = dyref if args.rewards == "dyref" else OFFLINE_REWARDS
    evaluation = dict(user.get("eval", {}))
    generation: dict[str, Any] = {"seed": 1}
    if embedded:
        generation |= {"num_steps": preset.eval_steps, "guidance_scale": 1.0, "height": 64, "width": 64}
    try:
        settings = GenerationSettings(**generation | evaluation.pop("generation", {}))
    except (TypeError, ValueError) as err:
        raise UsageError(f"--config {args.config}: eval.generation: {err}") from err
    sft_base = deep_merge(_SHARED, preset.sft) if embedded else {}
    grpo_base = deep_merge(deep_merge(_SHARED, _GRPO_COMMON), preset.grpo) if embedded else {}
    return Plan(
        out=out,
        train=Path(train) if train else None,
        test=Path(test) if test else None,
        model=model,
        sft=deep_merge(sft_base, user.get("sft", {})),
        grpo=deep_merge(grpo_base, user.get("grpo", {})),
        rewards=rewards,
        generation=settings,
        evaluation=evaluation,
        n_train=int(data.get("n_train", preset.n_train)),
        n_test=int(data.get("n_test", preset.n_test)),
        seed=args.seed,
    )


def variant_rewards(rewards: list[dict[str, Any]], variant: str | None) -> list[dict[str, Any]]:
    """The reward set of an ablation row: DRS off, or the style reward removed."""
    if variant == "no_drs":
        return [
            deep_merge(r, {"options": {"drs": False}}) if r.get("name") == "image_similarity" else r
            for r in rewards
        ]
    if variant == "no_style":
        return [r for r in rewards if r.get("name") != "csd_score"]
    return rewards


def prepare_data(plan: Plan, dist: rc.Dist) -> tuple[Path, Path]:
    """The train and test metadata files (OmniRef-mini is written by the main process)."""
    if plan.train is not None and plan.test is not None:
        return plan.train, plan.test
    root = plan.out / "data"
    if dist.is_main and not (root / "test" / "metadata.json").is_file():
        from rewardkit.data.omniref_mini import write_omniref_mini

        write_omniref_mini(root, n_train=plan.n_train, n_test=plan.n_test, seed=plan.seed, progress=True)
    dist.barrier()
    return root / "train" / "metadata.json", root / "test" / "metadata.json"


def _finished(stage: Path) -> bool:
    """A stage folder whose adapter and exports were written (``--resume`` skips it)."""
    return (stage / "adapter").is_dir() and (stage / "export").is_dir()


def _resume_point(stage: Path, resume: bool) -> str | None:
    """Where the recipe resumes an interrupted stage from: its latest checkpoint, if any."""
    return "latest" if resume and (stage / "checkpoints").is_dir() else None


def run_sft(plan: Plan, train: Path, test: Path, resume: bool) -> Path:
    """Stage I; returns the adapter folder (skipped when a finished one exists and ``resume``)."""
    from rewardkit.recipes import sft

    out = plan.out / "sft"
    if resume and _finished(out):
        logger.info("Stage I already done: %s", out / "adapter")
        return out / "adapter"
    values = deep_merge(
        plan.sft,
        {
            "model": plan.model,
            "data": {"train": str(train), "eval": str(test)},
            "train": {"seed": plan.seed},
            "log": {"output_dir": str(out), "tensorboard": False},
        },
    )
    config = load_config(SFTConfig, recipe="sft", values=values)
    sft.train(config, resume=_resume_point(out, resume))
    return out / "adapter"


def run_grpo(
    plan: Plan, name: str, overrides: Mapping[str, Any], adapter: Path, train: Path, resume: bool
) -> Path:
    """Stage II from the SFT adapter; ``overrides`` switch off DAR / DRS / the style reward."""
    from rewardkit.recipes import grpo

    out = plan.out / ("grpo" if name == "full" else f"ablation/{name}")
    if resume and _finished(out):
        logger.info("Stage II (%s) already done: %s", name, out / "adapter")
        return out / "adapter"
    overrides = dict(overrides)
    rewards = variant_rewards(plan.rewards, overrides.pop("rewards", None))
    values = deep_merge(plan.grpo, overrides)
    values = deep_merge(
        values,
        {
            "model": {**plan.model, "adapter": str(adapter)},
            "data": {"train": str(train)},
            "train": {"seed": plan.seed + 42},
            "log": {"output_dir": str(out), "tensorboard": False},
        },
    )
    if rewards:
        values["rewards"] = rewards
    config = load_config(GRPOConfig, recipe="grpo", values=values)
    grpo.train(config, resume=_resume_point(out, resume))
    return out / "adapter"


def evaluate(plan: Plan, test: Path, runs: Sequence[Run], out: Path) -> dict[str, Any]:
    """Generate (or reuse) every run's test images and score them; returns summary.json's dict."""
    options: dict[str, Any] = {
        "generation": plan.generation,
        "device": plan.model.get("options", {}).get("device"),
    }
    options.update(plan.evaluation)
    report = rewardkit.evaluate(list(runs), str(test), out_dir=out, **options)
    return report.summary


def _objective(summary: Mapping[str, Any], method: str) -> float:
    obj = summary["methods"][method]["objective"]
    value = obj["avg"] if obj.get("avg") is not None else obj["avg_present"]
    return float(value)


def plot_reward_curves(histories: Mapping[str, Sequence[Mapping[str, float]]], path: Path) -> Path | None:
    """Mean reward of each GRPO run per epoch, one panel per reward."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no reward_curves.png")
        return None
    keys = sorted(
        {
            k
            for h in histories.values()
            for r in h
            for k in r
            if k.startswith("reward/") and k.endswith("/mean")
        }
    )
    if not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, history in histories.items():
            points = [(r["epoch"], r[key]) for r in history if key in r]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=name)
        ax.set_title(key.removeprefix("reward/").removesuffix("/mean"))
        ax.set_xlabel("GRPO epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    fig.suptitle("Stage II rewards (rollout mean per epoch)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _history(folder: Path) -> list[dict[str, float]]:
    file = folder / "metrics.jsonl"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]


def _fidelity(summary: Mapping[str, Any], method: str, key: str) -> float | None:
    value = summary["methods"][method].get("fidelity", {}).get(key)
    return None if value is None else float(value)


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def ablation_table(summary: Mapping[str, Any]) -> str:
    """Tab. 6 in miniature: each row's objective scores, their average and the target fidelity."""
    headers = ("Subject", "Style", "Background", "Lighting", "Pose", "Obj Avg", "PSNR", "SSIM", "Div. ratio")
    keys = ("subject", "style", "background", "lighting", "pose")
    lines = ["| Setting | " + " | ".join(headers) + " |", "|---" * (len(headers) + 1) + "|"]
    for name in summary["methods"]:
        obj = summary["methods"][name]["objective"]
        cells = ["–" if obj.get(k) is None else f"{obj[k]:.4f}" for k in keys]
        cells.append(f"{_objective(summary, name):.4f}")
        cells += [
            _cell(_fidelity(summary, name, "psnr"), 2),
            _cell(_fidelity(summary, name, "ssim"), 3),
            _cell(_fidelity(summary, name, "diversity_ratio"), 2),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


STAGES: tuple[tuple[str, str], ...] = (
    ("base", "base"),
    ("sft", "SFT (Stage I)"),
    ("rl", "RL (Stage II: GDPO + DAR + DRS)"),
)


def stage_table(summary: Mapping[str, Any]) -> str:
    """Each stage's Obj Avg and target fidelity, with the change from the stage before."""
    lines = [
        "| Stage | Obj Avg | change | PSNR (dB) | change | SSIM | Perceptual ↓ | Div. ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    previous: str | None = None
    for method, label in STAGES:
        score, psnr = _objective(summary, method), _fidelity(summary, method, "psnr")
        change = psnr_change = ""
        if previous is not None:
            change = f"{score - _objective(summary, previous):+.4f}"
            before = _fidelity(summary, previous, "psnr")
            psnr_change = "" if psnr is None or before is None else f"{psnr - before:+.2f}"
        cells = [
            f"{score:.4f}",
            change,
            _cell(psnr, 2),
            psnr_change,
            _cell(_fidelity(summary, method, "ssim"), 3),
            _cell(_fidelity(summary, method, "perceptual"), 3),
            _cell(_fidelity(summary, method, "diversity_ratio"), 2),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
        previous = method
    return "\n".join(lines) + "\n"


def write_report(
    plan: Plan, summary: Mapping[str, Any], timings: Mapping[str, float], ablation: str | None
) -> Path:
    """``report.md``: what ran, the stage table, collapse warnings, the contact sheet, the plots."""
    evaluation = (plan.out / "report.md").read_text()
    lines = [
        "# DyRef run\n",
        f"Backbone `{plan.model['backbone']}` from `{plan.model['path']}`; train `{plan.train}`, "
        f"test `{plan.test}`; seed {plan.seed}.\n",
        stage_table(summary),
        "PSNR, SSIM and the perceptual distance compare each image with its ground-truth target; "
        "the diversity ratio is a method's output diversity over the targets' (1: as varied as the "
        "ground truth; far below 1: the outputs collapsed).\n",
    ]
    lines += [f"> **Warning** — {w}\n" for w in summary.get("warnings", [])]
    lines += [
        "Time: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in timings.items()) + ".\n",
        "![references, target, base, SFT, RL](contact_sheet.png)\n",
        "![score vs number of references](score_vs_n_refs.png)\n",
        "![scores by type](scores_by_type.png)\n",
        "![GRPO rewards](reward_curves.png)\n",
    ]
    if ablation:
        lines += ["## Ablation (Tab. 6 rows)\n", ablation]
    text = "\n".join(lines) + "\n" + evaluation.replace("# Evaluation\n", "## Evaluation\n", 1)
    (plan.out / "report.md").write_text(text)
    return plan.out / "report.md"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; 0 on success, 2 on bad arguments or configuration."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="[dyref] %(message)s")
    try:
        plan = make_plan(args)
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if plan.out.exists() and any(plan.out.iterdir()) and not args.resume:
        print(f"error: {plan.out} is not empty; pass --resume to continue it or a new --out", file=sys.stderr)
        return 2
    dist = rc.init_distributed()
    started = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        train, test = prepare_data(plan, dist)
        plan.train, plan.test = train, test
        mark = time.perf_counter()
        sft_adapter = run_sft(plan, train, test, args.resume)
        timings["SFT"] = time.perf_counter() - mark
        variants = ABLATIONS if args.ablation else {"full": {}}
        adapters: dict[str, Path] = {}
        mark = time.perf_counter()
        for name, overrides in variants.items():
            if overrides is not None:
                logger.info("Stage II: %s", name)
                adapters[name] = run_grpo(plan, name, overrides, sft_adapter, train, args.resume)
        timings["GRPO"] = time.perf_counter() - mark
    except rc.ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not dist.is_main:
        return 0

    mark = time.perf_counter()
    common = {
        "backbone": plan.model["backbone"],
        "checkpoint": plan.model["path"],
        "options": plan.model.get("options", {}),
    }
    runs = [
        Run("base", **common),
        Run("sft", lora=sft_adapter, **common),
        Run("rl", lora=adapters["full"], **common),
    ]
    summary = evaluate(plan, test, runs, plan.out)
    ablation = None
    if args.ablation:
        images = plan.out / "images"
        rows = [Run("sft_only", images=images / "sft"), Run("full", images=images / "rl")]
        rows += [Run(n, lora=a, images=images / n, **common) for n, a in adapters.items() if n != "full"]
        ablation_summary = evaluate(plan, test, rows, plan.out / "ablation")
        ablation = ablation_table(ablation_summary)
        (plan.out / "ablation" / "table.md").write_text(ablation)
    timings["evaluation"] = time.perf_counter() - mark
    histories = {
        "full" if n == "full" else n: _history(plan.out / ("grpo" if n == "full" else f"ablation/{n}"))
        for n in adapters
    }
    plot_reward_curves(histories, plan.out / "reward_curves.png")
    timings["total"] = time.perf_counter() - started
    report = write_report(plan, summary, timings, ablation)
    scores = {m: _objective(summary, m) for m in ("base", "sft", "rl")}
    psnr = {m: _fidelity(summary, m, "psnr") for m in ("base", "sft", "rl")}
    print(
        f"\nDyRef on {test.parent.name}: Obj Avg base {scores['base']:.4f} → SFT {scores['sft']:.4f} "
        f"→ RL {scores['rl']:.4f}; PSNR vs target base {_cell(psnr['base'], 2)} → SFT "
        f"{_cell(psnr['sft'], 2)} → RL {_cell(psnr['rl'], 2)} dB ({timings['total'] / 60:.1f} min)"
        f"\nreport: {report}"
    )
    for warning in summary.get("warnings", []):
        print(f"warning: {warning}")
    if ablation:
        print(ablation)
    (plan.out / "run.json").write_text(
        json.dumps(
            {"scores": scores, "psnr": psnr, "timings_s": timings, "args": vars(args)}, indent=2, default=str
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
