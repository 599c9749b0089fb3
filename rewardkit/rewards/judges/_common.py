"""Pieces shared by the MLLM judges: image encoding, message parts, batched asking."""

import base64
import io
import logging
from collections.abc import Sequence
from typing import Any, Literal, TypeAlias

import torch

from rewardkit.rewards._images import ImageInput, as_image
from rewardkit.rewards.judges.client import ChatClient, JudgeError, Messages

logger = logging.getLogger("rewardkit.judges")

OnError: TypeAlias = Literal["nan", "raise"]


def check_on_error(on_error: str) -> None:
    """Reject an unknown failure policy."""
    if on_error not in ("nan", "raise"):
        raise ValueError(f"on_error must be 'nan' (score NaN, keep going) or 'raise', got {on_error!r}")


def image_data_url(image: ImageInput, *, max_side: int = 512, quality: int = 80) -> str:
    """Encode an image as a ``data:image/jpeg;base64,...`` URL.

    The image is shrunk so that its longer side is at most ``max_side`` (aspect kept) and
    saved as JPEG at ``quality`` — the OmniRef judge's settings (512, 80). The encoding is
    deterministic, so identical images give identical requests (and cache hits).
    """
    from PIL import Image

    tensor = as_image(image)
    array = (tensor.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()
    pil = Image.fromarray(array)
    if max(pil.size) > max_side:
        pil.thumbnail((max_side, max_side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class JudgeSettings:
    """What every judge keeps: its client, failure policy, name and how images are sent.

    Args:
        client: the chat client that asks the MLLM.
        on_error: ``"nan"`` (score NaN, keep going) or ``"raise"``.
        max_side: longest image side sent.
        jpeg_quality: JPEG quality of the sent images.
        name: the reward's name.
    """

    def __init__(
        self, client: ChatClient, *, on_error: OnError, max_side: int, jpeg_quality: int, name: str
    ) -> None:
        check_on_error(on_error)
        self.client = client
        self.on_error: OnError = on_error
        self.max_side = max_side
        self.jpeg_quality = jpeg_quality
        self.name = name

    def _url(self, image: ImageInput) -> str:
        return image_data_url(image, max_side=self.max_side, quality=self.jpeg_quality)


def text_part(text: str) -> dict[str, Any]:
    """An OpenAI content part holding text."""
    return {"type": "text", "text": text}


def image_part(url: str) -> dict[str, Any]:
    """An OpenAI content part holding an image URL (or data URL)."""
    return {"type": "image_url", "image_url": {"url": url}}


def ask(client: ChatClient, requests: Sequence[Messages], *, on_error: OnError) -> list[str | None]:
    """Send requests concurrently; return each answer's text, or ``None`` for a failed request."""
    texts: list[str | None] = []
    for result in client.complete_many(requests):
        if isinstance(result, JudgeError):
            if on_error == "raise":
                raise result
            texts.append(None)
        else:
            texts.append(result.content)
    return texts


def parse_failed(client: ChatClient, request: Messages, what: str, text: str, on_error: OnError) -> None:
    """Handle an unparseable answer: drop it from the cache (a rerun asks again), log or raise."""
    client.forget(request)
    snippet = text.strip().replace("\n", " ")[:120]
    message = f"could not read a {what} from the judge's answer: {snippet!r}"
    if on_error == "raise":
        raise JudgeError(message)
    logger.warning("%s", message)
