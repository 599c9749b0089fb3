"""The build config (``rewardkit data build --config``) and the provider registry.

Each stage names a provider: a registered name (the offline ones below) or ``"module:attr"``,
a factory called with the stage's ``options``. Every field is checked on load; unknown keys
and bad values are reported together, one line each.
"""

from collections.abc import Callable
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rewardkit.data.pipeline import filters as builtin_filters
from rewardkit.data.pipeline import procedural
from rewardkit.data.pipeline.runner import Providers
from rewardkit.data.pipeline.steps import (
    Grounder,
    ImageProvider,
    PoseEstimator,
    RecordFilter,
    Segmenter,
    TextProvider,
)

__all__ = ["STAGES", "DataConfig", "ProviderSpec", "RecordsConfig", "build_providers", "register_provider"]

#: Stage → the protocol its provider must satisfy.
STAGES: Final[dict[str, type]] = {
    "text": TextProvider,
    "images": ImageProvider,
    "grounding": Grounder,
    "segmentation": Segmenter,
    "pose": PoseEstimator,
    "filters": RecordFilter,
}


def _chat_text(**options: Any) -> Any:
    from rewardkit.data.pipeline.chat_text import ChatText  # loads the judges' client on use only

    return ChatText(**options)


def _model_images(**options: Any) -> Any:
    from rewardkit.data.pipeline.model_images import ModelImages  # loads diffusers on use only

    return ModelImages(**options)


def _vision(name: str) -> Callable[..., Any]:
    def factory(**options: Any) -> Any:
        from rewardkit.data.pipeline import vision_models  # loads transformers on use only

        return getattr(vision_models, name)(**options)

    factory.__name__ = name
    return factory


_REGISTRY: dict[str, dict[str, Callable[..., Any]]] = {
    "text": {"procedural": procedural.ProceduralText, "chat": _chat_text},
    "images": {"procedural": procedural.ProceduralImages, "models": _model_images},
    "grounding": {
        "procedural": procedural.ProceduralGrounder,
        "grounding-dino": _vision("GroundingDinoGrounder"),
    },
    "segmentation": {
        "procedural": procedural.ProceduralSegmenter,
        "colour": procedural.ColourSegmenter,
        "sam": _vision("SamSegmenter"),
    },
    "pose": {"procedural": procedural.ProceduralPose, "vitpose": _vision("VitPoseEstimator")},
    "filters": {
        "subjects_found": builtin_filters.SubjectsFound,
        "min_subject_area": builtin_filters.MinSubjectArea,
        "distinct_references": builtin_filters.DistinctReferences,
        "reward": builtin_filters.RewardFilter,
        "lighting_match": builtin_filters.LightingMatch,
    },
}


def register_provider(stage: str, name: str, factory: Callable[..., Any]) -> None:
    """Make ``factory(**options)`` selectable as ``{stage: {provider: name}}`` in a build config.

    Raises:
        ValueError: an unknown stage or a name already taken.
    """
    if stage not in _REGISTRY:
        raise ValueError(f"stage must be one of {sorted(_REGISTRY)}, got {stage!r}")
    if name in _REGISTRY[stage]:
        raise ValueError(f"a {stage} provider named {name!r} is already registered")
    _REGISTRY[stage][name] = factory


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderSpec(_Section):
    """One stage's provider: a registered name or ``module:attr``, and its keyword options."""

    provider: str
    options: dict[str, Any] = Field(default_factory=dict)


class RecordsConfig(_Section):
    """How many records, of which type combinations, at which size."""

    count: Annotated[int, Field(ge=1)] = 200
    seed: int = 0
    test_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.1
    size: Annotated[int, Field(ge=32)] = 512
    categories: Literal["all"] | dict[str, list[Annotated[int, Field(ge=1, le=7)]]] = "all"

    @field_validator("categories")
    @classmethod
    def _known(cls, value: Any) -> Any:
        from rewardkit.data.omniref_mini import CATEGORIES

        if isinstance(value, dict):
            unknown = sorted(set(value) - set(CATEGORIES))
            if unknown:
                raise ValueError(f"unknown categories {unknown}; known: {sorted(CATEGORIES)}")
        return value

    def category_counts(self) -> dict[str, list[int]]:
        """The type combinations with their reference counts (``"all"``: OmniRef-Bench's)."""
        from rewardkit.data.omniref_mini import CATEGORIES

        return (
            {k: list(v) for k, v in CATEGORIES.items()} if self.categories == "all" else dict(self.categories)
        )


class DataConfig(_Section):
    """A build: where it goes, what it makes, and a provider per stage.

    The defaults are the offline procedural providers, so ``DataConfig()`` builds on a CPU.
    """

    output: str = "runs/data"
    records: RecordsConfig = RecordsConfig()
    text: ProviderSpec = ProviderSpec(provider="procedural")
    images: ProviderSpec = ProviderSpec(provider="procedural")
    grounding: ProviderSpec = ProviderSpec(provider="procedural")
    segmentation: ProviderSpec = ProviderSpec(provider="procedural")
    pose: ProviderSpec | None = ProviderSpec(provider="procedural")
    filters: list[ProviderSpec] = Field(
        default_factory=lambda: [
            ProviderSpec(provider="subjects_found"),
            ProviderSpec(provider="min_subject_area"),
        ]
    )


def _resolve(stage: str, spec: ProviderSpec) -> Any:
    if ":" in spec.provider:
        import importlib

        module, _, attr = spec.provider.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"{stage}.provider: cannot import {spec.provider!r} ({err})") from err
    elif spec.provider in _REGISTRY[stage]:
        factory = _REGISTRY[stage][spec.provider]
    else:
        raise ValueError(
            f"{stage}.provider: unknown {spec.provider!r}; registered: {sorted(_REGISTRY[stage])} "
            "(or give 'module:attr')"
        )
    try:
        provider = factory(**spec.options)
    except TypeError as err:
        raise ValueError(f"{stage}.options: {err}") from err
    if not isinstance(provider, STAGES[stage]):
        raise ValueError(f"{stage}.provider: {spec.provider!r} does not implement {STAGES[stage].__name__}")
    return provider


def build_providers(config: DataConfig) -> Providers:
    """Instantiate every stage's provider.

    Raises:
        ValueError: an unknown provider, bad options, or a provider missing its protocol's method.
    """
    return Providers(
        text=_resolve("text", config.text),
        images=_resolve("images", config.images),
        grounder=_resolve("grounding", config.grounding),
        segmenter=_resolve("segmentation", config.segmentation),
        pose=None if config.pose is None else _resolve("pose", config.pose),
        filters=[_resolve("filters", spec) for spec in config.filters],
    )
