"""Name → builder registries for rewards and image encoders.

``REWARDS`` and ``ENCODERS`` are plain dicts; add your own entries to them. Lookups of an
unknown name raise a ``ValueError`` that lists the registered names.

| reward | what | default compares against |
|---|---|---|
| ``image_similarity`` | cosine of any encoder's features (default SigLIP2 ``flat``), optional DRS | target |
| ``siglip_similarity`` | SigLIP2 (``flat``/``mean_pool``/``pooler``), optional DRS (DyRef) | target |
| ``clip_similarity`` | CLIP projected image embedding | target |
| ``dinov2_similarity`` | DINOv2 CLS (or mean) token | target |
| ``csd_score`` | CSD style embedding cosine, NaN without a style reference | first style reference |
| ``offline_similarity`` | EfficientNet-Lite0 spatial feature correlation (stand-in for SigLIP2) | target |
| ``offline_style`` | EfficientNet-Lite0 Gram matrices (offline stand-in for CSD) | first style reference |
| ``omniref_judge`` | MLLM, 6 dimensions 0–10 | prompt + references |
| ``dual_ref_yes_no`` | MLLM, seed 003's three yes/no questions | prompt + references |
| ``weighted_ref_viescore`` | MLLM, seed 004's W × SC × PQ (0–100) | reference image + sources |
"""

from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

from rewardkit.core.scaling import RewardScaling
from rewardkit.rewards.csd import CSDConfig, csd_encoder
from rewardkit.rewards.encoders import (
    DeviceLike,
    DtypeLike,
    ImageEncoder,
    clip_encoder,
    dinov2_encoder,
    open_clip_encoder,
    siglip_encoder,
)
from rewardkit.rewards.judges import ChatClient, DualRefJudge, OmniRefJudge, WeightedRefVIEScore
from rewardkit.rewards.offline import effnet_encoder, gram_encoder
from rewardkit.rewards.protocol import RewardModel
from rewardkit.rewards.similarity import Reduce, SimilarityConfig, SimilarityReward

__all__ = [
    "ENCODERS",
    "OFFLINE_SPATIAL_TAU",
    "REWARDS",
    "build_clip_similarity",
    "build_csd_score",
    "build_dinov2_similarity",
    "build_dual_ref_yes_no",
    "build_image_similarity",
    "build_offline_similarity",
    "build_offline_style",
    "build_omniref_judge",
    "build_siglip_similarity",
    "build_weighted_ref_viescore",
    "list_encoders",
    "list_rewards",
    "load_encoder",
    "load_reward",
]

#: Image encoders by name; each builder returns an [`ImageEncoder`][rewardkit.ImageEncoder].
ENCODERS: dict[str, Callable[..., ImageEncoder]] = {
    "siglip": siglip_encoder,
    "clip": clip_encoder,
    "dinov2": dinov2_encoder,
    "open_clip": open_clip_encoder,
    "csd": csd_encoder,
    "effnet": effnet_encoder,
    "gram": gram_encoder,
}


def _lookup(table: Mapping[str, Callable[..., Any]], kind: str, name: str) -> Callable[..., Any]:
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown {kind} {name!r}; registered {kind}s: {sorted(table)}")
    return table[name]


def _build(builder: Callable[..., Any], kind: str, name: str, options: Mapping[str, Any]) -> Any:
    try:
        return builder(**options)
    except TypeError as err:
        if "unexpected keyword argument" in str(err) or "got multiple values" in str(err):
            raise TypeError(f"{kind} {name!r}: {err} (see {builder.__module__}.{builder.__name__})") from err
        raise


def list_encoders() -> list[str]:
    """Names of the registered image encoders, sorted."""
    return sorted(ENCODERS)


