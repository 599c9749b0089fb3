"""Stages 3 and 4 on transformers models: Grounding DINO boxes, SAM masks, ViTPose keypoints.

Each provider loads a local model folder (or a hub id when online) with ``from_pretrained``.
``"tiny"`` builds a tiny random-weight model of the same classes in code and loads it through
the same ``from_pretrained`` path, so the stages are tested on a CPU without downloads (their
outputs are then meaningless, but every shape, coordinate convention and call is the real one).
"""

import importlib
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rewardkit.data.pipeline.steps import Box, Image, RecordPlan, check_model_path

__all__ = ["GroundingDinoGrounder", "SamSegmenter", "VitPoseEstimator", "tiny_model"]


def _device(device: str | None) -> str:
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def _transformers() -> Any:
    """The transformers module, typed loosely (its classes take config-specific keywords)."""
    return importlib.import_module("transformers")


def _tiny_grounding_dino(directory: Path) -> None:
    tf = _transformers()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "a", "an", "the", "person"]
    tokenizer = tf.BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    swin = {
        "image_size": 64,
        "patch_size": 4,
        "embed_dim": 8,
        "depths": [1, 1],
        "num_heads": [1, 1],
        "window_size": 2,
        "out_features": ["stage1", "stage2"],
    }
    bert = {
        "vocab_size": len(words),
        "hidden_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "max_position_embeddings": 64,
    }
    sizes = {
        "d_model": 32,
        "encoder_layers": 1,
        "decoder_layers": 2,
        "encoder_attention_heads": 2,
        "decoder_attention_heads": 2,
        "encoder_ffn_dim": 16,
        "decoder_ffn_dim": 16,
        "num_queries": 10,
        "num_feature_levels": 2,
        "encoder_n_points": 2,
        "decoder_n_points": 2,
        "max_text_len": 32,
    }
    config = tf.GroundingDinoConfig(
        backbone_config=tf.SwinConfig(**swin).to_dict(), text_config=tf.BertConfig(**bert).to_dict(), **sizes
    )
    tf.GroundingDinoForObjectDetection(config).save_pretrained(directory)
    image_processor = tf.GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64})
    tf.GroundingDinoProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(directory)


