"""Datasets: OmniRef-mini, a procedural multi-reference set with exact ground truth."""

from rewardkit.data.omniref_mini import CATEGORIES, SyntheticInstance, make_instance, write_omniref_mini

__all__ = ["CATEGORIES", "SyntheticInstance", "make_instance", "write_omniref_mini"]
