"""rewardkit: reward modeling and RL fine-tuning for flow-matching image models.

The top-level package re-exports the public API; everything listed in ``__all__`` is stable.
Importing rewardkit never imports diffusers or transformers.
"""

from rewardkit.core.advantages import gdpo_advantages, group_advantages
from rewardkit.core.kl import kl_gaussian, kl_v_based, kl_x_based
from rewardkit.core.loss import PolicyLossStats, clipped_policy_loss
from rewardkit.core.scaling import drs_scale, drs_steepness
from rewardkit.core.weighting import dar_weights

# --- SDE sampling (issue 3): names added below this line ---

__version__ = "0.1.0"

__all__ = [
    "PolicyLossStats",
    "__version__",
    "clipped_policy_loss",
    "dar_weights",
    "drs_scale",
    "drs_steepness",
    "gdpo_advantages",
    "group_advantages",
    "kl_gaussian",
    "kl_v_based",
    "kl_x_based",
]