def _tiny_sam(directory: Path) -> None:
    tf = _transformers()
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 64,
        "patch_size": 8,
        "output_channels": 16,
        "mlp_dim": 64,
        "global_attn_indexes": [1],
        "window_size": 4,
        "num_pos_feats": 8,
    }
    prompt = {"hidden_size": 16, "image_size": 64, "patch_size": 8, "mask_input_channels": 4}
    decoder = {
        "hidden_size": 16,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "mlp_dim": 32,
        "iou_head_hidden_dim": 16,
    }
    config = tf.SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    tf.SamModel(config).save_pretrained(directory)
    image_processor = tf.SamImageProcessor(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    tf.SamProcessor(image_processor).save_pretrained(directory)


def _tiny_vitpose(directory: Path) -> None:
    tf = _transformers()
    backbone = {
        "image_size": (64, 48),
        "patch_size": (8, 8),
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "part_features": 8,
        "out_indices": [2],
    }
    backbone_config = tf.VitPoseBackboneConfig(**backbone).to_dict()
    config = tf.VitPoseConfig(backbone_config=backbone_config, use_simple_decoder=True, num_labels=17)
    tf.VitPoseForPoseEstimation(config).save_pretrained(directory)
    tf.VitPoseImageProcessor(size={"height": 64, "width": 48}).save_pretrained(directory)


_TINY = {"grounding-dino": _tiny_grounding_dino, "sam": _tiny_sam, "vitpose": _tiny_vitpose}


def tiny_model(kind: str, directory: str | Path) -> Path:
    """Write a tiny random-weight ``"grounding-dino"``, ``"sam"`` or ``"vitpose"`` model folder.

    Deterministic (seed 0, the global RNG untouched); loaded back with ``from_pretrained``.
    """
    import torch

    if kind not in _TINY:
        raise ValueError(f"kind must be one of {sorted(_TINY)}, got {kind!r}")
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        _TINY[kind](folder)
    return folder


class _Loaded:
    """Resolves ``"tiny"`` to a scratch folder that lives as long as the provider."""

    def _folder(self, kind: str, path: str) -> str:
        if path != "tiny":
            return path
        self._scratch = tempfile.TemporaryDirectory(prefix="rewardkit-tiny-")
        return str(tiny_model(kind, self._scratch.name))


class GroundingDinoGrounder(_Loaded):
    """Boxes from Grounding DINO: one query per subject name, its best box above the thresholds.

    Args:
        path: a Grounding DINO folder (e.g. ``grounding-dino-tiny``), or ``"tiny"``.
        threshold: smallest box score accepted.
        text_threshold: smallest text-token score accepted.
        device: where it runs (None: CUDA if available).
    """

    def __init__(
        self, path: str, *, threshold: float = 0.35, text_threshold: float = 0.25, device: str | None = None
    ) -> None:
        check_model_path("path", path)
        folder = self._folder("grounding-dino", path)
        tf = _transformers()
        self.device = _device(device)
        self.processor: Any = tf.AutoProcessor.from_pretrained(folder)
        self.model: Any = tf.GroundingDinoForObjectDetection.from_pretrained(folder).to(self.device).eval()
        self.threshold, self.text_threshold = float(threshold), float(text_threshold)

    def boxes(self, image: Image, names: Sequence[str], *, plan: RecordPlan) -> list[Box | None]:
        """The best box of each name (``None`` below the thresholds), in target pixels."""
        import torch

        h, w = image.shape[:2]
        found: list[Box | None] = []
        for name in names:
            query = name.strip().lower().rstrip(".") + "."  # Grounding DINO reads "phrase." queries
            inputs = self.processor(images=image, text=query, return_tensors="pt").to(self.device)
            with torch.no_grad():
                outputs = self.model(**inputs)
            (result,) = self.processor.post_process_grounded_object_detection(
                outputs,
                inputs.input_ids,
                threshold=self.threshold,
                text_threshold=self.text_threshold,
                target_sizes=[(h, w)],
            )
            if len(result["scores"]) == 0:
                found.append(None)
                continue
            best = result["boxes"][int(result["scores"].argmax())].tolist()
            x1, y1 = max(0.0, best[0]), max(0.0, best[1])
            x2, y2 = min(float(w), best[2]), min(float(h), best[3])
            found.append((x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None)
        return found


class SamSegmenter(_Loaded):
    """Masks from SAM prompted with each box (one mask per box, ``multimask_output=False``).

    Args:
        path: a SAM folder (e.g. ``sam-vit-base``), or ``"tiny"``.
        device: where it runs (None: CUDA if available).
    """

    def __init__(self, path: str, *, device: str | None = None) -> None:
        check_model_path("path", path)
        folder = self._folder("sam", path)
        tf = _transformers()
        self.device = _device(device)
        self.processor: Any = tf.SamProcessor.from_pretrained(folder)
        self.model: Any = tf.SamModel.from_pretrained(folder).to(self.device).eval()

    def masks(self, image: Image, boxes: Sequence[Box], *, plan: RecordPlan) -> list[NDArray[np.bool_]]:
        """One `(H, W)` mask per box."""
        import torch

        if not boxes:
            return []
        inputs = self.processor(images=image, input_boxes=[[list(b) for b in boxes]], return_tensors="pt")
        with torch.no_grad():
            outputs = self.model(**inputs.to(self.device), multimask_output=False)
        (masks,) = self.processor.image_processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu()
        )  # (boxes, 1, H, W) bool
        return [np.asarray(m[0].numpy(), dtype=bool) for m in masks]


class VitPoseEstimator(_Loaded):
    """COCO-17 keypoints from ViTPose (top-down, the whole target as the person box).

    Args:
        path: a ViTPose folder (e.g. ``vitpose-base-simple``), or ``"tiny"``.
        min_mean_score: below this mean keypoint score the target has no person (None).
        device: where it runs (None: CUDA if available).
    """

    def __init__(self, path: str, *, min_mean_score: float = 0.3, device: str | None = None) -> None:
        check_model_path("path", path)
        folder = self._folder("vitpose", path)
        tf = _transformers()
        self.device = _device(device)
        self.processor: Any = tf.VitPoseImageProcessor.from_pretrained(folder)
        self.model: Any = tf.VitPoseForPoseEstimation.from_pretrained(folder).to(self.device).eval()
        labels = self.model.config.num_labels
        if labels != 17:
            raise ValueError(f"path: a COCO-17 keypoint model is needed, this one has {labels} keypoints")
        self.min_mean_score = float(min_mean_score)

    def keypoints(self, image: Image, *, plan: RecordPlan) -> NDArray[np.float64] | None:
        """`(17, 3)` keypoints (x, y, score) in target pixels, or None."""
        import torch

        h, w = image.shape[:2]
        boxes = [[[0.0, 0.0, float(w), float(h)]]]  # COCO (x, y, width, height)
        inputs = self.processor(images=image, boxes=boxes, return_tensors="pt").to(self.device)
        with torch.no_grad():
            outputs = self.model(**inputs)
        (person,) = self.processor.post_process_pose_estimation(outputs, boxes=boxes)[0]
        scores = person["scores"].cpu().numpy().astype(np.float64)
        if scores.mean() < self.min_mean_score:
            return None
        xy = person["keypoints"].cpu().numpy().astype(np.float64)
        return np.concatenate([xy, scores[:, None]], axis=1)
