"""Backbone registry: adapters register by name through the ``rewardkit.backbones`` entry points.

The registry is the entry-point group itself (read with :mod:`importlib.metadata`), so any
installed package can add a backbone without touching rewardkit. Listing names imports
nothing; only :func:`load_backbone` / :func:`make_tiny_checkpoint` import the adapter module
(and with it diffusers/transformers).
"""

import os
import re
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from rewardkit.backbone.protocol import Backbone, BackbonePlugin

__all__ = ["ENTRY_POINT_GROUP", "get_plugin", "list_backbones", "load_backbone", "make_tiny_checkpoint"]

ENTRY_POINT_GROUP = "rewardkit.backbones"

# A hub repository id: "owner/name" (no leading '.', '/' or '~', exactly one slash).
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9_.-]+$")


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def list_backbones() -> list[str]:
    """Names of the installed backbones, sorted.

    Returns:
        The entry-point names of the ``rewardkit.backbones`` group (``"flux2-klein"`` and
        ``"qwen-image-edit-2511"`` ship with rewardkit). Nothing is imported.

    Example:
        >>> {"flux2-klein", "qwen-image-edit-2511"} <= set(list_backbones())
        True
    """
    return sorted(_entry_points())


def get_plugin(name: str) -> BackbonePlugin:
    """The :class:`BackbonePlugin` registered under ``name`` (imports its module).

    Args:
        name: a name from :func:`list_backbones`.

    Returns:
        The plugin object.

    Raises:
        ValueError: unknown name (the message lists the installed ones).
        ImportError: the adapter's dependencies are missing.
        TypeError: the entry point does not point at a ``BackbonePlugin``.
    """
    if not isinstance(name, str):
        raise TypeError(f"backbone name must be a str, got {type(name).__name__}")
    eps = _entry_points()
    if name not in eps:
        raise ValueError(
            f"unknown backbone {name!r}; installed backbones: {sorted(eps) or 'none'}. "
            f"Third-party backbones register under the entry-point group {ENTRY_POINT_GROUP!r}."
        )
    try:
        plugin = eps[name].load()
    except ImportError as err:
        raise ImportError(
            f"backbone {name!r} ({eps[name].value}) could not be imported: {err}. "
            "Install the backbone dependencies with: pip install 'rewardkit[backbones]'"
        ) from err
    if not isinstance(plugin, BackbonePlugin):
        raise TypeError(
            f"entry point {name!r} = {eps[name].value!r} must point at a rewardkit.backbone."
            f"BackbonePlugin, got {type(plugin).__name__}"
        )
    return plugin


def _resolve_weights(path: str | os.PathLike[str]) -> str:
    """A local directory (checked to exist) or a hub id ``owner/name``, as a string."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    local = Path(text).expanduser()
    if local.exists():
        if not local.is_dir():
            raise NotADirectoryError(f"weights path {text!r} is a file; pass the checkpoint directory")
        return str(local)
    if _HUB_ID.fullmatch(text):
        return text
    raise FileNotFoundError(
        f"weights directory {text!r} does not exist, and it is not a hub id of the form "
        "'owner/name'. Pass a local diffusers checkpoint directory or a hub id; for a tiny "
        "random-weight checkpoint run rewardkit.make_tiny_checkpoint(name, directory) first."
    )


def load_backbone(name: str, path: str | os.PathLike[str], **options: Any) -> Backbone:
    """Build a registered backbone from a local checkpoint directory or a hub id.

    Args:
        name: registry name, e.g. ``"qwen-image-edit-2511"`` or ``"flux2-klein"``.
        path: a local diffusers pipeline directory (e.g. one written by
            :func:`make_tiny_checkpoint`) or a hub id ``owner/name``.
        **options: adapter options (see the adapter's options dataclass in the backbones docs);
            unknown options raise.

    Returns:
        The backbone, ready for :func:`rewardkit.backbone.rollout`.

    Raises:
        ValueError: unknown backbone name (the message lists the installed ones) or option.
        FileNotFoundError: ``path`` is neither an existing directory nor a hub id.

    Example:
        >>> load_backbone("no-such-model", ".")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: unknown backbone 'no-such-model'; installed backbones: [...]...
    """
    plugin = get_plugin(name)
    return plugin.load(_resolve_weights(path), **options)


def make_tiny_checkpoint(name: str, directory: str | os.PathLike[str]) -> Path:
    """Write a tiny random-weight checkpoint of backbone ``name`` into ``directory``.

    The checkpoint uses the same diffusers/transformers classes as the real weights, with tiny
    sizes and a tokenizer built in code, saved with ``save_pretrained``; :func:`load_backbone`
    then reads it with ``from_pretrained``, so tests exercise the real loading path offline.

    Args:
        name: registry name.
        directory: output directory (created; existing files are overwritten).

    Returns:
        The checkpoint directory.
    """
    plugin = get_plugin(name)
    if not isinstance(directory, str | os.PathLike):
        raise TypeError(f"directory must be a str or os.PathLike, got {type(directory).__name__}")
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    return plugin.make_tiny_checkpoint(out)
