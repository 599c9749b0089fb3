import json
from pathlib import Path

import numpy as np
import pytest

from rewardkit.evaluation.benchmark import (
    Benchmark,
    load_benchmark,
    load_keypoints,
    parse_instance,
    write_benchmark,
)

# Entries shaped like the released OmniRef-Bench metadata (evaluation spec §2.2).
ENTRIES = [
    {
        "image": "subject_bg_style/4/0/0.png",
        "prompt": "A wild rabbit among golden grasses in image 1 being gently observed by a freckled child in "
        "image 2 crouching, with the visual aesthetics matching image 3. The scene is set against the "
        "backdrop shown in image 4.",
        "edit_image": [
            "subject_bg_style/4/0/transfer_subjects/a wild rabbit.png",
            "subject_bg_style/4/0/transfer_subjects/a child.png",
            "subject_bg_style/4/0/style/reference.png",
            "subject_bg_style/4/0/background/background.png",
        ],
        "index": 0,
        "category": "subject_bg_style",
    },
    {
        "image": "subject_pose_lighting/4/3/3.png",
        "prompt": "The woman in image 1 beside the cabinet in image 2, lit like image 3, posed like image 4.",
        "edit_image": [
            "subject_pose_lighting/4/3/transfer_subjects/a woman.png",
            "subject_pose_lighting/4/3/transfer_subjects/a blue painted cabinet.png",
            "subject_pose_lighting/4/3/lighting/lighting_reference.png",
            "subject_pose_lighting/4/3/pose/skeleton/a_woman.jpg",
        ],
        "index": 231,
        "category": "subject_pose_lighting",
    },
    {
        "image": "subject_pose/2/1/1.png",
        "prompt": "The man in image 1 in the pose of image 2.",
        "edit_image": [
            "subject_pose/2/1/transfer_subjects/a man.png",
            "subject_pose/2/1/pose/reference/a_man_skeleton.jpg",
        ],
        "index": 120,
        "category": "subject_pose",
    },
    {  # MultiBanana-derived: no target, background first, index != list position
        "edit_image": [
            "subject_bg/2/0/background/background.jpg",
            "subject_bg/2/0/transfer_subjects/large red heart sculpture.jpg",
        ],
        "prompt": "Replace the background of Image 2 with Image 1.",
        "index": 400,
        "category": "subject_bg",
    },
]


def write(tmp_path: Path, entries: list) -> Path:
    path = tmp_path / "metadata.json"
    path.write_text(json.dumps(entries))
    return path


def test_loads_typed_references(tmp_path: Path) -> None:
    bench = load_benchmark(write(tmp_path, ENTRIES))
    assert len(bench) == 4 and bench.root == tmp_path
    first = bench.by_index(0)
    assert [r.kind for r in first.references] == ["subject", "subject", "style", "background"]
    assert [r.slot for r in first.references] == [1, 2, 3, 4]
    assert [r.subject_name for r in first.references_of("subject")] == ["a wild rabbit", "a child"]
    assert first.types == {"subject", "background", "style"} and first.n_refs == 4
    pose = bench.by_index(231).references_of("pose")[0]
    assert pose.kind == "pose_skeleton" and pose.type == "pose"
    assert pose.keypoints_path == "subject_pose_lighting/4/3/pose/keypoints/a_woman.json"
    image_pose = bench.by_index(120).references[1]
    assert image_pose.kind == "pose_image"
    assert image_pose.keypoints_path == "subject_pose/2/1/pose/reference/a_man.json"
    banana = bench.by_index(400)
    assert banana.position == 3 and banana.target is None
    assert banana.references[0].kind == "background"


def test_metric_applicability_follows_the_protocol(tmp_path: Path) -> None:
    bench = load_benchmark(write(tmp_path, ENTRIES))
    table = {
        inst.index: [m for m in ("subject", "style", "background", "lighting", "pose") if inst.applies(m)]
        for inst in bench
    }
    assert table == {
        0: ["subject", "style", "background"],
        231: ["subject", "lighting", "pose"],
        120: ["subject", "pose"],
        400: ["subject", "background"],
    }
    with pytest.raises(ValueError, match="metric must be one of"):
        bench.by_index(0).applies("colour")


def test_round_trip_through_the_original_format(tmp_path: Path) -> None:
    bench = load_benchmark(write(tmp_path, ENTRIES))
    out = write_benchmark(bench, tmp_path / "copy" / "metadata.json")
    again = load_benchmark(out)
    assert again.instances == bench.instances
    assert json.loads(out.read_text()) == [bench.by_index(e["index"]).to_json() for e in ENTRIES]


def test_check_files_reports_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, ENTRIES[2:3])
    with pytest.raises(FileNotFoundError, match=r"4 file\(s\) listed in the metadata are missing"):
        load_benchmark(path, check_files=True)
    inst = load_benchmark(path).instances[0]
    for rel in [r.path for r in inst.references] + [inst.references[1].keypoints_path, inst.target]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    assert len(load_benchmark(path, check_files=True)) == 1


def test_keypoints_file(tmp_path: Path) -> None:
    kp = np.arange(51, dtype=float)
    path = tmp_path / "kp.json"
    path.write_text(
        json.dumps(
            {"image_name": "a.jpg", "num_persons": 1, "persons": [{"person_id": 0, "keypoints": kp.tolist()}]}
        )
    )
    np.testing.assert_array_equal(load_keypoints(path), kp.reshape(17, 3))
    with pytest.raises(ValueError, match="has 1 person"):
        load_keypoints(path, person=1)
    path.write_text(json.dumps({"persons": [{"keypoints": [1, 2, 3]}]}))
    with pytest.raises(ValueError, match="51 numbers, got 3"):
        load_keypoints(path)
    with pytest.raises(FileNotFoundError, match="keypoints file not found"):
        load_keypoints(tmp_path / "none.json")


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (
            {"category": "subject", "prompt": "p", "edit_image": ["a/transfer_subjects/x.png"]},
            "missing field 'index'",
        ),
        (
            {"index": "3", "category": "subject", "prompt": "p", "edit_image": ["x"]},
            "field 'index' must be int",
        ),
        (
            {"index": 3, "category": "subject_colour", "prompt": "p", "edit_image": ["x"]},
            r"unknown part\(s\) \['colour'\]",
        ),
        ({"index": 3, "category": "subject", "prompt": "p", "edit_image": []}, "non-empty list of paths"),
        (
            {"index": 3, "category": "subject", "prompt": "p", "edit_image": ["c/3/0/misc/x.png"]},
            "cannot tell the type",
        ),
        (
            {
                "index": 3,
                "category": "subject",
                "prompt": "p",
                "edit_image": ["a/transfer_subjects/x.png"],
                "image": 5,
            },
            "'image' must be a path",
        ),
        ([1, 2], "expected an object"),
    ],
)
def test_malformed_entries_name_the_entry(entry, match) -> None:
    with pytest.raises(ValueError, match=match):
        parse_instance(entry, 7)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="metadata file not found"):
        load_benchmark(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="is not valid JSON"):
        load_benchmark(bad)
    bad.write_text("{}")
    with pytest.raises(ValueError, match="must hold a JSON list"):
        load_benchmark(bad)
    with pytest.raises(ValueError, match="index 0 appears twice"):
        load_benchmark(write(tmp_path, [ENTRIES[0], ENTRIES[0]]))
    with pytest.raises(KeyError, match="no instance with index 9"):
        Benchmark(()).by_index(9)
