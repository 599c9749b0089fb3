"""The RL pieces of the GRPO recipe are registered by name: estimators, policy losses, KL forms.

``centred`` below is an advantage estimator defined outside the package, exactly as the Training
docs show: one function and one ``register_advantage`` line, selected from the YAML config.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor

from rewardkit import kl_gaussian, kl_v_based, kl_x_based
from rewardkit.core.baseline import BaselineState
from rewardkit.core.loss import PolicyLossStats
from rewardkit.core.sde import sde_coefficients
from rewardkit.recipes.config import AdvantageConfig, ConfigError, GRPOConfig, KLConfig, load_config
from rewardkit.recipes.grpo import advantages_and_weights, train
from rewardkit.recipes.registry import (
    ADVANTAGES,
    KLS,
    POLICY_LOSSES,
    AdvantageInputs,
    AdvantageResult,
    KLInputs,
    PolicyLossInputs,
    clipped_loss,
    get_advantage,
    get_kl,
    get_policy_loss,
    list_advantages,
    list_kls,
    list_policy_losses,
    register_advantage,
    register_kl,
    register_policy_loss,
)
from tests.recipes.conftest import grpo_config, write_yaml

REQUIRED = {"model": {"path": "ckpt"}, "data": {"train": "m.json"}, "rewards": [{"reward": "r", "name": "sim"}],
            "dar": {"reward": "sim"}}  # fmt: skip

RETURNED: list[Tensor] = []  # what ``centred`` returned, call by call


# -- the docs' example: one function ... ----------------------------------------------------------
def centred(inputs: AdvantageInputs, config: AdvantageConfig) -> AdvantageResult:
    """The weighted reward minus its group's mean (no std division), times ``options.scale``."""
    total = inputs.rewards @ inputs.weights
    sums = total.new_zeros(int(inputs.groups.max()) + 1).index_add(0, inputs.groups, total)
    means = sums / inputs.groups.bincount()
    scale = float(config.options.get("scale", 1.0))
    result = AdvantageResult(scale * (total - means[inputs.groups]), inputs.baseline)
    RETURNED.append(result.advantages)
    return result


@pytest.fixture
def with_centred() -> Iterator[None]:
    # ... and one registration (taken out again so that other tests see the built-ins only)
    register_advantage("centred", centred)
    RETURNED.clear()
    yield
    ADVANTAGES.unregister("centred")


def _config(tmp_path: Path, raw: dict) -> GRPOConfig:
    return load_config(GRPOConfig, recipe="grpo", path=write_yaml(raw, tmp_path / "grpo.yaml"))


def test_the_builtins_are_registered_under_their_config_names() -> None:
    assert {"gdpo", "grpo", "baseline"} <= set(list_advantages())
    assert "clipped" in list_policy_losses() and {"v", "x", "gaussian"} <= set(list_kls())
    assert get_policy_loss("clipped") is clipped_loss
    defaults = GRPOConfig()
    assert (defaults.advantage.estimator, defaults.advantage.policy_loss, defaults.kl.type) == (
        "gdpo",
        "clipped",
        "v",
    )
    assert defaults.advantage.options == {} and defaults.kl.options == {}


def test_unknown_names_list_the_registered_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown advantage estimator 'gdp' \(did you mean 'gdpo'\?\); "
                                         r"registered: \['baseline', 'gdpo', 'grpo'\]"):  # fmt: skip
        get_advantage("gdp")
    with pytest.raises(ValueError, match="register_kl"):
        get_kl("w")
    for section, key, message in (
        ("advantage", "estimator", r"advantage.estimator: unknown advantage estimator 'nope'.*'gdpo'"),
        ("advantage", "policy_loss", r"advantage.policy_loss: unknown policy loss 'ppo'.*\['clipped'"),
        ("kl", "type", r"kl.type: unknown KL form 'z'.*'gaussian', 'v', 'x'"),
    ):
        name = message.split("'")[1]
        with pytest.raises(ConfigError, match=message):
            _config(tmp_path, {**REQUIRED, section: {key: name}})


def test_a_taken_name_is_refused(with_centred: None) -> None:
    with pytest.raises(ValueError, match="'gdpo' is already registered"):
        register_advantage("gdpo", centred)
    with pytest.raises(ValueError, match="'clipped' is already registered"):
        register_policy_loss("clipped", lambda inputs, config: clipped_loss(inputs, config))
    with pytest.raises(ValueError, match="'v' is already registered"):
        register_kl("v", lambda inputs, config: inputs.velocity.sum())
    assert register_advantage("centred", centred) is centred  # the same function again: no change
    with pytest.raises(ValueError, match="non-empty string"):
        register_advantage("", centred)


