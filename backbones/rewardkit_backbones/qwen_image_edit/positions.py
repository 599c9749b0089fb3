"""Where Qwen-Image-Edit puts the target and reference tokens in RoPE space (pure functions).

The model's own layout (``"index"``) gives reference $j$ the frame coordinate $j$; seed 003's
``"offset"`` and ``"diagonal"`` give every reference frame 1 and move its rows/columns instead.
``_SchemeRope`` swaps them into the transformer's ``pos_embed``.
"""

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rewardkit_backbones import _common
from rewardkit_backbones._common import POSITION_SCHEMES, PositionScheme

__all__ = ["image_positions", "rope_frequencies"]


def _centred(n: int) -> Tensor:
    """Qwen's centred coordinates ``-(n - n//2) … n//2 - 1`` (``scale_rope=True``)."""
    return torch.arange(-(n - n // 2), n // 2)


def image_positions(
    shapes: Sequence[tuple[int, int, int]], scheme: PositionScheme = "index"
) -> tuple[Tensor, int]:
    r"""Per-token (frame, row, col) RoPE positions of the target and reference grids.

    ``shapes`` is ``img_shapes`` of one sample: ``[(1, H, W)_target, (1, h_1, w_1), …]`` in latent
    patches. The target always takes frame 0 and centred rows/cols $-(H - \lfloor H/2\rfloor)
    \dots \lfloor H/2\rfloor - 1$. Reference $j$ (1-based):

    * ``"index"``: frame $j$, centred rows/cols (the Qwen-Image-Edit layout);
    * ``"offset"``: frame 1; the references are placed on one canvas (each to the right of or
      below the previous ones, see ``place_on_canvas``) which is centred like the target;
    * ``"diagonal"``: frame 1; reference $j$'s first row is
      $\lfloor H/2\rfloor + \sum_{k<j} h_k$ and its first column
      $\lfloor W/2\rfloor + \sum_{k<j} w_k$, so the grids sit on a diagonal past the target.

    Text tokens start at position $M$ on all axes: $M = \max_j \max(\lfloor h_j/2\rfloor,
    \lfloor w_j/2\rfloor)$ for ``"index"`` (the model's rule), and one past the largest image
    row/column otherwise.

    Args:
        shapes: ``(frames, rows, cols)`` per image, target first.
        scheme: position scheme.

    Returns:
        `(L_img, 3)` int64 positions in sequence order, and the first text position M.

    Example:
        >>> pos, m = image_positions([(1, 2, 2), (1, 2, 2)])
        >>> pos.tolist(), m
        ([[0, -1, -1], [0, -1, 0], [0, 0, -1], [0, 0, 0], [1, -1, -1], [1, -1, 0], [1, 0, -1], [1, 0, 0]], 1)
    """
    if scheme not in POSITION_SCHEMES:
        raise ValueError(f"scheme must be one of {POSITION_SCHEMES}, got {scheme!r}")
    blocks = []
    text_start = 0
    target_h, target_w = shapes[0][1], shapes[0][2]
    ref_sizes = [(h, w) for _, h, w in shapes[1:]]
    if scheme == "offset":
        corners = _common.place_on_canvas(ref_sizes)
        canvas_h = max([r + h for (r, _), (h, _) in zip(corners, ref_sizes, strict=True)] or [0])
        canvas_w = max([c + w for (_, c), (_, w) in zip(corners, ref_sizes, strict=True)] or [0])
        # Centre the reference canvas the way a single grid is centred.
        starts = [(r - (canvas_h - canvas_h // 2), c - (canvas_w - canvas_w // 2)) for r, c in corners]
    elif scheme == "diagonal":
        starts, row, col = [], target_h // 2, target_w // 2
        for h, w in ref_sizes:
            starts.append((row, col))
            row, col = row + h, col + w
    for idx, (frames, h, w) in enumerate(shapes):
        if scheme == "index" or idx == 0:
            frame0, rows, cols = idx, _centred(h), _centred(w)
        else:
            r0, c0 = starts[idx - 1]
            frame0, rows, cols = 1, torch.arange(r0, r0 + h), torch.arange(c0, c0 + w)
        f = torch.arange(frame0, frame0 + frames)
        grid = torch.stack(torch.meshgrid(f, rows, cols, indexing="ij"), dim=-1).reshape(-1, 3)
        blocks.append(grid)
        text_start = max(text_start, h // 2, w // 2)
    positions = torch.cat(blocks)
    if scheme != "index":
        text_start = max(text_start, int(positions[:, 1:].max()) + 1)
    return positions, text_start


def rope_frequencies(positions: Tensor, axes_dim: Sequence[int], theta: float = 10000.0) -> Tensor:
    r"""Complex RoPE factors $e^{i\,p_a\,\theta^{-2k/d_a}}$ per token, axes concatenated.

    Matches diffusers' ``QwenEmbedRope.rope_params`` for every integer position (negative ones
    included), so ``"index"`` positions reproduce the model's own table.

    Args:
        positions: `(T, A)` int64 positions on A axes.
        axes_dim: the A rotary dims $d_a$ (even), e.g. ``(16, 56, 56)``.
        theta: RoPE base.

    Returns:
        `(T, Σ d_a / 2)` complex64 factors.
    """
    parts = []
    for a, dim in enumerate(axes_dim):
        inv = 1.0 / torch.pow(theta, torch.arange(0, dim, 2).to(torch.float32).div(dim))
        angles = torch.outer(positions[:, a].to(positions.device), inv.to(positions.device))
        parts.append(torch.polar(torch.ones_like(angles), angles))
    return torch.cat(parts, dim=1)


class _SchemeRope(nn.Module):
    """Drop-in for ``QwenEmbedRope`` that lays references out by a seed-003 position scheme."""

    def __init__(self, axes_dim: Sequence[int], theta: float, scheme: PositionScheme) -> None:
        super().__init__()
        self.axes_dim = list(axes_dim)
        self.theta = theta
        self.scheme: PositionScheme = scheme

    def forward(
        self, video_fhw: Any, device: torch.device | None = None, max_txt_seq_len: int | Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        if max_txt_seq_len is None:
            raise ValueError("max_txt_seq_len must be provided")
        shapes = video_fhw[0] if isinstance(video_fhw[0], list) else video_fhw
        positions, text_start = image_positions([tuple(s) for s in shapes], self.scheme)
        text = torch.arange(text_start, text_start + int(max_txt_seq_len)).unsqueeze(1).expand(-1, 3)
        image_freqs = rope_frequencies(positions, self.axes_dim, self.theta)
        text_freqs = rope_frequencies(text, self.axes_dim, self.theta)
        return image_freqs.to(device), text_freqs.to(device)


# ----------------------------------------------------------------------------------------------
