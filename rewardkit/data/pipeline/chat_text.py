"""Stage 1 on an OpenAI-compatible chat model: subjects and scene prompt as JSON.

The request goes through the judges' [`ChatClient`][rewardkit.ChatClient] (one pooled
connection, retries with backoff on 429/5xx/timeouts/empty answers, a disk cache keyed by the
request, the key never logged). The record's seed is part of the request, so every record asks
its own question and a re-run of a build is answered from the cache: resuming makes the same
records. An answer that is not a valid scene is dropped from the cache and asked again.
"""

from typing import Any

from rewardkit.data.pipeline.record import SceneSpec, Subject
from rewardkit.data.pipeline.steps import RecordPlan
from rewardkit.rewards.judges.client import ChatClient
from rewardkit.rewards.judges.parsing import JudgeParseError, parse_json_object

__all__ = ["ChatText", "parse_scene"]

SYSTEM = (
    "You design training scenes for multi-reference image generation. Answer with one JSON object "
    "and nothing else."
)

_TYPE_HINTS = {
    "background": '"background": a place or backdrop (e.g. "a misty pine forest")',
    "lighting": '"lighting": the light of the scene (e.g. "warm low sunlight from the left")',
    "pose": '"pose": the pose of one person in the scene (e.g. "jumping with both arms raised")',
    "style": '"style": a visual style (e.g. "watercolour painting")',
}


def scene_request(plan: RecordPlan) -> str:
    """The user message for one record (its seed makes it unique, so answers cache per record)."""
    keys = [
        f'"subjects": exactly {plan.n_subjects} objects {{"name": a short noun phrase starting with "a" or '
        '"an", "description": one sentence of appearance}, all different',
        '"scene_prompt": one text-to-image prompt showing all the subjects together'
        + (" and the person" if "pose" in plan.types else ""),
    ] + [_TYPE_HINTS[t] for t in plan.types]
    return f"Scene #{plan.seed} ({plan.category}). Write a JSON object with the keys:\n- " + "\n- ".join(keys)


def parse_scene(text: str, plan: RecordPlan) -> SceneSpec:
    """Read a chat answer as the scene of ``plan``.

    Raises:
        ValueError: not a JSON object, the wrong number of subjects, an empty or repeated
            name, or a missing description for one of the plan's types.
    """
    try:
        data = parse_json_object(text)
    except JudgeParseError as err:
        raise ValueError(str(err)) from err
    subjects = data.get("subjects")
    if not isinstance(subjects, list) or len(subjects) != plan.n_subjects:
        count = len(subjects) if isinstance(subjects, list) else "no list of"
        raise ValueError(f"expected {plan.n_subjects} subjects, got {count}")
    parsed = []
    for item in subjects:
        name = item.get("name") if isinstance(item, dict) else item
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a subject without a name: {item!r}")
        description = item.get("description", name) if isinstance(item, dict) else name
        parsed.append(Subject(name.strip(), str(description).strip()))
    if len({s.name.lower() for s in parsed}) != len(parsed):
        raise ValueError(f"repeated subject names: {[s.name for s in parsed]}")
    scene_prompt = data.get("scene_prompt")
    if not isinstance(scene_prompt, str) or not scene_prompt.strip():
        raise ValueError("no scene_prompt")
    described: dict[str, Any] = {}
    for kind in plan.types:
        value = data.get(kind)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"no {kind} description")
        described[kind] = value.strip()
    return SceneSpec(subjects=tuple(parsed), scene_prompt=scene_prompt.strip(), **described)


class ChatText:
    """The text stage on a chat model.

    Args:
        client: a [`ChatClient`][rewardkit.ChatClient]; default: one built from
            ``client_options`` (``base_url``, ``model``, ``cache_dir``, ``temperature``... as in
            [`ChatClientConfig`][rewardkit.ChatClientConfig]; the API key from the environment).
        attempts: how many answers to ask for before a record fails (each unparseable answer is
            forgotten by the cache and asked again).
        **client_options: settings of the default client (default temperature 0.8: varied scenes).
    """

    def __init__(self, client: ChatClient | None = None, *, attempts: int = 3, **client_options: Any) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        client_options.setdefault("temperature", 0.8)
        self.client = client if client is not None else ChatClient(**client_options)
        self.attempts = attempts

    def scene(self, plan: RecordPlan) -> SceneSpec:
        """Ask for the scene of ``plan``.

        Raises:
            ValueError: no valid scene after ``attempts`` answers (the last reason is named).
            JudgeError: the server failed on every retry.
        """
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": scene_request(plan)}]
        reason = ""
        for _ in range(self.attempts):
            answer = self.client.complete(messages)
            try:
                return parse_scene(answer.content, plan)
            except ValueError as err:
                reason = str(err)
                self.client.forget(messages)
        raise ValueError(f"no valid scene from the text model after {self.attempts} answers: {reason}")
