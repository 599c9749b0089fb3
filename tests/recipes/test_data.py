"""recipes/_data.py: splits opened as examples, and conditions / latents encoded once when cached."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from rewardkit.data.omniref_mini import write_omniref_mini
from rewardkit.recipes._data import EncodedSplit, load_example, load_split, pil_to_tensor
from rewardkit.recipes.config import ConfigError, DataConfig


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    root = tmp_path_factory.mktemp("omniref")
    write_omniref_mini(root, n_train=3, n_test=1, seed=0, size=32)
    return root / "train" / "metadata.json"


def test_load_split_cuts_to_limit_and_names_bad_files(split, tmp_path) -> None:
    assert len(load_split(str(split), None)) == 3
    assert len(load_split(str(split), 2)) == 2
    with pytest.raises(ConfigError, match="cannot read data split"):
        load_split(str(tmp_path / "missing.json"), None)
    with pytest.raises(ConfigError, match="holds no instances"):
        load_split(str(split), 0)


def test_pil_to_tensor_matches_the_uint8_values() -> None:
    from PIL import Image

    array = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 10
    tensor = pil_to_tensor(Image.fromarray(array))
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32
    torch.testing.assert_close(tensor, torch.from_numpy(array).permute(2, 0, 1).float() / 255)


def test_load_example_builds_the_reward_context(split) -> None:
    bench = load_split(str(split), None)
    ex = load_example(bench, 0)
    inst = bench.instances[0]
    assert len(ex.references) == len(inst.references) == ex.context.num_refs
    assert [r.kind for r in ex.context.references] == [r.type for r in inst.references]
    assert ex.context.targets[0].shape == (3, 32, 32)
    assert ex.context.metadata == {"index": inst.index, "category": inst.category}


def test_load_example_names_a_missing_image(split, tmp_path) -> None:
    data = json.loads(split.read_text())
    moved = tmp_path / "metadata.json"
    moved.write_text(json.dumps(data))  # same relative paths, now resolved under tmp_path
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_example(load_split(str(moved), None), 0)


class _CountingBackbone:
    """Records what the split asks the backbone to encode."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.conditions = 0
        self.images = 0

    def encode_condition(self, prompts, references, *, height, width, negative_prompt):
        self.conditions += 1
        return [SimpleNamespace(height=height, width=width)]

    def encode_images(self, pixels):
        self.images += 1
        return pixels.flatten(2).transpose(1, 2)


@pytest.mark.parametrize("cache", [True, False])
def test_encoded_split_encodes_once_when_cached(split, cache) -> None:
    backbone = _CountingBackbone()
    data = DataConfig(train=str(split), height=16, width=16, cache=cache)
    encoded = EncodedSplit.load(backbone, data, str(split), None, negative_prompt=None)  # type: ignore[arg-type]
    first = encoded.target_latents(1)
    again = encoded.target_latents(1)
    assert first.shape == (1, 16 * 16, 3)  # the target resized to the condition's size
    torch.testing.assert_close(first, again)
    assert (backbone.conditions, backbone.images) == ((1, 1) if cache else (2, 2))
