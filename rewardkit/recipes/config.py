r"""Typed configs of the recipes: dataclasses, per-backbone defaults, YAML files and CLI overrides.

A config is resolved in this order (later wins):

1. the dataclass defaults below (DyRef's published settings);
2. the defaults of the ``model.backbone`` plug-in (LoRA rank, SFT epochs and timestep grid, ...;
   [`backbone_recipe_defaults`][rewardkit.recipes.config.backbone_recipe_defaults]);
3. a YAML file (``--config run.yaml``), nested like the dataclasses;
4. explicit flags (``--output-dir``, ``--epochs``, ...);
5. ``--set section.key=value`` overrides, the value parsed as YAML (``--set train.group_size=8``,
   ``--set rollout.train_steps=[1,2]``, ``--set optim.lr=1e-4``).

Every value is checked against its field's type, unknown keys are rejected with the valid ones
(and a close match) listed, and each config's ``validate()`` checks the ranges and the relations
between fields. Problems raise [`ConfigError`][rewardkit.recipes.config.ConfigError], whose
message names the key. YAML support needs PyYAML (imported only when a file or an override is
read).
"""

import dataclasses
import difflib
import hashlib
import importlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

from rewardkit.core.sde import Backend, Kind

__all__ = [
    "AdvantageConfig",
    "ConfigError",
    "DARConfig",
    "DataConfig",
    "EMAConfig",
    "EvalConfig",
    "GRPOConfig",
    "GRPOTrainConfig",
    "KLConfig",
    "LogConfig",
    "ModelConfig",
    "OptimConfig",
    "RewardSpec",
    "RolloutConfig",
    "SFTConfig",
    "SFTTrainConfig",
    "backbone_recipe_defaults",
    "config_fingerprint",
    "config_to_dict",
    "deep_merge",
    "load_config",
]

