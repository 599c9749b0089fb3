"""Shared adapter helpers: canvas placement, option parsing."""

from dataclasses import dataclass
from pathlib import Path

import pytest

common = pytest.importorskip("rewardkit_backbones._common")


def test_canvas_placement_keeps_the_canvas_small() -> None:
    assert common.place_on_canvas([(4, 4)]) == [(0, 0)]
    # Right of (4, 4) gives 4×6, below gives 6×4: tie → right. Then 2×6 below gives 6×6 < 4×12.
    assert common.place_on_canvas([(4, 4), (4, 2), (2, 6)]) == [(0, 0), (0, 4), (4, 0)]
    assert common.place_on_canvas([]) == []


@dataclass(frozen=True)
class Opts:
    size: int = 1
    layers: tuple[int, ...] = (1,)


def test_parse_options_merges_checkpoint_defaults(tmp_path: Path) -> None:
    common.write_checkpoint_defaults(tmp_path, "toy", {"size": 5, "layers": [2, 3], "stale": 1})
    assert common.parse_options(Opts, "toy", str(tmp_path), {}) == Opts(size=5, layers=(2, 3))
    assert common.parse_options(Opts, "toy", str(tmp_path), {"size": 7}) == Opts(size=7, layers=(2, 3))
    assert common.parse_options(Opts, "toy", "owner/hub-id", {}) == Opts()
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['sise'\].*\['layers', 'size'\]"):
        common.parse_options(Opts, "toy", str(tmp_path), {"sise": 2})
    with pytest.raises(ValueError, match="written for backbone 'toy'"):
        common.parse_options(Opts, "other", str(tmp_path), {})
