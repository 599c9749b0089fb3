r"""The schema of the recipe configs: pydantic models, their ranges and the relations between fields.

[`SFTConfig`][rewardkit.recipes.config.SFTConfig] and
[`GRPOConfig`][rewardkit.recipes.config.GRPOConfig] are pydantic models (the ``backbones``
extra installs pydantic; the core does not need it). Unknown keys are refused, numbers are
range-checked (and must be finite where a finite number is meant), and each model's
validators check the relations between its fields. ``rewardkit config-schema sft|grpo`` prints
the JSON Schema, for editor completion of the YAML files.

Resolving a config from the defaults, the backbone's defaults, a YAML file, flags and ``--set``
overrides, and reporting all its problems at once, is
[`rewardkit.recipes.config_loading`][rewardkit.recipes.config_loading]'s job; its
[`load_config`][rewardkit.recipes.config_loading.load_config],
[`ConfigError`][rewardkit.recipes.config_loading.ConfigError],
[`config_to_dict`][rewardkit.recipes.config_loading.config_to_dict] and
[`config_fingerprint`][rewardkit.recipes.config_loading.config_fingerprint] are importable from
here too.
"""

import inspect
import re
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    field_validator,
    model_validator,
)

from rewardkit.core.sde import Backend, Kind
from rewardkit.recipes.config_loading import (
    ConfigError,
    backbone_recipe_defaults,
    config_fingerprint,
    config_to_dict,
    deep_merge,
    load_config,
)

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

_ATTRIBUTE = re.compile(r"^(\w+):\s*(.*)$")

#: An Adam beta.
_Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


def _attribute_docs(schema: dict[str, Any], cls: type) -> None:
    """The JSON Schema's descriptions: the docstring's summary, and its ``Attributes:`` lines per field."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    summary, _, attributes = doc.partition("\nAttributes:\n")
    schema["description"] = summary.strip()
    described: dict[str, list[str]] = {}
    name = None
    for line in attributes.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            break  # the next docstring section
        match = _ATTRIBUTE.match(line.strip())
        if match is not None and len(line) - len(line.lstrip()) == 4:
            name = match[1]
            described[name] = [match[2]]
        elif name is not None:
            described[name].append(line.strip())
    for key, prop in schema.get("properties", {}).items():
        if key in described:
            prop["description"] = " ".join(described[key])


class _Section(BaseModel):
    """Shared model settings: unknown keys refused, assignments validated, no NaN or inf."""

    model_config = ConfigDict(
        extra="forbid", validate_assignment=True, allow_inf_nan=False, json_schema_extra=_attribute_docs
    )


def _check(problems: list[str]) -> None:
    """Raise the problems of a cross-field check (``key: message``, keys relative to the model)."""
    if problems:
        raise ConfigError(*problems)


def _needs_negative(scale: float, negative: str | None) -> list[str]:
    if scale > 1.0 and negative is None:
        return [f"guidance_scale: {scale} > 1 needs a negative_prompt (e.g. '')"]
    return []


# ----------------------------------------------------------------------------------------------
# sections shared by both recipes
# ----------------------------------------------------------------------------------------------


class ModelConfig(_Section):
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
    options: dict[str, Any] = Field(default_factory=dict)
    lora_rank: PositiveInt = 32
    lora_alpha: float | None = None
    target_modules: list[str] | None = None
    adapter: str | None = None
    gradient_checkpointing: bool = False


class DataConfig(_Section):
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
    limit: PositiveInt | None = None
    eval_limit: PositiveInt | None = 16
    height: PositiveInt | None = None
    width: PositiveInt | None = None
    cache: bool = False

    @model_validator(mode="after")
    def _both_sizes_or_neither(self) -> Self:
        if (self.height is None) != (self.width is None):
            raise ConfigError("height: set both height and width, or neither")
        return self


class OptimConfig(_Section):
    """AdamW on the LoRA parameters, constant learning rate after an optional linear warm-up.

    Attributes:
        lr: learning rate.
        weight_decay: AdamW weight decay.
        betas: Adam betas.
        eps: Adam epsilon.
        max_grad_norm: gradient-norm clip (0 disables clipping).
        warmup_steps: linear warm-up over this many optimizer steps (0: none).
    """

    lr: PositiveFloat = 3e-4
    weight_decay: NonNegativeFloat = 1e-4
    betas: tuple[_Beta, _Beta] = (0.9, 0.999)
    eps: PositiveFloat = 1e-8
    max_grad_norm: NonNegativeFloat = 1.0
    warmup_steps: NonNegativeInt = 0


class LogConfig(_Section):
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
    save_every: PositiveInt = 1
    keep: PositiveInt = 2
    log_every: PositiveInt = 10
    progress: bool = True
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "rewardkit"
    plot: bool = True
    debug_tensors: bool = False


# ----------------------------------------------------------------------------------------------
# SFT
# ----------------------------------------------------------------------------------------------


class SFTTrainConfig(_Section):
    r"""Stage I: flow-matching loss on (prompt, references) → target pairs (docs: Training, Configuration).

    Attributes:
        epochs: passes over the training split.
        batch_size: instances per micro-batch and process.
        gradient_accumulation_steps: micro-batches per optimizer step.
        global_batch_size: instances per optimizer step over all processes, or None. When set,
            the accumulation is derived, ``global_batch_size / (processes × batch_size)``, so the
            run does not depend on the number of processes and its checkpoints resume on any
            count that divides it (leave ``gradient_accumulation_steps`` at 1).
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

    epochs: PositiveInt = 6
    batch_size: PositiveInt = 1
    gradient_accumulation_steps: PositiveInt = 1
    global_batch_size: PositiveInt | None = None
    seed: int = 0
    timestep_mu: float = 0.8
    timestep_shift_terminal: Annotated[float, Field(gt=0.0, lt=1.0)] | None = 0.02
    num_train_timesteps: PositiveInt = 1000
    min_boundary: float = Field(default=0.0, ge=0.0, le=1.0)
    max_boundary: float = Field(default=1.0, ge=0.0, le=1.0)
    weighting: Literal["bell", "uniform"] = "bell"
    eval_timesteps: PositiveInt = 4
    timesteps_per_instance: PositiveInt = 1

    @model_validator(mode="after")
    def _boundaries_in_order(self) -> Self:
        if self.min_boundary >= self.max_boundary:
            raise ConfigError(
                f"min_boundary: must be below max_boundary, got {self.min_boundary} >= {self.max_boundary}"
            )
        return self


