"""Rewards on CUDA: generated images on the GPU, references on the CPU (runs where a GPU is present).

The GRPO recipe hands the reward set images decoded on the GPU, while the dataset's
references stay on the CPU; the encoders must bring both to one device and score what the CPU
scores.
"""

import copy

import pytest
import torch

import rewardkit
from rewardkit.rewards import RewardSet, tiny_encoder_config
from rewardkit.rewards.encoders import TorchImageEncoder
from tests.rewards.helpers import smooth_image

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

IMAGES = [smooth_image(i, size=40) for i in range(4)]


def test_encoder_on_cuda_takes_mixed_device_images_and_matches_cpu() -> None:
    cpu = rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), mode="flat", device="cpu")
    gpu = TorchImageEncoder(
        cpu.name, copy.deepcopy(cpu.module), cpu.preprocess, cpu.features, batch_size=3, device="cuda"
    )
    mixed = [im.cuda() if i % 2 else im for i, im in enumerate(IMAGES)]
    feats = gpu.encode(mixed)
    assert feats.device.type == "cuda"
    torch.testing.assert_close(feats.cpu(), cpu.encode(IMAGES), atol=1e-4, rtol=1e-4)


def test_offline_reward_set_scores_cuda_images_against_cpu_references() -> None:
    specs = [
        {"reward": "offline_similarity", "name": "sim", "options": {"drs": True, "image_size": 64}},
        {"reward": "offline_style", "name": "style", "weight": 0.8, "options": {"image_size": 64}},
    ]
    contexts = [
        rewardkit.SampleContext(
            references=(rewardkit.Reference(IMAGES[(i + 1) % 4], "style"),), targets=(IMAGES[(i + 2) % 4],)
        )
        for i in range(4)
    ]
    on = lambda device: RewardSet.from_specs(  # noqa: E731
        [{**s, "options": {**s["options"], "device": device}} for s in specs]
    )
    generated = torch.stack(IMAGES)
    out_gpu = on("cuda")(generated.cuda(), contexts)
    out_cpu = on("cpu")(generated, contexts)
    assert out_gpu.rewards.shape == (4, 2) and bool(out_gpu.rewards.isfinite().all())
    torch.testing.assert_close(out_gpu.rewards, out_cpu.rewards, atol=1e-3, rtol=1e-3)