def load_encoder(name: str, **options: Any) -> ImageEncoder:
    """Build a registered image encoder: ``load_encoder("siglip", pretrained=..., mode="flat")``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    encoder: ImageEncoder = _build(_lookup(ENCODERS, "encoder", name), "encoder", name, options)
    return encoder


def _encoder(encoder: str | ImageEncoder, options: Mapping[str, Any]) -> ImageEncoder:
    if isinstance(encoder, str):
        return load_encoder(encoder, **options)
    if options:
        raise ValueError(f"encoder options {sorted(options)} were given with an already built encoder")
    if not isinstance(encoder, ImageEncoder):
        raise TypeError(f"encoder must be a registered name or an ImageEncoder, got {type(encoder).__name__}")
    return encoder


def build_image_similarity(
    *,
    encoder: str | ImageEncoder = "siglip",
    compare: str = "target",
    reduce: Reduce = "mean",
    drs: bool = False,
    tau: float = 0.65,
    k_mode: str = "increase",
    k0: float = 10.0,
    k1: float = 3.0,
    n_min: int = 2,
    n_max: int = 6,
    scaling: RewardScaling | None = None,
    name: str = "image_similarity",
    **encoder_options: Any,
) -> SimilarityReward:
    r"""``image_similarity``: cosine of encoder features vs the target(s), optional DRS.

    Args:
        encoder: a registered encoder name (``list_encoders()``) or an
            [`ImageEncoder`][rewardkit.ImageEncoder].
        compare: ``"target"`` or a reference type; see [`SimilarityConfig`][rewardkit.SimilarityConfig].
        reduce: ``"mean"``, ``"max"`` or ``"first"``.
        drs: apply DRS per comparison image before the reduce.
        tau: DRS threshold.
        k_mode: DRS steepness mode.
        k0: DRS base steepness.
        k1: DRS steepness per reference.
        n_min: $n_{\min}$ of ``"increase"``.
        n_max: $n_{\max}$ of ``"decrease"``.
        scaling: custom transform instead of DRS.
        name: the reward's name.
        **encoder_options: passed to the encoder builder (``pretrained``, ``config``, ``mode``,
            ``batch_size``, ``device``, ``dtype``, ...).
    """
    config = SimilarityConfig(
        compare=compare, reduce=reduce, drs=drs, tau=tau, k_mode=k_mode, k0=k0, k1=k1,
        n_min=n_min, n_max=n_max, scaling=scaling,
    )  # fmt: skip
    return SimilarityReward(_encoder(encoder, encoder_options), config, name=name)


def build_siglip_similarity(
    *, encoder: ImageEncoder | None = None, name: str = "siglip_similarity", **options: Any
) -> SimilarityReward:
    """``siglip_similarity``: SigLIP2 similarity to the target.

    DyRef's setting is ``mode="flat"``, ``drs=True``, ``tau=0.65``, ``k_mode="increase"``.

    Takes the options of [`build_image_similarity`][rewardkit.rewards.registry.build_image_similarity]
    and of [`siglip_encoder`][rewardkit.siglip_encoder].
    """
    return build_image_similarity(encoder=encoder if encoder is not None else "siglip", name=name, **options)


def build_clip_similarity(
    *, encoder: ImageEncoder | None = None, name: str = "clip_similarity", **options: Any
) -> SimilarityReward:
    """``clip_similarity``: CLIP image-embedding similarity.

    Takes the options of [`build_image_similarity`][rewardkit.rewards.registry.build_image_similarity]
    and of [`clip_encoder`][rewardkit.clip_encoder].
    """
    return build_image_similarity(encoder=encoder if encoder is not None else "clip", name=name, **options)


def build_dinov2_similarity(
    *, encoder: ImageEncoder | None = None, name: str = "dinov2_similarity", **options: Any
) -> SimilarityReward:
    """``dinov2_similarity``: DINOv2 similarity.

    Takes the options of [`build_image_similarity`][rewardkit.rewards.registry.build_image_similarity]
    and of [`dinov2_encoder`][rewardkit.dinov2_encoder].
    """
    return build_image_similarity(encoder=encoder if encoder is not None else "dinov2", name=name, **options)


def build_csd_score(
    *,
    weights: str | None = None,
    config: CSDConfig | None = None,
    encoder: ImageEncoder | None = None,
    batch_size: int = 16,
    device: DeviceLike = None,
    dtype: DtypeLike = None,
    name: str = "csd_score",
) -> SimilarityReward:
    """``csd_score``: CSD style cosine vs the sample's first style reference; NaN if it has none.

    Args:
        weights: CSD checkpoint (see [`csd_encoder`][rewardkit.csd_encoder]).
        config: CSD architecture (with ``weights=None``: random weights, for tests).
        encoder: an already built style encoder instead of ``weights``/``config``.
        batch_size: images per forward pass.
        device: ``None`` → CUDA if available, else CPU.
        dtype: ``None`` → float32.
        name: the reward's name.
    """
    if encoder is None:
        encoder = csd_encoder(weights, config=config, batch_size=batch_size, device=device, dtype=dtype)
    return SimilarityReward(encoder, SimilarityConfig(compare="style", reduce="first"), name=name)


#: Default DRS threshold of ``offline_similarity`` with its default ``mode="spatial"`` encoder,
#: calibrated on 60 OmniRef-mini targets at ``image_size=128`` (see the Rewards page): between a
#: recognisably right composition (target blurred by 2 px: 10th percentile 0.73) and a wrong
#: one (another target of the category: 90th percentile 0.60; the average scene, constant
#: images: lower). It happens to equal DyRef's τ for SigLIP2.
OFFLINE_SPATIAL_TAU: Final[float] = 0.65


def build_offline_similarity(
    *, encoder: ImageEncoder | None = None, name: str = "offline_similarity", **options: Any
) -> SimilarityReward:
    r"""``offline_similarity``: EfficientNet-Lite0 spatial similarity to the target (offline stand-in).

    Uses [`effnet_encoder`][rewardkit.effnet_encoder] with ``mode="spatial"`` unless another
    ``mode`` (``"pooled"``, ``"flat"``) or an ``encoder`` is given: the raw similarity is the
    mean over the pooled pixels and stages 1–3 of the cosine of the channel-centred feature
    maps, position by position, plus the uncentred pooled pixels with weight
    $\alpha$ = ``SPATIAL_COLOUR_WEIGHT`` (0.25, in `rewardkit.rewards.offline`):

    $$
    s(x, y) = \frac{1-\alpha}{L}\sum_{l=1}^{L}
    \frac{\langle \tilde F_l(x), \tilde F_l(y)\rangle}{\lVert\tilde F_l(x)\rVert\,\lVert\tilde F_l(y)\rVert}
    + \alpha \cos\big(P(x), P(y)\big),
    $$

    so only the right composition scores high; a constant image scores about $\alpha$. (The old
    default, globally pooled features, let a constant pale image score close to the target.)
    With the spatial encoder the DRS threshold defaults to
    [`OFFLINE_SPATIAL_TAU`][rewardkit.rewards.registry.OFFLINE_SPATIAL_TAU].

    Takes the options of [`build_image_similarity`][rewardkit.rewards.registry.build_image_similarity]
    and of [`effnet_encoder`][rewardkit.effnet_encoder].
    """
    if encoder is None:
        options.setdefault("mode", "spatial")
        if options["mode"] == "spatial":
            options.setdefault("tau", OFFLINE_SPATIAL_TAU)
    return build_image_similarity(encoder=encoder if encoder is not None else "effnet", name=name, **options)


def build_offline_style(
    *, encoder: ImageEncoder | None = None, name: str = "offline_style", **encoder_options: Any
) -> SimilarityReward:
    """``offline_style``: Gram-matrix style cosine vs the first style reference (offline stand-in for CSD).

    Takes the options of [`gram_encoder`][rewardkit.gram_encoder], or ``encoder=`` an already
    built style encoder. Defaults to covariances (``center=True``) on a reflect-padded image
    (``reflect_pad=True``): uncentred Gram matrices are dominated by the mean activations,
    so a constant image scored 0.6–0.7 against a style reference whose own scene scored 0.9,
    and Stage II learned to paint style instances black; with both, constants score about
    0.2–0.3, a 2-px blur of the styled target 0.53 and the target 0.78 (12 OmniRef-mini
    ``subject_style`` instances at 128 px). Samples without a style reference get NaN.
    """
    if encoder is None:
        encoder_options.setdefault("center", True)
        encoder_options.setdefault("reflect_pad", True)
        encoder = gram_encoder(**encoder_options)
    elif encoder_options:
        raise ValueError(
            f"encoder options {sorted(encoder_options)} were given with an already built encoder"
        )
    return SimilarityReward(encoder, SimilarityConfig(compare="style", reduce="first"), name=name)


def _client(client: ChatClient | None, options: Mapping[str, Any]) -> ChatClient:
    if client is not None:
        if options:
            raise ValueError(f"client options {sorted(options)} were given with an already built client")
        return client
    return ChatClient(**options)


def build_omniref_judge(
    *,
    client: ChatClient | None = None,
    applicability: Literal["metadata", "model"] = "metadata",
    on_error: Literal["nan", "raise"] = "nan",
    name: str = "omniref_judge",
    **client_options: Any,
) -> OmniRefJudge:
    """``omniref_judge``: [`OmniRefJudge`][rewardkit.OmniRefJudge] with a client from ``client_options``.

    ``client_options`` are [`ChatClientConfig`][rewardkit.ChatClientConfig] fields
    (``base_url``, ``api_key``, ``model``, ``cache_dir``, ...); unset ones come from the environment.
    """
    return OmniRefJudge(
        _client(client, client_options), applicability=applicability, on_error=on_error, name=name
    )


def build_dual_ref_yes_no(
    *,
    client: ChatClient | None = None,
    mode: Literal["joint", "separate"] = "joint",
    on_error: Literal["nan", "raise"] = "nan",
    name: str = "dual_ref_yes_no",
    **client_options: Any,
) -> DualRefJudge:
    """``dual_ref_yes_no``: seed 003's [`DualRefJudge`][rewardkit.DualRefJudge]."""
    return DualRefJudge(_client(client, client_options), mode=mode, on_error=on_error, name=name)