class SFTConfig(_Section):
    """Everything ``rewardkit sft`` reads.

    Attributes:
        model: backbone and adapter.
        data: training and held-out splits.
        optim: optimizer.
        train: the SFT loop.
        log: outputs.
        extra_imports: modules imported first (e.g. to register custom rewards or backbones).
    """

    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.01))
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
    log: LogConfig = Field(default_factory=lambda: LogConfig(output_dir="runs/sft", save_every=500))
    extra_imports: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# GRPO
# ----------------------------------------------------------------------------------------------


class RewardSpec(_Section):
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
    options: dict[str, Any] = Field(default_factory=dict)


def _dyref_rewards() -> list[RewardSpec]:
    """DyRef's reward set: SigLIP2 ``flat`` similarity with DRS (1.0) and CSD style (0.8)."""
    return [
        RewardSpec(
            reward="siglip_similarity",
            name="image_similarity",
            weight=1.0,
            options={
                "pretrained": "google/siglip2-base-patch16-384",
                "mode": "flat",
                "drs": True,
                "tau": 0.65,
            },
        ),
        RewardSpec(
            reward="csd_score",
            name="csd_score",
            weight=0.8,
            options={"weights": "CSD-ViT-L/pytorch_model.bin"},
        ),
    ]


class GRPOTrainConfig(_Section):
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

    epochs: PositiveInt = 30
    prompts_per_epoch: PositiveInt = 24
    group_size: PositiveInt = 24
    gradient_step_per_epoch: PositiveInt = 2
    per_device_batch_size: PositiveInt = 1
    seed: int = 42


class RolloutConfig(_Section):
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

    num_steps: PositiveInt = 10
    kind: Kind = "flow_sde"
    noise_level: float = 1.0
    train_steps: list[NonNegativeInt] | None = Field(default_factory=lambda: [1, 2, 3])
    num_train_steps: PositiveInt = 1
    guidance_scale: float = 1.0
    negative_prompt: str | None = None
    micro_batch: PositiveInt | None = None
    backend: Backend = "auto"

    @model_validator(mode="after")
    def _window_and_guidance(self) -> Self:
        problems = _needs_negative(self.guidance_scale, self.negative_prompt)
        if self.train_steps is not None and any(i >= self.num_steps for i in self.train_steps):
            problems.append(f"train_steps: must lie in 0 … {self.num_steps - 1}, got {self.train_steps}")
        if self.train_steps is None and self.num_steps < 2:
            problems.append(f"num_steps: must be >= 2 when train_steps is null, got {self.num_steps}")
        _check(problems)
        return self


