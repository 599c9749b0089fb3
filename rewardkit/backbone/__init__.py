"""Backbone plug-ins: the protocol, the entry-point registry, rollouts and the training forward.

Nothing here imports diffusers or transformers; the adapters (``rewardkit_backbones``) are
imported only when :func:`load_backbone` or :func:`make_tiny_checkpoint` asks for one.
"""

from rewardkit.backbone.protocol import Backbone, BackbonePlugin, Condition, ReferenceImage
from rewardkit.backbone.registry import (
    ENTRY_POINT_GROUP,
    get_plugin,
    list_backbones,
    load_backbone,
    make_tiny_checkpoint,
)
from rewardkit.backbone.rollout import Rollout, StepLogProb, Trajectory, rollout, step_log_prob

__all__ = [
    "ENTRY_POINT_GROUP",
    "Backbone",
    "BackbonePlugin",
    "Condition",
    "ReferenceImage",
    "Rollout",
    "StepLogProb",
    "Trajectory",
    "get_plugin",
    "list_backbones",
    "load_backbone",
    "make_tiny_checkpoint",
    "rollout",
    "step_log_prob",
]
