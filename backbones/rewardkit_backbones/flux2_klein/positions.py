"""Where FLUX.2 [klein] puts the target and reference tokens: ``(T, H, W, L)`` ids (pure functions)."""

from collections.abc import Sequence

import torch
from torch import Tensor

from rewardkit_backbones import _common
from rewardkit_backbones._common import POSITION_SCHEMES, PositionScheme

__all__ = ["reference_ids"]

# FLUX.2 puts reference i at time coordinate SCALE + SCALE·i (the pipeline's _prepare_image_ids).
_T_SCALE = 10


def _grid_ids(t: int, h: int, w: int, row0: int = 0, col0: int = 0) -> Tensor:
    """`(h·w, 4)` ids ``(t, row0 + r, col0 + c, 0)`` in row-major order."""
    return torch.cartesian_prod(
        torch.tensor([t]), torch.arange(row0, row0 + h), torch.arange(col0, col0 + w), torch.tensor([0])
    )


def reference_ids(
    target: tuple[int, int], references: Sequence[tuple[int, int]], scheme: PositionScheme = "index"
) -> Tensor:
    r"""Position ids ``(T, H, W, L)`` of the target tokens followed by the reference tokens.

    The target takes ``(0, r, c, 0)``. Reference $i$ (0-based, grid $h_i \times w_i$ patches):

    * ``"index"``: ``(10 + 10 i, r, c, 0)`` (the FLUX.2 pipeline's layout);
    * ``"offset"``: ``(10, r + a_i, c + b_i, 0)`` with $(a_i, b_i)$ the corner of reference $i$
      on a canvas where each one goes right of or below the previous ones (``place_on_canvas``);
    * ``"diagonal"``: ``(10, r + H + \sum_{k<i} h_k, c + W + \sum_{k<i} w_k, 0)``, UNO-style:
      the references sit on a diagonal beyond the $H \times W$ target grid.

    Args:
        target: ``(H, W)`` target grid in latent patches.
        references: ``(h_i, w_i)`` per reference, in order.
        scheme: position scheme.

    Returns:
        `(H·W + Σ h_i·w_i, 4)` int64 ids.

    Example:
        >>> reference_ids((1, 2), [(1, 1), (1, 1)]).tolist()
        [[0, 0, 0, 0], [0, 0, 1, 0], [10, 0, 0, 0], [20, 0, 0, 0]]
        >>> reference_ids((1, 2), [(1, 1), (1, 1)], "diagonal").tolist()
        [[0, 0, 0, 0], [0, 0, 1, 0], [10, 1, 2, 0], [10, 2, 3, 0]]
    """
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"scheme must be one of {POSITION_SCHEMES}, got {scheme!r}")
    blocks = [_grid_ids(0, *target)]
    if scheme == "index":
        blocks += [_grid_ids(_T_SCALE + _T_SCALE * i, h, w) for i, (h, w) in enumerate(references)]
    elif scheme == "offset":
        corners = _common.place_on_canvas(references)
        blocks += [
            _grid_ids(_T_SCALE, h, w, r, c) for (h, w), (r, c) in zip(references, corners, strict=True)
        ]
    else:
        row, col = target
        for h, w in references:
            blocks.append(_grid_ids(_T_SCALE, h, w, row, col))
            row, col = row + h, col + w
    return torch.cat(blocks)
