r"""OmniRef-style MLLM judge: six dimensions scored 0–10, −1 where a dimension does not apply.

The judge sees the prompt, the reference images (in the order the prompt numbers them, each
labelled with its type) and the generated image, and scores

| dimension | applies when |
|---|---|
| ``text_adherence`` | always |
| ``subject_consistency`` | a subject reference is given |
| ``style_consistency`` | a style reference is given |
| ``lighting_consistency`` | a lighting reference is given |
| ``background_consistency`` | a background reference is given |
| ``aesthetic_quality`` | always |

The per-sample reward is the mean of the applicable dimension scores,

$$
r_i = \frac{1}{|D_i|}\sum_{d \in D_i} s_{i,d} \in [0, 10],
$$

and a benchmark's "MLLM Avg" is the mean over dimensions of each dimension's mean over the
samples it applies to. The prompt text is rewardkit's own (the OmniRef-Bench wording is not
reproduced). Differences from the reference script, all deliberate: applicability comes from
the sample's references (``applicability="metadata"``; ``"model"`` trusts the judge's −1 as
the script did), pose references are shown (labelled) so the prompt's "image N" numbering
matches what the model sees, the default temperature is 0, and failures give NaN instead of
silently dropping the sample.
"""

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from rewardkit.rewards._images import Images, as_image_list
from rewardkit.rewards.judges._common import (
    JudgeSettings,
    OnError,
    ask,
    image_part,
    parse_failed,
    text_part,
)
from rewardkit.rewards.judges.client import ChatClient, Messages
from rewardkit.rewards.judges.parsing import JudgeParseError, coerce_score, parse_json_object, scores_by_regex
from rewardkit.rewards.protocol import RewardOutput, SampleContext, as_contexts

__all__ = ["OMNIREF_DIMENSIONS", "OmniRefJudge", "omniref_applicable"]

#: The six OmniRef judge dimensions, in the JSON order the prompt asks for.
OMNIREF_DIMENSIONS: tuple[str, ...] = (
    "text_adherence",
    "subject_consistency",
    "style_consistency",
    "lighting_consistency",
    "background_consistency",
    "aesthetic_quality",
)
_NEEDS = {
    "subject_consistency": "subject",
    "style_consistency": "style",
    "lighting_consistency": "lighting",
    "background_consistency": "background",
}

SYSTEM_PROMPT = """\
You review images made by a multi-reference image generator. You get a text prompt, reference \
images that each control one aspect of the result (subjects, style, lighting, background, pose), \
and one generated image. Rate the generated image on six independent dimensions, each on a 0-10 \
scale (decimals allowed).

Anchors: 10 = flawless; 8 = strong, only minor flaws; 6 = acceptable, clearly average; \
4 = obvious problems; 2 = largely fails; 0 = fails completely. Be strict: reserve 9-10 for \
results you cannot fault.

Dimensions:
1. text_adherence: does the image do what the prompt asks, including using every reference the \
way the prompt says? If a provided reference is visibly ignored, score at most 5.
2. subject_consistency: are the subjects recognisably the same individuals or objects as in the \
subject references (identity, shape, distinctive details)? Ignore art style, lighting and pose.
3. style_consistency: does the rendering (medium, brushwork, palette, texture) match the style \
reference? Ignore what is depicted.
4. lighting_consistency: do light direction, colour temperature, contrast and mood match the \
lighting reference, adapted to the new scene? Copying the lighting reference's content or \
background scores at most 2.
5. background_consistency: is the background reference's scene preserved (layout, landmarks)? \
With a style reference it may be re-rendered in that style, but its layout must hold. A \
cut-and-paste look scores at most 2.
6. aesthetic_quality: overall visual quality judged within the intended style: composition, \
coherence, no artifacts.

If the prompt lists a reference type as "not provided", score that dimension -1 with reasoning \
"N/A". Score each dimension on its own evidence.

Answer with a single JSON object and nothing else (no Markdown):
{"text_adherence": {"score": <number>, "reasoning": "<one sentence>"}, \
"subject_consistency": {...}, "style_consistency": {...}, "lighting_consistency": {...}, \
"background_consistency": {...}, "aesthetic_quality": {...}}"""


def omniref_applicable(context: SampleContext) -> tuple[str, ...]:
    """The OmniRef dimensions that apply to a sample, from its reference types."""
    kinds = context.kinds()
    return tuple(d for d in OMNIREF_DIMENSIONS if d not in _NEEDS or _NEEDS[d] in kinds)