def test_a_custom_estimator_takes_its_options_from_yaml(tmp_path: Path, with_centred: None) -> None:
    config = _config(tmp_path, {**REQUIRED, "advantage": {"estimator": "centred", "options": {"scale": 2}}})
    rewards, groups = torch.tensor([[0.1], [0.3], [0.6], [0.8]]), torch.tensor([0, 0, 1, 1])
    adv, _, state = advantages_and_weights(
        config, rewards, torch.ones(1), groups, rewards[:, 0], BaselineState()
    )
    torch.testing.assert_close(adv, torch.tensor([-0.2, 0.2, -0.2, 0.2]))
    assert state == BaselineState()


def test_an_estimator_of_the_wrong_shape_is_refused(tmp_path: Path) -> None:
    register_advantage("one_value", lambda inputs, config: AdvantageResult(torch.zeros(1), inputs.baseline))
    try:
        config = _config(tmp_path, {**REQUIRED, "advantage": {"estimator": "one_value"}})
        with pytest.raises(ValueError, match=r"'one_value' must return \(2,\) advantages, got \(1,\)"):
            advantages_and_weights(config, torch.ones(2, 1), torch.ones(1), torch.tensor([0, 0]),
                                   torch.ones(2), BaselineState())  # fmt: skip
    finally:
        ADVANTAGES.unregister("one_value")


def test_the_builtin_kl_forms_are_the_core_functions() -> None:
    gen = torch.Generator().manual_seed(0)
    v, ref_v, x = (torch.randn(3, 4, 5, generator=gen) for _ in range(3))
    coef = sde_coefficients(0.8, 0.6, kind="flow_sde", noise_level=1.0, sigma_max=0.9)
    sigma_t = float(coef.std) / 0.2**0.5
    inputs, config = KLInputs(v, ref_v, x, coef, sigma_t), KLConfig()
    mean, ref_mean = coef.c_x * x + coef.c_v * v, coef.c_x * x + coef.c_v * ref_v
    assert torch.equal(get_kl("v")(inputs, config), kl_v_based(v, ref_v, sigma_t))
    assert torch.equal(get_kl("x")(inputs, config), kl_x_based(mean, ref_mean, sigma_t))
    assert torch.equal(get_kl("gaussian")(inputs, config), kl_gaussian(mean, ref_mean, float(coef.std)))


def test_grpo_trains_with_an_estimator_from_outside_the_package(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path, with_centred: None
) -> None:
    out = tmp_path / "run"
    raw = grpo_config(tiny, data, out, advantage={"estimator": "centred", "options": {"scale": 0.5},
                                                  "clip_range": 0.5}, log={"debug_tensors": True})  # fmt: skip
    (record,) = train(_config(tmp_path, raw)).history

    assert len(RETURNED) == 1  # one epoch, one call on the whole gathered batch
    debug = load_file(str(out / "debug" / "epoch0_rank0.safetensors"))
    # the loop trained on exactly what the estimator returned (per sample id) ...
    torch.testing.assert_close(debug["advantages"], RETURNED[0][debug["sample_ids"]], rtol=0, atol=0)
    # ... which is the docs' formula with the YAML option scale = 0.5
    order = torch.argsort(debug["sample_ids"])
    r = debug["rewards"][order, 0].reshape(2, 4)
    torch.testing.assert_close(RETURNED[0], (0.5 * (r - r.mean(1, keepdim=True))).flatten())
    assert abs(record["adv/mean"]) < 1e-6 and record["adv/std"] > 0 and record["grad_norm"] > 0


def test_a_custom_policy_loss_and_kl_form_are_used(
    tiny: dict[str, Path], data: dict[str, Path], tmp_path: Path
) -> None:
    """Zero advantages through a recording policy loss; a constant KL form: the loss is β·KL."""
    seen: list[str] = []

    def zero_advantages(inputs: PolicyLossInputs, config: AdvantageConfig) -> tuple[Tensor, PolicyLossStats]:
        seen.append("loss")
        return clipped_loss(
            PolicyLossInputs(inputs.log_prob, inputs.old_log_prob, 0 * inputs.advantages, inputs.weights),
            config,
        )

    def constant_kl(inputs: KLInputs, config: KLConfig) -> Tensor:
        seen.append("kl")
        return inputs.velocity.new_full((inputs.velocity.shape[0],), float(config.options["value"]))

    register_policy_loss("zero_advantages", zero_advantages)
    register_kl("constant", constant_kl)
    try:
        raw = grpo_config(tiny, data, tmp_path / "run", advantage={"policy_loss": "zero_advantages", "clip_range": 0.5},
                          kl={"beta": 0.5, "type": "constant", "options": {"value": 3.0}})  # fmt: skip
        (record,) = train(_config(tmp_path, raw)).history
    finally:
        POLICY_LOSSES.unregister("zero_advantages")
        KLS.unregister("constant")
    # 2 prompts × 4 samples in one micro-batch each, 3 trained steps: 6 calls of each
    assert seen.count("loss") == seen.count("kl") == 6
    assert record["kl"] == 3.0 and record["loss"] == pytest.approx(1.5)  # 0 + β·KL
    assert record["grad_norm"] == 0.0  # zero advantages and a constant KL: no gradient
