"""Providers: ground-truth boxes/keypoints, box masks, the registry, transformers zero-shot detectors."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rewardkit.evaluation import (
    BoxMasks,
    GroundTruthBoxes,
    GroundTruthKeypoints,
    KeypointProvider,
    MaskProvider,
    SubjectDetector,
    ZeroShotDetector,
    load_benchmark,
    load_provider,
)
from rewardkit.evaluation.benchmark import BenchInstance, Reference

INST = BenchInstance(
    5,
    "subject_bg",
    "p",
    (
        Reference("subject_bg/3/5/transfer_subjects/a cat.png", "subject", 1, "a cat"),
        Reference("subject_bg/3/5/transfer_subjects/a dog.png", "subject", 2, "a dog"),
        Reference("subject_bg/3/5/background/background.png", "background", 3),
    ),
)


def blank(h: int, w: int) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


# --------------------------------------------------------------------------- ground truth


def test_ground_truth_boxes_match_the_file_and_scale_with_the_image(mini: Path) -> None:
    bench = load_benchmark(mini)
    truth = json.loads((mini.parent / "ground_truth.json").read_text())
    detector = GroundTruthBoxes.from_benchmark(bench)
    assert isinstance(detector, SubjectDetector) and detector.oracle
    inst = bench.instances[0]
    captions = [r.subject_name for r in inst.references_of("subject")]
    assert detector.detect(blank(64, 64), captions, instance=inst) == [
        tuple(map(float, b)) for b in truth["0"]["subject_boxes"]
    ]
    doubled = detector.detect(blank(128, 192), captions, instance=inst)  # generated at another size
    for got, want in zip(doubled, truth["0"]["subject_boxes"], strict=True):
        assert got == pytest.approx((want[0] * 3, want[1] * 2, want[2] * 3, want[3] * 2))
    with pytest.raises(ValueError, match="caption"):
        detector.detect(blank(64, 64), captions[:-1], instance=inst)
    with pytest.raises(KeyError, match="999"):
        detector.detect(blank(64, 64), captions, instance=BenchInstance(999, "subject", "p", inst.references))


def test_ground_truth_keypoints_scale_and_none_without_a_person(mini: Path) -> None:
    bench = load_benchmark(mini)
    truth = json.loads((mini.parent / "ground_truth.json").read_text())
    provider = GroundTruthKeypoints.from_benchmark(bench)
    assert isinstance(provider, KeypointProvider)
    posed = next(i for i in bench if "pose" in i.types)
    plain = next(i for i in bench if "pose" not in i.types)
    kp = provider.keypoints(blank(128, 64), instance=posed, caption="person")
    want = np.asarray(truth[str(posed.index)]["pose_keypoints"])
    np.testing.assert_allclose(kp, want * [1, 2, 1])
    assert provider.keypoints(blank(64, 64), instance=plain, caption="person") is None


def test_ground_truth_file_missing_says_what_to_do(tmp_path: Path) -> None:
    from rewardkit.evaluation import Benchmark

    with pytest.raises(FileNotFoundError, match="zero_shot"):
        GroundTruthBoxes.from_benchmark(Benchmark((INST,), tmp_path))


# --------------------------------------------------------------------------- masks


def test_box_masks_union_inclusive_clamped_and_misses_unmasked() -> None:
    masks = BoxMasks()
    assert isinstance(masks, MaskProvider)
    fg = masks.foreground(blank(10, 12), [(1.7, 2, 3, 4), None, (10, 8, 40, 40)], instance=INST)
    want = np.zeros((10, 12), bool)
    want[2:5, 1:4] = True  # int() truncation, inclusive
    want[8:10, 10:12] = True  # clamped to the image
    np.testing.assert_array_equal(fg, want)
    padded = BoxMasks(pad=1).foreground(blank(10, 12), [(5, 5, 5, 5)], instance=INST)
    assert padded.sum() == 9
    with pytest.raises(ValueError, match="pad"):
        BoxMasks(pad=-1)


# --------------------------------------------------------------------------- registry


class CornerDetector:
    """A user detector: every subject is in the top-left corner."""

    name = "corner"

    def __init__(self, size: int = 4) -> None:
        self.size = size

    def detect(self, image, captions, *, instance):
        return [(0, 0, self.size, self.size) for _ in captions]


def make_corner(*, benchmark, size: int = 4) -> CornerDetector:
    return CornerDetector(size)


def test_load_provider_by_name_import_path_and_object(mini: Path) -> None:
    bench = load_benchmark(mini)
    assert isinstance(load_provider("detector", "ground_truth", benchmark=bench), GroundTruthBoxes)
    assert load_provider("masks", "box", benchmark=bench, pad=2).pad == 2
    assert isinstance(load_provider("keypoints", "ground_truth", benchmark=bench), GroundTruthKeypoints)
    by_factory = load_provider("detector", f"{__name__}:make_corner", benchmark=bench, size=7)
    assert by_factory.detect(blank(9, 9), ["x"], instance=INST) == [(0, 0, 7, 7)]
    by_class = load_provider("detector", f"{__name__}:CornerDetector", benchmark=bench, size=3)
    assert by_class.size == 3
    ready = CornerDetector()
    assert load_provider("detector", ready, benchmark=bench) is ready


@pytest.mark.parametrize(
    ("kind", "spec", "options", "match"),
    [
        ("detector", "grounding_dino_v9", {}, r"registered: \['ground_truth', 'zero_shot'\]"),
        ("detector", "no.such.module:thing", {}, "cannot import"),
        ("masks", CornerDetector(), {}, r"no foreground\(\) method"),
        ("detector", CornerDetector(), {"size": 2}, "already built"),
        ("segmenter", "box", {}, "kind must be one of"),
    ],
)
def test_load_provider_errors(mini: Path, kind, spec, options, match) -> None:
    with pytest.raises(ValueError, match=match):
        load_provider(kind, spec, benchmark=load_benchmark(mini), **options)


# --------------------------------------------------------------------------- zero-shot detectors


def _byte_vocab() -> list[str]:
    from tokenizers import pre_tokenizers

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    return chars + [c + "</w>" for c in chars]


def tiny_owlvit(directory: Path) -> Path:
    """A tiny random OWL-ViT with a byte-level CLIP tokenizer, saved like a hub checkpoint."""
    from transformers import (
        CLIPTokenizer,
        OwlViTConfig,
        OwlViTForObjectDetection,
        OwlViTImageProcessor,
        OwlViTProcessor,
    )

    vocab = {t: i for i, t in enumerate(_byte_vocab())}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    text = {"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": len(vocab) - 2,
            "eos_token_id": len(vocab) - 1, "pad_token_id": len(vocab) - 1}  # fmt: skip
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 64, "patch_size": 16}  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = OwlViTForObjectDetection(
            OwlViTConfig(text_config=text, vision_config=vision, projection_dim=32)
        )
    size = {"height": 64, "width": 64}
    processor = OwlViTProcessor(
        image_processor=OwlViTImageProcessor(size=size, crop_size=size),
        tokenizer=CLIPTokenizer(vocab=vocab, merges=[], model_max_length=16),
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def tiny_grounding_dino():
    """A tiny random Grounding DINO (Swin + BERT) and its processor, built in code."""
    from transformers import (
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessor,
        GroundingDinoProcessor,
    )

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *"abcdefghijklmnopqrstuvwxyz"]
    config = GroundingDinoConfig(
        backbone_config={"model_type": "swin", "embed_dim": 8, "depths": [1, 1, 1, 1], "num_heads": [1, 1, 1, 1],
                         "window_size": 4, "image_size": 64, "out_features": ["stage2", "stage3", "stage4"]},
        text_config={"model_type": "bert", "vocab_size": len(words), "hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 64},
        d_model=32, encoder_layers=1, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=32, decoder_ffn_dim=32, num_queries=10, num_feature_levels=3, encoder_n_points=2,
        decoder_n_points=2, max_text_len=32,
    )  # fmt: skip
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = GroundingDinoForObjectDetection(config).eval()
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 64}),
        tokenizer=BertTokenizer(vocab={w: i for i, w in enumerate(words)}),
    )
    return model, processor


def _cxcywh_to_pixels(box: torch.Tensor, h: int, w: int) -> tuple[float, ...]:
    cx, cy, bw, bh = box.tolist()
    return ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)


def test_owlvit_from_a_local_directory_keeps_the_best_box_per_caption(tmp_path: Path) -> None:
    path = tiny_owlvit(tmp_path / "owlvit")
    detector = ZeroShotDetector(path, box_threshold=0.0, device="cpu")
    assert isinstance(detector, SubjectDetector) and not detector.grounded
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    captions = ["a red circle", "a blue square", "a dog"]
    boxes = detector.detect(image, captions, instance=INST)
    assert len(boxes) == 3 and all(b is not None for b in boxes)
    # The same answer by hand: per query, the patch with the highest sigmoid logit.
    inputs = detector.processor(text=[captions], images=[image], return_tensors="pt", padding=True)
    with torch.no_grad():
        out = detector.model(**inputs)
    for q, box in enumerate(boxes):
        best = int(out.logits[0, :, q].argmax())
        want = _cxcywh_to_pixels(out.pred_boxes[0, best], 48, 80)
        clamped = (
            min(max(want[0], 0), 79),
            min(max(want[1], 0), 47),
            min(max(want[2], 0), 79),
            min(max(want[3], 0), 47),
        )
        assert box == pytest.approx(clamped, abs=1e-3)
    strict = ZeroShotDetector(path, box_threshold=1.0, device="cpu")
    assert strict.detect(image, captions, instance=INST) == [None, None, None]  # nothing scores above 1


def test_grounding_dino_runs_one_caption_at_a_time() -> None:
    model, processor = tiny_grounding_dino()
    detector = ZeroShotDetector(
        model=model, processor=processor, box_threshold=0.0, text_threshold=0.0, device="cpu"
    )
    assert detector.grounded
    image = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    boxes = detector.detect(image, ["a cat", "a dog"], instance=INST)
    assert len(boxes) == 2
    for box in boxes:
        assert box is not None and 0 <= box[0] <= box[2] <= 55 and 0 <= box[1] <= box[3] <= 39
    none = ZeroShotDetector(model=model, processor=processor, box_threshold=1.0, device="cpu")
    assert none.detect(image, ["a cat"], instance=INST) == [None]


def test_zero_shot_detector_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="local directory"):
        ZeroShotDetector(tmp_path / "missing")
    with pytest.raises(ValueError, match="processor"):
        ZeroShotDetector(model=torch.nn.Linear(1, 1))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ZeroShotDetector(tmp_path, box_threshold=1.5)
