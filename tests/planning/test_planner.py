"""plan_memory on a real config (meta device only) and its argument checks."""

import pytest

from rewardkit.planning.memory import GIB
from rewardkit.planning.planner import plan_memory

pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def klein4b():
    return plan_memory("flux2-klein", variant="klein-4b", resolution=1024, references=3, lora_rank=64)


def test_real_klein_4b_rows(klein4b) -> None:
    r = klein4b
    assert r.transformer_params == 3_875_544_576
    assert r.text_encoder_params == 4_022_468_096
    assert r.shape.text_tokens == 512
    rows = {(row.strategy, row.checkpointing): row for row in r.rows}
    assert set(rows) == {("DDP", False), ("DDP", True), ("FSDP", False), ("FSDP", True)}
    ddp, fsdp = rows["DDP", False].estimate, rows["FSDP", False].estimate
    assert ddp.weights == 2 * r.transformer_params
    assert fsdp.weights == -(-2 * r.transformer_params // 8)
    assert fsdp.fsdp_gather == 4 * r.largest_block_params and ddp.fsdp_gather == 0
    # LoRA state is replicated under FSDP: the same bytes in every row.
    assert len({row.estimate.lora for row in r.rows}) == 1
    assert ddp.lora == 20 * r.lora_params
    # Checkpointing keeps far less; FSDP fits at least as much as DDP.
    assert rows["DDP", True].estimate.activations_per_sample < ddp.activations_per_sample / 4
    assert rows["FSDP", True].max_micro_batch >= rows["DDP", True].max_micro_batch >= 1
    for row in r.rows:
        m = row.max_micro_batch
        assert row.estimate.total(m + 1) > r.gpu_memory
        assert m == 0 or row.estimate.total(m) <= r.gpu_memory


def test_real_klein_4b_rollout_rows(klein4b) -> None:
    r = klein4b
    rows = {row.strategy: row for row in r.rollout_rows}
    assert set(rows) == {"DDP", "FSDP"}
    train = {(row.strategy, row.checkpointing): row.estimate for row in r.rows}
    for strategy, row in rows.items():
        e = row.estimate
        # The same base, gather and frozen components as training; no gradients in the LoRA state.
        assert (e.weights, e.fsdp_gather, e.frozen_components) == (
            train[strategy, True].weights, train[strategy, True].fsdp_gather, train[strategy, True].frozen_components
        )  # fmt: skip
        assert e.lora == 12 * r.lora_params
        assert e.activations_per_sample == r.sampling_peak and e.transient_per_sample == 0
        assert row.max_micro_batch >= 1 and not row.checkpointing
        assert e.total(row.max_micro_batch + 1) > r.gpu_memory >= e.total(row.max_micro_batch)
    # Sampling keeps no activations: it fits more samples per forward than a checkpointed step.
    assert r.sampling_peak < train["FSDP", True].activations_per_sample
    assert rows["FSDP"].max_micro_batch > next(
        row.max_micro_batch for row in r.rows if row.strategy == "FSDP" and row.checkpointing
    )


def test_offloading_the_text_encoder_frees_its_bytes(klein4b) -> None:
    cpu = plan_memory("flux2-klein", variant="klein-4b", text_encoder_on_gpu=False, gpu_memory_gib=80)
    on, off = klein4b.rows[0].estimate, cpu.rows[0].estimate
    assert on.frozen_components - off.frozen_components == 2 * klein4b.text_encoder_params
    assert cpu.gpu_memory == 80 * GIB


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"resolution": 1000}, "resolution"),
        ({"reference_size": 8}, "reference_size"),
        ({"variant": "klein-99b"}, "variant"),
        ({"dtype": "int8"}, "dtype"),
        ({"processes": 0}, "processes"),
        ({"gpu_memory_gib": -1.0}, "gpu_memory_gib"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        plan_memory("flux2-klein", **kwargs)