class AdvantageConfig(_Section):
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
    clip: PositiveFloat = 5.0
    clip_range: float = Field(default=1e-4, gt=0.0, lt=1.0)
    std_floor: float = 1e-6
    ddof: NonNegativeInt = 0
    global_std: bool = False
    baseline_decay: float = Field(default=0.9, ge=0.0, lt=1.0)
    options: dict[str, Any] = Field(default_factory=dict)


class DARConfig(_Section):
    """Difficulty-aware reweighting of the loss (docs: The math, DAR).

    Attributes:
        enabled: weight each group's loss.
        reward: reward column whose ``sim_raw`` extra (else its score) is the difficulty.
        gamma: focusing exponent.
        w_min: lower weight bound.
        w_max: upper weight bound (``.inf`` in YAML: none).
        eps: floor.
        reclip: clip again after normalising to mean 1.
    """

    enabled: bool = True
    reward: str = "image_similarity"
    gamma: NonNegativeFloat = 2.0
    w_min: NonNegativeFloat = 0.5
    w_max: float = Field(default=5.0, ge=0.0, allow_inf_nan=True)  # inf: no upper bound; NaN fails ge
    eps: PositiveFloat = 1e-6
    reclip: bool = True

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Self:
        if self.w_min > self.w_max:
            raise ConfigError(f"w_min: must be <= w_max, got {self.w_min} > {self.w_max}")
        return self


class KLConfig(_Section):
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

    beta: NonNegativeFloat = 0.04
    type: str = "v"
    reference: Literal["rl_start", "base"] = "rl_start"
    options: dict[str, Any] = Field(default_factory=dict)


class EMAConfig(_Section):
    """EMA of the adapter weights, used for evaluation and export.

    Attributes:
        enabled: keep an EMA (otherwise the live weights are exported).
        decay: maximum decay; the decay of epoch e is ``min((1+e)/(10+e), decay)``.
        update_interval: update after every this many epochs.
    """

    enabled: bool = True
    decay: float = Field(default=0.9, ge=0.0, lt=1.0)
    update_interval: PositiveInt = 4


class EvalConfig(_Section):
    """Periodic evaluation of the EMA policy on ``data.eval`` (deterministic ODE sampling).

    Attributes:
        every: evaluate every this many epochs (0: never).
        num_steps: sampling steps.
        guidance_scale: CFG scale (reported with the results).
        negative_prompt: negative prompt for CFG.
        seed: noise seed.
    """

    every: NonNegativeInt = 10
    num_steps: PositiveInt = 20
    guidance_scale: float = 4.0
    negative_prompt: str | None = ""
    seed: int = 1

    @model_validator(mode="after")
    def _guidance(self) -> Self:
        _check(_needs_negative(self.guidance_scale, self.negative_prompt))
        return self


class GRPOConfig(_Section):
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

    model: ModelConfig = Field(default_factory=lambda: ModelConfig(lora_rank=64))
    data: DataConfig = Field(default_factory=DataConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: GRPOTrainConfig = Field(default_factory=GRPOTrainConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    rewards: list[RewardSpec] = Field(default_factory=_dyref_rewards, min_length=1)
    advantage: AdvantageConfig = Field(default_factory=AdvantageConfig)
    dar: DARConfig = Field(default_factory=DARConfig)
    kl: KLConfig = Field(default_factory=KLConfig)
    ema: EMAConfig = Field(default_factory=EMAConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=lambda: LogConfig(output_dir="runs/grpo"))
    extra_imports: list[str] = Field(default_factory=list)

    @field_validator("rewards")
    @classmethod
    def _unique_names(cls, rewards: list[RewardSpec]) -> list[RewardSpec]:
        names = [spec.name or spec.reward for spec in rewards]
        if len(set(names)) != len(names):
            raise ValueError(f"reward names must be unique, got {names}")
        return rewards

    @model_validator(mode="after")
    def _sections_agree(self) -> Self:
        problems = []
        if self.train.group_size < 2 and self.advantage.estimator != "baseline":
            problems.append(
                f"train.group_size: must be >= 2 for group-relative advantages (advantage.estimator "
                f"{self.advantage.estimator!r}), got {self.train.group_size}"
            )
        names = [spec.name or spec.reward for spec in self.rewards]
        if self.dar.enabled and self.dar.reward not in names:
            problems.append(
                f"dar.reward: {self.dar.reward!r} is not a reward column {names}; name the similarity "
                "reward accordingly, set dar.reward, or set dar.enabled=false"
            )
        _check(problems)
        return self
