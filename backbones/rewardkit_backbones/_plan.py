"""Shared helpers of the backbones' memory-planner hooks: shipped configs, meta-device builds."""

import inspect
import json
from importlib import resources
from types import ModuleType
from typing import Any

import torch

from rewardkit.planning.model import count_parameters

__all__ = ["build_module", "config_kwargs", "load_config", "tiny_components"]


def load_config(package: str, *parts: str) -> dict[str, Any]:
    """The JSON config shipped as package data: ``<package>/configs/<parts...>``."""
    path = resources.files(package).joinpath("configs", *parts)
    if not path.is_file():
        raise FileNotFoundError(f"no shipped config {'/'.join(parts)!r} in package {package!r}")
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"config {'/'.join(parts)!r} of {package!r} must be a JSON object")
    return data


def config_kwargs(cls: type, config: dict[str, Any]) -> dict[str, Any]:
    """Keep the keys of ``config`` that ``cls.__init__`` accepts.

    Published configs carry bookkeeping keys (``_class_name``) and keys older or newer versions
    of the class no longer take (``pooled_projection_dim``, ``force_upcast``).
    """
    accepted = inspect.signature(cls.__init__).parameters
    return {k: v for k, v in config.items() if k in accepted and k != "self"}


def build_module(cls: type, config: dict[str, Any], device: str | torch.device) -> Any:
    """``cls(**filtered config)`` built on ``device`` (``meta``: shapes only, no weights)."""
    with torch.device(device):
        return cls(**config_kwargs(cls, config))


def tiny_components(tiny: ModuleType) -> tuple[dict[str, Any], dict[str, Any], int]:
    """A backbone's ``tiny`` module → its transformer and VAE configs and its text encoder's size.

    The module provides ``TINY_TRANSFORMER_CONFIG``, ``TINY_VAE_CONFIG`` and
    ``tiny_text_encoder(tokenizer)``; the text encoder is built on ``meta`` only to be counted.
    """
    from rewardkit_backbones._tokenizer import make_byte_tokenizer

    with torch.device("meta"):
        text_params = count_parameters(tiny.tiny_text_encoder(make_byte_tokenizer()))
    return dict(tiny.TINY_TRANSFORMER_CONFIG), dict(tiny.TINY_VAE_CONFIG), text_params