C = TypeVar("C")


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type, out-of-range or inconsistent values."""


# ----------------------------------------------------------------------------------------------
# sections shared by both recipes
# ----------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """The backbone and its LoRA adapter.

    Attributes:
        backbone: registry name (``rewardkit.list_backbones()``).
        path: local diffusers checkpoint directory or hub id (required).
        options: adapter options for ``load_backbone`` (``dtype``, ``autocast_dtype``,
            ``resolution``, ...). ``device`` defaults to this process's accelerator device.
        lora_rank: rank r of a fresh adapter.
        lora_alpha: scale numerator α (None: α = r).
        target_modules: module-name suffixes that get LoRA (None: the backbone's default).
        adapter: start from this adapter instead of a fresh one: an SFT output folder, an
            exported diffusers file's folder or a peft adapter folder.
        gradient_checkpointing: checkpoint transformer blocks in the training forward.
    """

    backbone: str = "qwen-image-edit-2511"
    path: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    lora_rank: int = 32
    lora_alpha: float | None = None
    target_modules: list[str] | None = None
    adapter: str | None = None
    gradient_checkpointing: bool = False


@dataclass
class DataConfig:
    """OmniRef-Bench-format data (``metadata.json`` with prompts, references and targets).

    Attributes:
        train: training split metadata file (required).
        eval: held-out split metadata file (SFT held-out loss, GRPO evaluation), or None.
        limit: use only the first ``limit`` training instances.
        eval_limit: use only the first ``eval_limit`` held-out instances.
        height: target height in pixels (None: the backbone's rule).
        width: target width in pixels (None: the backbone's rule).
        cache: keep loaded images and encoded conditions in memory after first use (fast for
            small splits; memory grows with the split).
    """

    train: str = ""
    eval: str | None = None
    limit: int | None = None
    eval_limit: int | None = 16
    height: int | None = None
    width: int | None = None
    cache: bool = False


@dataclass
class OptimConfig:
    """AdamW on the LoRA parameters, constant learning rate after an optional linear warm-up.

    Attributes:
        lr: learning rate.
        weight_decay: AdamW weight decay.
        betas: Adam betas.
        eps: Adam epsilon.
        max_grad_norm: gradient-norm clip (0 disables clipping).
        warmup_steps: linear warm-up over this many optimizer steps (0: none).
    """

    lr: float = 3e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    warmup_steps: int = 0


@dataclass
class LogConfig:
    """Outputs, checkpoints and metrics.

    Attributes:
        output_dir: run folder (checkpoints, exports, metrics, plots).
        save_every: checkpoint every this many epochs (GRPO) or optimizer steps (SFT);
            a checkpoint is always written at the end.
        keep: number of checkpoints kept (older ones are deleted).
        log_every: SFT: print the training loss every this many optimizer steps.
        progress: show tqdm progress bars (main process only).
        tensorboard: also write TensorBoard events (opt-in; needs ``pip install tensorboard``,
            a warning says so when it is missing).
        wandb: also log to Weights & Biases when ``wandb`` is installed (opt-in).
        wandb_project: W&B project name.
        plot: write the reward / loss curve PNG at the end (needs matplotlib).
        debug_tensors: write each rank's per-epoch advantages, DAR weights and adapter
            weights to ``output_dir/debug`` (for tests and debugging).
    """

    output_dir: str = "runs/rewardkit"
    save_every: int = 1
    keep: int = 2
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "rewardkit"
    plot: bool = True
    debug_tensors: bool = False


# ----------------------------------------------------------------------------------------------
# SFT
# ----------------------------------------------------------------------------------------------


@dataclass
class SFTTrainConfig:
    r"""Stage I: flow-matching loss on (prompt, references) → target pairs (docs: Training, Configuration).

    Attributes:
        epochs: passes over the training split.
        batch_size: instances per micro-batch and process.
        gradient_accumulation_steps: micro-batches per optimizer step.
        seed: seed of the data order, timesteps and noise.
        timestep_mu: $\mu$ of the exponentially shifted training grid (per-backbone default).
        timestep_shift_terminal: stretch the grid to end at this σ (None: no stretch).
        num_train_timesteps: size $T$ of the training grid.
        min_boundary: lowest grid index fraction drawn.
        max_boundary: highest grid index fraction drawn.
        weighting: ``"bell"`` (DiffSynth's bell-shaped timestep weights) or ``"uniform"``.
        eval_timesteps: fixed timesteps per held-out instance for the held-out loss.
        timesteps_per_instance: timesteps (each with its own noise) drawn per training instance,
            run as one batch through the backbone; the instance's loss is their mean. 1 is the
            reference recipe; more gives more samples per encoded condition at less than the
            proportional cost.
    """

    epochs: int = 6
    batch_size: int = 1
    gradient_accumulation_steps: int = 1
    seed: int = 0
    timestep_mu: float = 0.8
    timestep_shift_terminal: float | None = 0.02
    num_train_timesteps: int = 1000
    min_boundary: float = 0.0
    max_boundary: float = 1.0
    weighting: Literal["bell", "uniform"] = "bell"
    eval_timesteps: int = 4
    timesteps_per_instance: int = 1


@dataclass
class SFTConfig:
    """Everything ``rewardkit sft`` reads.

    Attributes:
        model: backbone and adapter.
        data: training and held-out splits.
        optim: optimizer.
        train: the SFT loop.
        log: outputs.
        extra_imports: modules imported first (e.g. to register custom rewards or backbones).
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.01))
    train: SFTTrainConfig = field(default_factory=SFTTrainConfig)
    log: LogConfig = field(default_factory=lambda: LogConfig(output_dir="runs/sft", save_every=500))
    extra_imports: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Check ranges and relations; raise [`ConfigError`][rewardkit.recipes.config.ConfigError]."""
        _common_checks(self.model, self.data, self.optim, self.log)
        t = self.train
        for name in ("epochs", "batch_size", "gradient_accumulation_steps", "num_train_timesteps"):
            _positive(f"train.{name}", getattr(t, name))
        _positive("train.eval_timesteps", t.eval_timesteps)
        _positive("train.timesteps_per_instance", t.timesteps_per_instance)
        if not 0.0 <= t.min_boundary < t.max_boundary <= 1.0:
            raise ConfigError(
                "need 0 <= train.min_boundary < train.max_boundary <= 1, got "
                f"{t.min_boundary}, {t.max_boundary}"
            )
        if t.timestep_shift_terminal is not None and not 0.0 < t.timestep_shift_terminal < 1.0:
            raise ConfigError(
                f"train.timestep_shift_terminal must be in (0, 1), got {t.timestep_shift_terminal}"
            )


# ----------------------------------------------------------------------------------------------
# GRPO
# ----------------------------------------------------------------------------------------------


@dataclass
class RewardSpec:
    """One reward of the reward set.

    Attributes:
        reward: registry name (``rewardkit.list_rewards()``).
        name: column name (DAR reads ``sim_raw`` from the column named in ``dar.reward``).
        weight: GDPO weight.
        options: keyword options of the reward builder.
    """

    reward: str = "siglip_similarity"
    name: str = ""
    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)


def _dyref_rewards() -> list[RewardSpec]:
    """DyRef's reward set: SigLIP2 ``flat`` similarity with DRS (1.0) and CSD style (0.8)."""
    return [
        RewardSpec(
            "siglip_similarity",
            "image_similarity",
            1.0,
            {"pretrained": "google/siglip2-base-patch16-384", "mode": "flat", "drs": True, "tau": 0.65},
        ),
        RewardSpec("csd_score", "csd_score", 0.8, {"weights": "CSD-ViT-L/pytorch_model.bin"}),
    ]


@dataclass
class GRPOTrainConfig:
    """The per-epoch schedule (docs: Training, *What one GRPO epoch does*).

    Attributes:
        epochs: number of epochs (one rollout phase and one single pass over it each).
        prompts_per_epoch: distinct (prompt, references) instances per epoch (all ranks).
        group_size: G rollouts per instance.
        gradient_step_per_epoch: optimizer steps per epoch; the epoch's samples are split into
            this many equal chunks (gradient accumulation over each chunk).
        per_device_batch_size: samples per training micro-batch (within one group).
        seed: seed of the data order, rollout noise and SDE window.
    """

    epochs: int = 30
    prompts_per_epoch: int = 24
    group_size: int = 24
    gradient_step_per_epoch: int = 2
    per_device_batch_size: int = 1
    seed: int = 42


@dataclass
class RolloutConfig:
    """Sampling with the SDE window (docs: SDE sampling and the fused log-prob).

    Attributes:
        num_steps: N sampling steps.
        kind: SDE dynamics at the window steps: ``flow_sde``, ``dance_sde``, ``cps``, ``ode``.
        noise_level: a at the window steps.
        train_steps: candidate window step indices (None: ``0 … N-2``).
        num_train_steps: window steps drawn per epoch.
        guidance_scale: CFG scale used in rollouts *and* the training forward (1: off).
        negative_prompt: negative prompt, required when guidance_scale > 1.
        micro_batch: split transformer calls into this many samples.
        backend: log-prob backend (``auto`` = fused; ``eager`` for comparison).
    """

    num_steps: int = 10
    kind: Kind = "flow_sde"
    noise_level: float = 1.0
    train_steps: list[int] | None = field(default_factory=lambda: [1, 2, 3])
    num_train_steps: int = 1
    guidance_scale: float = 1.0
    negative_prompt: str | None = None
    micro_batch: int | None = None
    backend: Backend = "auto"


@dataclass
class AdvantageConfig:
    r"""How rewards become advantages (on the gathered batch), and the policy loss.

    Attributes:
        estimator: a registered advantage estimator
            ([`list_advantages`][rewardkit.recipes.registry.list_advantages]): ``gdpo``
            (per-reward group z-scores, weighted, whitened), ``grpo`` (group z-score of the
            weighted sum), ``baseline`` (seed 003: $A = r - b$ with $b$ a moving average of the
            batch mean reward), or one added with
            [`register_advantage`][rewardkit.recipes.registry.register_advantage].
        policy_loss: a registered policy loss
            ([`list_policy_losses`][rewardkit.recipes.registry.list_policy_losses]): ``clipped``
            (the PPO-style clipped surrogate).
        clip: advantage clip $c$ (applied in the loss).
        clip_range: PPO ratio clip $\epsilon$.
        std_floor: lower bound of every std.
        ddof: 0 (Flow-Factory) or 1 (NVlabs GDPO).
        global_std: ``grpo`` only: one batch std instead of per-group stds.
        baseline_decay: ``baseline`` only: $b \leftarrow d\,b + (1-d)\,\bar r$.
        options: parameters of a custom estimator or policy loss (they read
            ``config.options``); the built-ins ignore them.
    """

    estimator: str = "gdpo"
    policy_loss: str = "clipped"
    clip: float = 5.0
    clip_range: float = 1e-4
    std_floor: float = 1e-6
    ddof: int = 0
    global_std: bool = False
    baseline_decay: float = 0.9
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class DARConfig:
    """Difficulty-aware reweighting of the loss (docs: The math, DAR).

    Attributes:
        enabled: weight each group's loss.
        reward: reward column whose ``sim_raw`` extra (else its score) is the difficulty.
        gamma: focusing exponent.
        w_min: lower weight bound.
        w_max: upper weight bound.
        eps: floor.
        reclip: clip again after normalising to mean 1.
    """

    enabled: bool = True
    reward: str = "image_similarity"
    gamma: float = 2.0
    w_min: float = 0.5
    w_max: float = 5.0
    eps: float = 1e-6
    reclip: bool = True


@dataclass
class KLConfig:
    """KL regulariser against a reference policy (docs: The math, KL regularisers).

    Attributes:
        beta: weight of the KL term (0 disables it and its extra forward).
        type: a registered KL form ([`list_kls`][rewardkit.recipes.registry.list_kls]): ``v``
            (Flow-Factory v-based), ``x`` (Flow-GRPO x-based), ``gaussian`` (exact), or one
            added with [`register_kl`][rewardkit.recipes.registry.register_kl].
        reference: ``rl_start`` (the policy when RL starts, e.g. the SFT adapter) or ``base``
            (the backbone without adapter).
        options: parameters of a custom KL form (it reads ``config.options``).
    """

    beta: float = 0.04
    type: str = "v"
    reference: Literal["rl_start", "base"] = "rl_start"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class EMAConfig:
    """EMA of the adapter weights, used for evaluation and export.

    Attributes:
        enabled: keep an EMA (otherwise the live weights are exported).
        decay: maximum decay; the decay of epoch e is ``min((1+e)/(10+e), decay)``.
        update_interval: update after every this many epochs.
    """

    enabled: bool = True
    decay: float = 0.9
    update_interval: int = 4


@dataclass
class EvalConfig:
    """Periodic evaluation of the EMA policy on ``data.eval`` (deterministic ODE sampling).

    Attributes:
        every: evaluate every this many epochs (0: never).
        num_steps: sampling steps.
        guidance_scale: CFG scale (reported with the results).
        negative_prompt: negative prompt for CFG.
        seed: noise seed.
    """

    every: int = 10
    num_steps: int = 20
    guidance_scale: float = 4.0
    negative_prompt: str | None = ""
    seed: int = 1


@dataclass
class GRPOConfig:
    """Everything ``rewardkit grpo`` reads.

    Attributes:
        model: backbone and adapter (``model.adapter`` = the SFT output for Stage II).
        data: training and evaluation splits.
        optim: optimizer.
        train: the per-epoch schedule.
        rollout: sampling.
        rewards: the reward set.
        advantage: advantage estimator and clips.
        dar: difficulty-aware reweighting.
        kl: KL regulariser.
        ema: EMA of the adapter.
        eval: periodic evaluation.
        log: outputs.
        extra_imports: modules imported first (e.g. to register custom rewards or backbones).
    """

    model: ModelConfig = field(default_factory=lambda: ModelConfig(lora_rank=64))
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: GRPOTrainConfig = field(default_factory=GRPOTrainConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    rewards: list[RewardSpec] = field(default_factory=_dyref_rewards)
    advantage: AdvantageConfig = field(default_factory=AdvantageConfig)
    dar: DARConfig = field(default_factory=DARConfig)
    kl: KLConfig = field(default_factory=KLConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=lambda: LogConfig(output_dir="runs/grpo"))
    extra_imports: list[str] = field(default_factory=list)

    def validate(self) -> None:
        """Check ranges and relations; raise [`ConfigError`][rewardkit.recipes.config.ConfigError]."""
        _common_checks(self.model, self.data, self.optim, self.log)
        t, r = self.train, self.rollout
        for name in ("epochs", "prompts_per_epoch", "gradient_step_per_epoch", "per_device_batch_size"):
            _positive(f"train.{name}", getattr(t, name))
        if t.group_size < 2 and self.advantage.estimator != "baseline":
            raise ConfigError(
                f"train.group_size must be >= 2 for group-relative advantages, got {t.group_size}"
            )
        _positive("rollout.num_steps", r.num_steps)
        _positive("rollout.num_train_steps", r.num_train_steps)
        if r.train_steps is not None and any(not 0 <= i < r.num_steps for i in r.train_steps):
            raise ConfigError(f"rollout.train_steps must lie in 0 … {r.num_steps - 1}, got {r.train_steps}")
        if r.train_steps is None and r.num_steps < 2:
            raise ConfigError("rollout.num_steps must be >= 2 when rollout.train_steps is null")
        for section, scale, negative in (
            ("rollout", r.guidance_scale, r.negative_prompt),
            ("eval", self.eval.guidance_scale, self.eval.negative_prompt),
        ):
            if scale > 1.0 and negative is None:
                raise ConfigError(
                    f"{section}.guidance_scale={scale} > 1 needs {section}.negative_prompt (e.g. '')"
                )
        if not self.rewards:
            raise ConfigError("rewards is empty; list at least one reward")
        names = [spec.name or spec.reward for spec in self.rewards]
        if len(set(names)) != len(names):
            raise ConfigError(f"reward names must be unique, got {names}")
        if self.dar.enabled and self.dar.reward not in names:
            raise ConfigError(
                f"dar.reward={self.dar.reward!r} is not a reward column {names}; name the similarity "
                "reward accordingly, set dar.reward, or set dar.enabled=false"
            )
        if self.advantage.clip <= 0 or not 0 < self.advantage.clip_range < 1:
            raise ConfigError(
                "need advantage.clip > 0 and 0 < advantage.clip_range < 1, got "
                f"{self.advantage.clip} and {self.advantage.clip_range}"
            )
        if not 0.0 <= self.advantage.baseline_decay < 1.0:
            raise ConfigError(
                f"advantage.baseline_decay must be in [0, 1), got {self.advantage.baseline_decay}"
            )
        if self.kl.beta < 0:
            raise ConfigError(f"kl.beta must be >= 0, got {self.kl.beta}")
        _check_registered(self)
        if not 0.0 <= self.ema.decay < 1.0:
            raise ConfigError(f"ema.decay must be in [0, 1), got {self.ema.decay}")
        _positive("ema.update_interval", self.ema.update_interval)
        if self.eval.every < 0:
            raise ConfigError(f"eval.every must be >= 0, got {self.eval.every}")
        _positive("eval.num_steps", self.eval.num_steps)


# ----------------------------------------------------------------------------------------------
# per-backbone defaults: owned by the plug-ins
# ----------------------------------------------------------------------------------------------


def backbone_recipe_defaults(recipe: str, backbone: str) -> Mapping[str, Any]:
    """The backbone plug-in's overrides of ``recipe``'s dataclass defaults (empty if none).

    Read from [`BackbonePlugin.recipe_defaults`][rewardkit.backbone.BackbonePlugin], so a
    third-party backbone ships its own tuning and the core holds none.

    Raises:
        ConfigError: ``backbone`` is not an installed backbone.
    """
    from rewardkit.backbone.registry import get_plugin

    try:
        plugin = get_plugin(backbone)
    except (KeyError, ValueError, TypeError) as err:
        raise ConfigError(f"model.backbone: {err}") from err
    return plugin.recipe_defaults.get(recipe, {})


# ----------------------------------------------------------------------------------------------
# checks
# ----------------------------------------------------------------------------------------------


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{name} must be >= 1, got {value}")


def _check_registered(config: "GRPOConfig") -> None:
    """The advantage estimator, policy loss and KL form name registered functions.

    The ``extra_imports`` are imported first: they may register them.
    """
    from rewardkit.recipes import registry  # it imports this module for the config types

    for module in config.extra_imports:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(f"extra_imports: cannot import {module!r}: {err}") from err
    for key, name, table in (
        ("advantage.estimator", config.advantage.estimator, registry.ADVANTAGES),
        ("advantage.policy_loss", config.advantage.policy_loss, registry.POLICY_LOSSES),
        ("kl.type", config.kl.type, registry.KLS),
    ):
        try:
            table.get(name)
        except ValueError as err:
            raise ConfigError(f"{key}: {err}") from None


def _common_checks(model: ModelConfig, data: DataConfig, optim: OptimConfig, log: LogConfig) -> None:
    if not model.path:
        raise ConfigError(
            "model.path is required: a local diffusers checkpoint directory or a hub id (for a tiny "
            'offline one: python -c "import rewardkit; '
            "rewardkit.make_tiny_checkpoint('flux2-klein', 'tiny')\")"
        )
    if not data.train:
        raise ConfigError("data.train is required: an OmniRef-Bench-format metadata.json")
    _positive("model.lora_rank", model.lora_rank)
    if optim.lr <= 0 or optim.eps <= 0 or optim.weight_decay < 0 or optim.max_grad_norm < 0:
        raise ConfigError(
            "need optim.lr > 0, optim.eps > 0, optim.weight_decay >= 0 and optim.max_grad_norm >= 0, "
            f"got {optim}"
        )
    if not all(0.0 <= b < 1.0 for b in optim.betas):
        raise ConfigError(f"optim.betas must lie in [0, 1), got {optim.betas}")
    if optim.warmup_steps < 0:
        raise ConfigError(f"optim.warmup_steps must be >= 0, got {optim.warmup_steps}")
    _positive("log.save_every", log.save_every)
    _positive("log.keep", log.keep)
    _positive("log.log_every", log.log_every)
    for name in ("limit", "eval_limit", "height", "width"):
        value = getattr(data, name)
        if value is not None:
            _positive(f"data.{name}", value)
    if (data.height is None) != (data.width is None):
        raise ConfigError("set both data.height and data.width, or neither")


# ----------------------------------------------------------------------------------------------
# building a dataclass from nested dicts, with type checks
# ----------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked (and minimally coerced) against the annotation ``tp``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} does not fit {_type_name(tp)}"
        )
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{where}: must be one of {list(choices)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return _build(tp, value, where)
    if origin in (list, tuple):
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {list(value)!r}")
            return tuple(
                _convert(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        return [_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if tp is float:
        # PyYAML reads 1e-4 (no dot) as a string; accept numeric strings.
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {_type_name(tp)}")  # pragma: no cover


def _build(cls: type[C], data: Mapping[str, Any], where: str = "") -> C:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = [k for k in data if k not in names]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        section = f"under {where!r}" if where else "at the top level"
        raise ConfigError(
            f"unknown key {f'{where}.{key}' if where else key!r}{hint}; valid keys {section}: {names}"
        )
    kwargs = {k: _convert(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    return cls(**kwargs)


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``update`` merged into a copy of ``base``: nested mappings merge, other values replace.

    Example:
        >>> deep_merge({"train": {"epochs": 6, "seed": 0}}, {"train": {"epochs": 2}})
        {'train': {'epochs': 2, 'seed': 0}}
    """
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> dict[str, Any]:
    """``"a.b=value"`` → ``{"a": {"b": yaml(value)}}``."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like section.key=value (e.g. train.group_size=8)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({err})") from err
    nested: dict[str, Any] = {}
    parts = key.strip().split(".")
    cursor = nested
    for part in parts[:-1]:
        cursor = cursor.setdefault(part, {})
    cursor[parts[-1]] = value
    return nested


def _read_yaml(path: str | Path) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"config file {str(file)!r} does not exist")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{file} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file} must hold a mapping of config sections, got {type(data).__name__}")
    return data


def load_config(
    cls: type[C],
    *,
    recipe: Literal["sft", "grpo"],
    path: str | Path | None = None,
    values: Mapping[str, Any] | None = None,
    overrides: Sequence[str] = (),
) -> C:
    """Resolve a recipe config: defaults ← backbone defaults ← YAML ← ``values`` ← overrides.

    Args:
        cls: [`SFTConfig`][rewardkit.recipes.config.SFTConfig] or
            [`GRPOConfig`][rewardkit.recipes.config.GRPOConfig].
        recipe: ``"sft"`` or ``"grpo"`` (selects the per-backbone defaults).
        path: optional YAML file.
        values: nested values from explicit flags (e.g. ``{"log": {"output_dir": "runs/a"}}``).
        overrides: ``section.key=value`` strings (values parsed as YAML).

    Returns:
        The validated config.

    Raises:
        ConfigError: unknown key, wrong type, invalid value.

    Example:
        >>> cfg = load_config(GRPOConfig, recipe="grpo", values={"model": {"backbone": "flux2-klein",
        ...     "path": "tiny"}, "data": {"train": "m.json"}}, overrides=["train.group_size=8"])
        >>> cfg.train.group_size, cfg.model.lora_rank
        (8, 32)
    """
    raw: dict[str, Any] = _read_yaml(path) if path is not None else {}
    raw = deep_merge(raw, values or {})
    for text in overrides:
        raw = deep_merge(raw, _parse_override(text))
    model = raw.get("model", {})
    backbone = model.get("backbone") if isinstance(model, Mapping) else None
    if backbone is None:
        backbone = ModelConfig.backbone
    merged = deep_merge(dict(backbone_recipe_defaults(recipe, str(backbone))), raw)
    defaults = config_to_dict(cls())
    config = _build(cls, deep_merge(defaults, merged))
    validate = getattr(config, "validate", None)
    if validate is not None:
        validate()
    return config


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts and lists (YAML/JSON-ready)."""
    out: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(config)))
    return out


def config_fingerprint(config: Any, *, ignore: Sequence[str] = ()) -> str:
    """SHA-256 (16 hex digits) of the config, without the dotted keys in ``ignore``.

    Used to refuse resuming a checkpoint written with a different configuration.
    """
    data = config_to_dict(config)
    for dotted in ignore:
        parts = dotted.split(".")
        cursor: Any = data
        for part in parts[:-1]:
            cursor = cursor.get(part, {}) if isinstance(cursor, dict) else {}
        if isinstance(cursor, dict):
            cursor.pop(parts[-1], None)
    text = json.dumps(data, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