def build_weighted_ref_viescore(
    *,
    client: ChatClient | None = None,
    presence_client: ChatClient | None = None,
    face_similarity: Callable[..., float] | None = None,
    weighting: bool = True,
    on_error: Literal["nan", "raise"] = "nan",
    name: str = "weighted_ref_viescore",
    **client_options: Any,
) -> WeightedRefVIEScore:
    """``weighted_ref_viescore``: seed 004's [`WeightedRefVIEScore`][rewardkit.WeightedRefVIEScore]."""
    return WeightedRefVIEScore(
        _client(client, client_options),
        presence_client=presence_client,
        face_similarity=face_similarity,
        weighting=weighting,
        on_error=on_error,
        name=name,
    )


#: Rewards by name; each builder returns a [`RewardModel`][rewardkit.RewardModel].
REWARDS: dict[str, Callable[..., RewardModel]] = {
    "image_similarity": build_image_similarity,
    "siglip_similarity": build_siglip_similarity,
    "clip_similarity": build_clip_similarity,
    "dinov2_similarity": build_dinov2_similarity,
    "csd_score": build_csd_score,
    "offline_similarity": build_offline_similarity,
    "offline_style": build_offline_style,
    "omniref_judge": build_omniref_judge,
    "dual_ref_yes_no": build_dual_ref_yes_no,
    "weighted_ref_viescore": build_weighted_ref_viescore,
}


def list_rewards() -> list[str]:
    """Names of the registered rewards, sorted.

    Example:
        >>> import rewardkit
        >>> "csd_score" in rewardkit.list_rewards()
        True
    """
    return sorted(REWARDS)


def load_reward(name: str, **options: Any) -> RewardModel:
    """Build a registered reward by name.

    Example: ``load_reward("siglip_similarity", pretrained="/models/siglip2-base-patch16-384",
    drs=True, tau=0.65, dtype="bfloat16")``.

    Args:
        name: a name from [`list_rewards`][rewardkit.list_rewards].
        **options: the builder's keyword options.

    Returns:
        The reward.

    Raises:
        ValueError: unknown name (the message lists the registered names).
        TypeError: an option the builder does not take.
    """
    reward: RewardModel = _build(_lookup(REWARDS, "reward", name), "reward", name, options)
    return reward
