r"""Seed 004 (MICo) Weighted-Ref-VIEScore: source weighting × semantic consistency × quality.

For a case with sources $i = 1..N$, a human-verified reference image, prompt and generated
image:

$$
W = \frac1N\sum_{i=1}^{N} s_i,\qquad
SC = \sqrt{SR \cdot PF},\qquad
PQ = \sqrt{\text{Naturalness}\cdot\text{Artifacts}},\qquad
\text{Score} = W \cdot SC \cdot PQ \in [0, 100]
$$

* $s_i$ for a **non-face** source: a VLM yes/no "does this source element appear in the
  generated image?" (1/0);
* $s_i$ for a **face** source: the ArcFace cosine $c$ of the best-matched generated face,
  graded by [`arcface_grade`][rewardkit.arcface_grade];
* $SR$ (subject resemblance to the reference image) and $PF$ (prompt following), 0–10, from
  one judge call that sees the reference image, the generated image and the prompt;
* Naturalness and Artifacts (10 = none), 0–10, from one call that sees the generated image only.

Ref-VIEScore (no weighting) is $SC \cdot PQ$ (``weighting=False``). MICo's meta-prompts are
not available; the prompts here are **reconstructions**. ArcFace is not bundled: pass
``face_similarity`` (a callable returning the best-match cosine) to score face sources.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rewardkit.rewards._images import Images, as_image, as_image_list
from rewardkit.rewards.judges._common import (
    JudgeSettings,
    OnError,
    ask,
    image_part,
    parse_failed,
    text_part,
)
from rewardkit.rewards.judges.client import ChatClient, Messages
from rewardkit.rewards.judges.parsing import JudgeParseError, coerce_score, parse_json_object, parse_yes_no
from rewardkit.rewards.protocol import Reference, RewardOutput, SampleContext, as_contexts

__all__ = ["WeightedRefVIEScore", "arcface_grade", "weighted_ref_viescore"]

#: ArcFace cosine thresholds and the grades they map to (MICo §4.2).
ARCFACE_GRADES: tuple[tuple[float, float], ...] = ((0.45, 1.0), (0.30, 0.7), (0.15, 0.5), (0.05, 0.2))


def arcface_grade(cosine: Tensor | float) -> Tensor:
    r"""MICo's graded face score from the best-match ArcFace cosine $c$.

    $$
    s(c) = \begin{cases}
    1.0 & c \ge 0.45\\ 0.7 & 0.30 \le c < 0.45\\ 0.5 & 0.15 \le c < 0.30\\
    0.2 & 0.05 \le c < 0.15\\ 0.0 & c < 0.05
    \end{cases}
    $$

    Args:
        cosine: cosine(s) in ``[-1, 1]``; NaN stays NaN.

    Returns:
        The grades, float32, shaped like ``cosine``.

    Example:
        >>> arcface_grade(torch.tensor([0.9, 0.45, 0.3, 0.1, -0.2]))
        tensor([1.0000, 1.0000, 0.7000, 0.2000, 0.0000])
    """
    c = torch.as_tensor(cosine, dtype=torch.float32)
    out = torch.zeros_like(c)
    for threshold, grade in reversed(ARCFACE_GRADES):
        out = torch.where(c >= threshold, torch.full_like(c, grade), out)
    return torch.where(torch.isnan(c), c, out)


def weighted_ref_viescore(
    weight: Tensor | float,
    subject_resemblance: Tensor | float,
    prompt_following: Tensor | float,
    naturalness: Tensor | float,
    artifacts: Tensor | float,
) -> Tensor:
    r"""$W \cdot \sqrt{SR \cdot PF} \cdot \sqrt{\text{Nat} \cdot \text{Art}}$ on MICo's 0–100 scale.

    Args:
        weight: $W \in [0, 1]$ (pass 1 for Ref-VIEScore).
        subject_resemblance: $SR \in [0, 10]$.
        prompt_following: $PF \in [0, 10]$.
        naturalness: $\in [0, 10]$.
        artifacts: $\in [0, 10]$ (10 = no artifacts).

    Returns:
        The score(s), broadcast over the inputs; NaN propagates.

    Raises:
        ValueError: a finite input outside its range.

    Example:
        >>> weighted_ref_viescore(1.0, 9.0, 4.0, 8.0, 8.0)
        tensor(48.)
    """
    inputs = (weight, subject_resemblance, prompt_following, naturalness, artifacts)
    tensors = [torch.as_tensor(v, dtype=torch.float32) for v in inputs]
    names = ("weight", "subject_resemblance", "prompt_following", "naturalness", "artifacts")
    for name, t, hi in zip(names, tensors, (1.0, 10.0, 10.0, 10.0, 10.0), strict=True):
        finite = t[~torch.isnan(t)]
        if finite.numel() and (float(finite.min()) < 0 or float(finite.max()) > hi):
            raise ValueError(
                f"{name} must lie in [0, {hi:g}], got range [{float(finite.min())}, {float(finite.max())}]"
            )
    w, sr, pf, nat, art = tensors
    return w * torch.sqrt(sr * pf) * torch.sqrt(nat * art)


_SYSTEM = (
    "You are a careful evaluator of multi-image composition results. Follow the requested output "
    "format exactly: a single JSON object, no Markdown, no extra text."
)
_SC_PROMPT = (
    "The first image is the reference result for the prompt below; the second image is a generated "
    "result. Rate the generated image on two 0-10 scales (decimals allowed):\n"
    "- prompt_following: how completely and correctly it does what the prompt asks (0 = ignores it, "
    "10 = everything requested is there);\n"
    "- subject_resemblance: how closely its people, objects, clothing and scene resemble those in "
    "the reference image (0 = unrelated, 10 = indistinguishable identities and details).\n"
    'Prompt: {prompt}\nAnswer format: {{"prompt_following": <number>, "subject_resemblance": <number>, '
    '"explanation": "<one sentence>"}}'
)
_PQ_PROMPT = (
    "Rate this generated image on two 0-10 scales (decimals allowed):\n"
    "- naturalness: how natural and physically plausible it looks (lighting, perspective, scale, "
    "contact between people and objects); 10 = fully natural;\n"
    "- artifacts: how free it is of artifacts (distorted hands or faces, warped text, seams, blur, "
    "duplicated parts); 10 = no artifacts at all.\n"
    'Answer format: {"naturalness": <number>, "artifacts": <number>, "explanation": "<one sentence>"}'
)
_PRESENCE_PROMPT = (
    "The first image shows a source element{what}. Does this element appear in the second (generated) "
    "image, recognisably the same item rather than merely the same category? "
    'Answer format: {{"answer": "yes" | "no", "explanation": "<one sentence>"}}'
)


@dataclass(frozen=True)
class _Job:
    sample: int
    kind: str  # "sc" | "pq" | "presence"
    source: int
    request: Messages


class WeightedRefVIEScore(JudgeSettings):
    """MICo's Weighted-Ref-VIEScore as a [`RewardModel`][rewardkit.RewardModel] (0–100).

    The reference image is the sample's first target; the sources are its references
    (``Reference.is_face`` selects the face path). Extras (each `(N,)`): ``W``, ``SC``,
    ``PQ``, ``subject_resemblance``, ``prompt_following``, ``naturalness``, ``artifacts``,
    ``judge_ok``. A sample without a reference image, or whose answers could not be read,
    scores NaN.

    Args:
        client: judge for the SC and PQ calls (MICo used GPT-5.4 at temperature 0).
        presence_client: judge for the per-source yes/no (MICo used Qwen3-VL-30B-A3B);
            default: ``client``.
        face_similarity: ``f(source, generated) -> cosine`` of the best-matched face (e.g.
            ArcFace); required when a sample has a face source.
        weighting: multiply by $W$ (False gives Ref-VIEScore, and skips the presence calls).
        on_error: ``"nan"`` or ``"raise"``.
        max_side: longest image side sent.
        jpeg_quality: JPEG quality of the sent images.
        name: the reward's name.
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        presence_client: ChatClient | None = None,
        face_similarity: Callable[[Tensor, Tensor], float] | None = None,
        weighting: bool = True,
        on_error: OnError = "nan",
        max_side: int = 512,
        jpeg_quality: int = 80,
        name: str = "weighted_ref_viescore",
    ) -> None:
        super().__init__(client, on_error=on_error, max_side=max_side, jpeg_quality=jpeg_quality, name=name)
        self.presence_client = presence_client if presence_client is not None else client
        self.face_similarity = face_similarity
        self.weighting = weighting

    def _sc_request(self, image: Tensor, context: SampleContext) -> Messages:
        parts = [
            text_part(_SC_PROMPT.format(prompt=context.prompt)),
            image_part(self._url(context.targets[0])),
            image_part(self._url(image)),
        ]
        return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": parts}]

    def _pq_request(self, image: Tensor) -> Messages:
        parts = [text_part(_PQ_PROMPT), image_part(self._url(image))]
        return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": parts}]

    def _presence_request(self, image: Tensor, ref: Reference) -> Messages:
        what = f" ({ref.name})" if ref.name else f" (a {ref.kind} reference)"
        parts = [
            text_part(_PRESENCE_PROMPT.format(what=what)),
            image_part(self._url(ref.image)),
            image_part(self._url(image)),
        ]
        return [{"role": "system", "content": _SYSTEM}, {"role": "user", "content": parts}]

    def __call__(self, images: Images, contexts: SampleContext | Sequence[SampleContext]) -> RewardOutput:
        """Score `N` images (2 judge calls each, plus one per non-face source)."""
        generated = as_image_list(images)
        n = len(generated)
        ctxs = as_contexts(contexts, n)
        if self.weighting and self.face_similarity is None:
            for i, ctx in enumerate(ctxs):
                if any(r.is_face for r in ctx.references):
                    raise ValueError(
                        f"contexts[{i}] has a face source (Reference.is_face=True) but no face_similarity "
                        "was given; pass face_similarity=f(source, generated) -> best-match cosine "
                        "(ArcFace), "
                        "or mark the source is_face=False to judge it with the VLM yes/no"
                    )
        judge_jobs: list[_Job] = []
        presence_jobs: list[_Job] = []
        grades = torch.full((n, max((len(c.references) for c in ctxs), default=0)), math.nan)
        for i, (img, ctx) in enumerate(zip(generated, ctxs, strict=True)):
            if not ctx.targets:
                continue  # no reference image: SC undefined, score NaN
            judge_jobs.append(_Job(i, "sc", -1, self._sc_request(img, ctx)))
            judge_jobs.append(_Job(i, "pq", -1, self._pq_request(img)))
            if not self.weighting:
                continue
            for k, ref in enumerate(ctx.references):
                if ref.is_face:
                    assert self.face_similarity is not None
                    grades[i, k] = float(arcface_grade(float(self.face_similarity(as_image(ref.image), img))))
                else:
                    presence_jobs.append(_Job(i, "presence", k, self._presence_request(img, ref)))
        texts = ask(self.client, [j.request for j in judge_jobs], on_error=self.on_error)
        presence_texts = ask(self.presence_client, [j.request for j in presence_jobs], on_error=self.on_error)
        fields = ("prompt_following", "subject_resemblance", "naturalness", "artifacts")
        values = {f: torch.full((n,), math.nan) for f in fields}
        for job, text in zip(judge_jobs, texts, strict=True):
            if text is None:
                continue
            wanted = fields[:2] if job.kind == "sc" else fields[2:]
            try:
                data = parse_json_object(text)
                got = {f: coerce_score(data.get(f)) for f in wanted}
                if any(v is None for v in got.values()):
                    raise JudgeParseError(f"missing or invalid {wanted}")
            except JudgeParseError:
                parse_failed(self.client, job.request, f"{'/'.join(wanted)} rating", text, self.on_error)
                continue
            for f, v in got.items():
                values[f][job.sample] = float(v)  # type: ignore[arg-type]
        for job, text in zip(presence_jobs, presence_texts, strict=True):
            if text is None:
                continue
            try:
                answer = parse_yes_no(parse_json_object(text))
                if answer is None:
                    raise JudgeParseError("no yes/no answer")
            except JudgeParseError:
                parse_failed(self.presence_client, job.request, "yes/no presence answer", text, self.on_error)
                continue
            grades[job.sample, job.source] = float(answer)
        if self.weighting:
            weight = torch.full((n,), math.nan)
            for i, ctx in enumerate(ctxs):
                m = len(ctx.references)
                if m:
                    weight[i] = grades[i, :m].mean()  # NaN if any source is unreadable
        else:
            weight = torch.ones(n)
        sc = torch.sqrt(values["subject_resemblance"] * values["prompt_following"])
        pq = torch.sqrt(values["naturalness"] * values["artifacts"])
        scores = weighted_ref_viescore(
            weight,
            values["subject_resemblance"],
            values["prompt_following"],
            values["naturalness"],
            values["artifacts"],
        )
        extras = {"W": weight, "SC": sc, "PQ": pq, **{f: values[f] for f in fields}}
        extras["judge_ok"] = (~torch.isnan(scores)).float()
        return RewardOutput(scores, extras)
