r"""Seed 003's binary VLM reward: three yes/no questions, averaged.

For references $x_1, x_2$ (any number here), instruction $t$ and generated image $\hat y$ the
judge answers

* $b_{\text{fid}}$: does $\hat y$ follow the instruction $t$?
* $b_{\text{cons}}$: are the visual attributes of *every* reference faithfully integrated?
* $b_{\text{real}}$: is $\hat y$ coherent and free of artifacts?

with yes → 1 and no → 0, and the reward is

$$
r = \tfrac13\,(b_{\text{fid}} + b_{\text{cons}} + b_{\text{real}}) \in \{0, \tfrac13, \tfrac23, 1\}.
$$

The paper does not publish its prompt; the wording here is a **reconstruction**, not the
authors' text. ``mode="joint"`` asks the three questions in one request (cheap);
``"separate"`` asks each in its own request (independent answers, 3× the calls).
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
from rewardkit.rewards.judges.parsing import JudgeParseError, parse_json_object, parse_yes_no
from rewardkit.rewards.protocol import RewardOutput, SampleContext, as_contexts

__all__ = ["DUAL_REF_QUESTIONS", "DualRefJudge"]

#: The three questions (keys are the extras' names). Reconstruction, not the authors' prompt.
DUAL_REF_QUESTIONS: dict[str, str] = {
    "instruction_following": "Does the generated image follow the instruction?",
    "reference_consistency": (
        "Are the visual attributes contributed by every reference image (identity, clothing, objects, "
        "scene or style, whatever each one supplies) faithfully integrated into the generated image?"
    ),
    "realism": (
        "Is the generated image coherent and realistic, without visible artifacts, distortions or "
        "implausible compositing?"
    ),
}

_SYSTEM = (
    "You are a strict visual inspector for instruction-guided image editing with several input "
    "images. Answer each question with exactly 'yes' or 'no' and a one-sentence explanation; give "
    "no scores. Reply with a single JSON object and nothing else."
)


class DualRefJudge(JudgeSettings):
    """Seed 003's three-question yes/no reward (a [`RewardModel`][rewardkit.RewardModel]).

    Extras: ``instruction_following``, ``reference_consistency``, ``realism`` (each `(N,)`,
    1.0 / 0.0, NaN if unreadable) and ``judge_ok``. The score is NaN unless all three answers
    were read.

    Args:
        client: the [`ChatClient`][rewardkit.ChatClient].
        mode: ``"joint"`` (one request per image) or ``"separate"`` (one per question).
        on_error: ``"nan"`` or ``"raise"``.
        max_side: longest image side sent.
        jpeg_quality: JPEG quality of the sent images.
        name: the reward's name.
    """

    def __init__(
        self,
        client: ChatClient,
        *,
        mode: Literal["joint", "separate"] = "joint",
        on_error: OnError = "nan",
        max_side: int = 512,
        jpeg_quality: int = 80,
        name: str = "dual_ref_yes_no",
    ) -> None:
        if mode not in ("joint", "separate"):
            raise ValueError(f"mode must be 'joint' or 'separate', got {mode!r}")
        super().__init__(client, on_error=on_error, max_side=max_side, jpeg_quality=jpeg_quality, name=name)
        self.mode = mode

    def _images(self, image: Tensor, context: SampleContext) -> list[dict[str, object]]:
        parts: list[dict[str, object]] = []
        for k, ref in enumerate(context.references, start=1):
            parts += [
                text_part(f"Input image {k}:"),
                image_part(self._url(ref.image)),
            ]
        parts += [
            text_part("Generated image:"),
            image_part(self._url(image)),
        ]
        return parts

    def build_requests(self, image: Tensor, context: SampleContext) -> list[Messages]:
        """One request (joint) or three (separate) for one generated image."""
        images = self._images(image, context)
        if self.mode == "joint":
            questions = "\n".join(f'- "{key}": {q}' for key, q in DUAL_REF_QUESTIONS.items())
            fmt = ", ".join(
                f'"{k}": {{"answer": "yes" | "no", "explanation": "..."}}' for k in DUAL_REF_QUESTIONS
            )
            text = f"Instruction: {context.prompt}\nQuestions:\n{questions}\nAnswer format: {{{fmt}}}"
            return [
                [
                    {"role": "system", "content": _SYSTEM},
                    {"role": "user", "content": [text_part(text), *images]},
                ]
            ]
        out: list[Messages] = []
        for question in DUAL_REF_QUESTIONS.values():
            text = (
                f"Instruction: {context.prompt}\nQuestion: {question}\n"
                'Answer format: {"answer": "yes" | "no", "explanation": "..."}'
            )
            out.append(
                [
                    {"role": "system", "content": _SYSTEM},
                    {"role": "user", "content": [text_part(text), *images]},
                ]
            )
        return out

    def __call__(self, images: Images, contexts: SampleContext | Sequence[SampleContext]) -> RewardOutput:
        """Judge `N` images."""
        generated = as_image_list(images)
        n = len(generated)
        ctxs = as_contexts(contexts, n)
        per_sample = [self.build_requests(img, ctx) for img, ctx in zip(generated, ctxs, strict=True)]
        flat = [req for reqs in per_sample for req in reqs]
        texts = ask(self.client, flat, on_error=self.on_error)
        keys = tuple(DUAL_REF_QUESTIONS)
        table = torch.full((n, len(keys)), math.nan)
        ok = torch.zeros(n)
        cursor = 0
        for i, reqs in enumerate(per_sample):
            answers: dict[str, bool | None] = {}
            for j, request in enumerate(reqs):
                text = texts[cursor + j]
                if text is None:
                    continue
                try:
                    data = parse_json_object(text)
                    if self.mode == "joint":
                        got = {k: parse_yes_no(data.get(k)) for k in keys}
                    else:
                        got = {keys[j]: parse_yes_no(data)}
                    if all(v is None for v in got.values()):
                        raise JudgeParseError("no yes/no answer found")
                except JudgeParseError:
                    parse_failed(self.client, request, "yes/no answer", text, self.on_error)
                    continue
                answers.update(got)
            cursor += len(reqs)
            for j, key in enumerate(keys):
                value = answers.get(key)
                if value is not None:
                    table[i, j] = float(value)
            ok[i] = float(bool(answers) and all(answers.get(k) is not None for k in keys))
        scores = table.mean(dim=1)  # NaN unless all three answers were read
        extras = {key: table[:, j].clone() for j, key in enumerate(keys)}
        extras["judge_ok"] = ok
        return RewardOutput(scores, extras)
