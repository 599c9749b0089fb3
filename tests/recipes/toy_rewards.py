"""A reward the tiny random backbones can move, registered for the recipe tests (``extra_imports``).

The tiny checkpoints' random VAE decoders normalise away most global changes of the latents
(brightness, contrast), but the balance between colour channels follows a consistent latent
direction on the tiny Qwen-Image-Edit checkpoint. ``redness`` (mean red minus mean blue) is
therefore a reward GRPO can raise within a few epochs on CPU. Its ``sim_raw`` extra (DAR's
difficulty signal, a value in [0, 1]) is the image's mean brightness. Importing this module
registers it.
"""

import torch

from rewardkit.rewards import REWARDS, RewardOutput
from rewardkit.rewards._images import as_image


class Redness:
    name = "redness"

    def __call__(self, images, contexts):  # type: ignore[no-untyped-def]
        items = images if isinstance(images, torch.Tensor) else torch.stack([as_image(i) for i in images])
        im = items.float()
        scores = im[:, 0].mean((1, 2)) - im[:, 2].mean((1, 2))
        return RewardOutput(scores, {"sim_raw": im.mean((1, 2, 3))})


REWARDS["redness"] = lambda **_: Redness()