class OmniRefJudge(JudgeSettings):
    """MLLM judge with OmniRef's six 0–10 dimensions (a [`RewardModel`][rewardkit.RewardModel]).

    Extras: one `(N,)` tensor per dimension (NaN where it does not apply or could not be
    read) and ``judge_ok`` (1.0 where the answer was read).

    Args:
        client: the [`ChatClient`][rewardkit.ChatClient].
        applicability: ``"metadata"`` (dimensions apply iff the sample has that reference type;
            the judge's −1 on an applicable dimension counts as unreadable) or ``"model"``
            (trust the judge's −1 / scores, as OmniRef's script did).
        on_error: ``"nan"`` (failed or unreadable answers give NaN) or ``"raise"``.
        max_side: longest image side sent to the judge.
        jpeg_quality: JPEG quality of the sent images.
        name: the reward's name.
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        applicability: Literal["metadata", "model"] = "metadata",
        on_error: OnError = "nan",
        max_side: int = 512,
        jpeg_quality: int = 80,
        name: str = "omniref_judge",
    ) -> None:
        if applicability not in ("metadata", "model"):
            raise ValueError(f"applicability must be 'metadata' or 'model', got {applicability!r}")
        super().__init__(client, on_error=on_error, max_side=max_side, jpeg_quality=jpeg_quality, name=name)
        self.applicability = applicability

    def build_request(self, image: Tensor, context: SampleContext) -> Messages:
        """The chat messages for one generated image."""
        kinds = context.kinds()
        provided = ", ".join(
            f"{kind}: {'provided' if kind in kinds else 'not provided'}"
            for kind in ("subject", "style", "lighting", "background")
        )
        intro = (
            f"Text prompt: {context.prompt}\n"
            f"References — {provided}.\n"
            "The reference images follow in the order the prompt numbers them (Image 1, Image 2, ...), "
            "then the generated image to evaluate."
        )
        parts = [text_part(intro)]
        for k, ref in enumerate(context.references, start=1):
            label = f"Image {k} ({ref.kind} reference{': ' + ref.name if ref.name else ''}):"
            parts += [text_part(label), image_part(self._url(ref.image))]
        parts += [text_part("Generated image:"), image_part(self._url(image))]
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": parts}]

    def parse(self, text: str) -> dict[str, float | None]:
        """Read the six dimensions from an answer: a score, ``-1.0`` for N/A, ``None`` if absent.

        Raises:
            JudgeParseError: no dimension could be read.
        """
        try:
            data = parse_json_object(text)
            raw: dict[str, object] = {d: data[d] for d in OMNIREF_DIMENSIONS if d in data}
        except JudgeParseError:
            raw = dict(scores_by_regex(text, OMNIREF_DIMENSIONS))
        out: dict[str, float | None] = {}
        for dim in OMNIREF_DIMENSIONS:
            value = raw.get(dim)
            na = coerce_score(value, lo=-1.0, hi=-1.0)
            out[dim] = -1.0 if na is not None else coerce_score(value)
        if all(v is None for v in out.values()):
            raise JudgeParseError(f"none of {OMNIREF_DIMENSIONS} found in the answer")
        return out

    def __call__(self, images: Images, contexts: SampleContext | Sequence[SampleContext]) -> RewardOutput:
        """Judge `N` images; one request per image, sent concurrently."""
        generated = as_image_list(images)
        ctxs = as_contexts(contexts, len(generated))
        requests = [self.build_request(img, ctx) for img, ctx in zip(generated, ctxs, strict=True)]
        texts = ask(self.client, requests, on_error=self.on_error)
        n = len(generated)
        table = torch.full((n, len(OMNIREF_DIMENSIONS)), math.nan)
        ok = torch.zeros(n)
        for i, (text, ctx, request) in enumerate(zip(texts, ctxs, requests, strict=True)):
            if text is None:
                continue
            try:
                verdict = self.parse(text)
            except JudgeParseError:
                parse_failed(self.client, request, "6-dimension verdict", text, self.on_error)
                continue
            ok[i] = 1.0
            applicable = omniref_applicable(ctx)
            for j, dim in enumerate(OMNIREF_DIMENSIONS):
                value = verdict[dim]
                if value is None or value < 0:  # unreadable, or the judge's N/A
                    continue
                if self.applicability == "metadata" and dim not in applicable:
                    continue
                table[i, j] = value
        valid = ~torch.isnan(table)
        counts = valid.sum(dim=1)
        means = torch.where(valid, table, torch.zeros_like(table)).sum(dim=1) / counts.clamp_min(1)
        scores = torch.where(counts > 0, means, torch.full_like(means, math.nan))
        extras = {dim: table[:, j].clone() for j, dim in enumerate(OMNIREF_DIMENSIONS)}
        extras["judge_ok"] = ok
        return RewardOutput(scores, extras)
