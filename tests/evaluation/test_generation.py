"""Image folders by index, and resumable generation with a tiny backbone."""

import json
from pathlib import Path

import numpy as np
import pytest

import rewardkit
from rewardkit.evaluation import GenerationSettings, find_images, generate_images, load_benchmark
from rewardkit.evaluation._images import load_rgb
from rewardkit.evaluation.generation import GenerationItem


def test_find_images_keys_by_index_and_ignores_stray_files(tmp_path: Path) -> None:
    for name in ("0.png", "12.JPG", "3.webp", "notes.txt", "7_old.png", "x.png", "generation.json", "١٢.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "5.png").mkdir()  # a folder is not an image
    found = find_images(tmp_path)
    assert found == {0: tmp_path / "0.png", 3: tmp_path / "3.webp", 12: tmp_path / "12.JPG"}
    (tmp_path / "3.png").write_bytes(b"")
    with pytest.raises(ValueError, match="two images for index 3"):
        find_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="image folder"):
        find_images(tmp_path / "missing")


def test_generation_settings_are_validated() -> None:
    assert GenerationSettings() == GenerationSettings(num_steps=20, seed=1, guidance_scale=4.0)  # the paper's
    assert "batch_size" not in GenerationSettings().to_json()  # does not change the images
    for bad in ({"num_steps": 0}, {"guidance_scale": 0.5}, {"height": 8}, {"batch_size": True}):
        with pytest.raises(ValueError):
            GenerationSettings(**bad)


@pytest.fixture(scope="module")
def klein(tmp_path_factory):
    path = rewardkit.make_tiny_checkpoint("flux2-klein", tmp_path_factory.mktemp("klein") / "ckpt")
    return rewardkit.load_backbone("flux2-klein", path, device="cpu")


def items(mini: Path, n: int) -> list[GenerationItem]:
    bench = load_benchmark(mini)
    return [
        GenerationItem(i.index, i.prompt, tuple(bench.resolve(r.path) for r in i.references))
        for i in bench.instances[:n]
    ]


FAST = GenerationSettings(num_steps=2, height=64, width=64, batch_size=2)


@pytest.mark.slow
def test_generation_writes_index_pngs_and_resumes(klein, mini: Path, tmp_path: Path) -> None:
    todo = items(mini, 3)
    result = generate_images(
        klein, todo, tmp_path, settings=FAST, progress=False, describe={"checkpoint": "tiny"}
    )
    assert result.written == (0, 1, 2) and result.skipped == ()
    assert sorted(find_images(tmp_path)) == [0, 1, 2]
    first = {i: (tmp_path / f"{i}.png").read_bytes() for i in range(3)}
    before = load_rgb(tmp_path / "0.png")
    assert load_rgb(tmp_path / "0.png").shape == (64, 64, 3)
    record = json.loads((tmp_path / "generation.json").read_text())
    assert record["backbone"] == "flux2-klein" and record["checkpoint"] == "tiny"
    assert record["settings"]["num_steps"] == 2 and record["settings"]["seed"] == 1

    (tmp_path / "1.png").unlink()  # an interrupted run: resume regenerates only what is missing
    again = generate_images(
        klein, todo, tmp_path, settings=FAST, progress=False, describe={"checkpoint": "tiny"}
    )
    assert again.written == (1,) and again.skipped == (0, 2)
    assert (tmp_path / "1.png").read_bytes() == first[1]  # same seed per item: same image, any batching

    other = GenerationSettings(num_steps=3, height=64, width=64)
    with pytest.raises(ValueError, match=r"num_steps"):
        generate_images(
            klein, todo, tmp_path, settings=other, progress=False, describe={"checkpoint": "tiny"}
        )
    redone = generate_images(klein, todo[:1], tmp_path, settings=other, overwrite=True, progress=False)
    assert redone.written == (0,)
    assert not np.array_equal(load_rgb(tmp_path / "0.png"), before)  # 3 steps differ from 2


@pytest.mark.slow
def test_batching_does_not_change_the_images(klein, mini: Path, tmp_path: Path) -> None:
    todo = items(mini, 2)
    one = GenerationSettings(num_steps=2, height=64, width=64, batch_size=1)
    generate_images(klein, todo, tmp_path / "a", settings=one, progress=False)
    generate_images(klein, todo, tmp_path / "b", settings=FAST, progress=False)
    for i in (0, 1):
        np.testing.assert_array_equal(
            load_rgb(tmp_path / "a" / f"{i}.png"), load_rgb(tmp_path / "b" / f"{i}.png")
        )
    assert not np.array_equal(load_rgb(tmp_path / "a" / "0.png"), load_rgb(tmp_path / "a" / "1.png"))
