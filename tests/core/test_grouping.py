import hashlib
import os
import random
import subprocess
import sys

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import assume, given

from rewardkit.core.grouping import group_id, group_ids

TEXT = st.text(max_size=40)
REFERENCE = st.one_of(
    TEXT,
    st.binary(max_size=40),
    st.lists(st.floats(-10, 10, allow_nan=False, width=32), max_size=6).map(
        lambda xs: torch.tensor(xs, dtype=torch.float32)
    ),
)
REFERENCES = st.lists(REFERENCE, max_size=3)


def _image() -> torch.Tensor:
    return torch.arange(6, dtype=torch.float32).reshape(2, 3)


# ---------------------------------------------------------------- determinism, frozen values


@given(TEXT, REFERENCES)
def test_deterministic_and_int64(prompt: str, refs: list) -> None:
    first = group_id(prompt, refs)
    copies = [r.clone() if isinstance(r, torch.Tensor) else r for r in refs]
    assert group_id(prompt, copies) == first
    assert -(2**63) <= first < 2**63


def test_frozen_values() -> None:
    # A change here changes every group id ever written: bump _PERSON's version instead.
    assert group_id("a red cube") == -1966775105756458605
    refs = [_image(), b"\x00\x01", "refs/cube.png"]
    assert group_id("a red cube", refs) == -7694082081256745710
    assert group_id("a red cube", [torch.arange(6).to(torch.bfloat16)]) == -6278949037609828822


def test_encoding_matches_the_documented_spec() -> None:
    def field(data: bytes) -> bytes:
        return len(data).to_bytes(8, "little") + data

    message = field("é cube".encode()) + (2).to_bytes(8, "little")
    message += b"S" + field(b"ref.png") + b"B" + field(b"\xff")
    digest = hashlib.blake2b(message, digest_size=8, person=b"rewardkit.gid.v1").digest()
    assert group_id("é cube", ["ref.png", b"\xff"]) == int.from_bytes(digest, "little", signed=True)


def test_identical_in_another_process() -> None:
    code = (
        "import torch; from rewardkit.core.grouping import group_id; "
        "print(group_id('a red cube', [torch.arange(6, dtype=torch.float32).reshape(2, 3), b'\\x00\\x01', "
        "'refs/cube.png']))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert int(out.stdout.strip()) == group_id("a red cube", [_image(), b"\x00\x01", "refs/cube.png"])


# ---------------------------------------------------------------- distinct inputs, distinct ids


def test_no_collision_on_thousands_of_random_prompts() -> None:
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz ,.éü猫"
    prompts = {"".join(rng.choices(alphabet, k=rng.randint(0, 24))) for _ in range(5000)}
    ids = group_ids(sorted(prompts))
    assert ids.unique().numel() == len(prompts)


@given(TEXT, TEXT)
def test_different_prompts_differ(a: str, b: str) -> None:
    assume(a != b)
    assert group_id(a) != group_id(b)


@given(TEXT, REFERENCES, REFERENCES)
def test_different_references_differ(prompt: str, r1: list, r2: list) -> None:
    def key(refs: list) -> list:
        return [(type(r).__name__, r.tolist() if isinstance(r, torch.Tensor) else r) for r in refs]

    assume(key(r1) != key(r2))
    assert group_id(prompt, r1) != group_id(prompt, r2)


@given(TEXT, TEXT, TEXT.filter(bool))
def test_length_prefixes_keep_fields_apart(x: str, z: str, y: str) -> None:
    assert group_id("p", [x + y, z]) != group_id("p", [x, y + z])
    assert group_id(x + y, [z]) != group_id(x, [y + z])
    assert group_id("p", [(x + y).encode(), z.encode()]) != group_id("p", [x.encode(), (y + z).encode()])


@given(TEXT)
def test_reference_kind_matters(text: str) -> None:
    assert group_id("p", [text]) != group_id("p", [text.encode()])
    assert group_id("p", [text]) != group_id("p" + text)
    assert group_id("p", []) != group_id("p", [""])


def test_reference_order_matters() -> None:
    assert group_id("p", ["a", "b"]) != group_id("p", ["b", "a"])


def test_tensor_dtype_and_shape_matter_layout_and_device_do_not() -> None:
    image = _image()
    same_bytes = image.view(torch.int32)  # identical raw bytes, another dtype
    assert group_id("p", [image]) != group_id("p", [same_bytes])
    assert group_id("p", [image]) != group_id("p", [image.reshape(3, 2)])
    assert group_id("p", [image]) != group_id("p", [image.flatten()])
    assert group_id("p", [torch.zeros(2, 0)]) != group_id("p", [torch.zeros(0, 2)])
    assert group_id("p", [image]) == group_id("p", [image.t().contiguous().t()])  # strides
    assert group_id("p", [image]) == group_id("p", [image.clone().requires_grad_()])
    assert group_id("p", [image]) != group_id("p", [image + 1e-6])
    bf16 = torch.tensor([1.0, -2.5, 3.0]).to(torch.bfloat16)
    assert group_id("p", [bf16]) != group_id("p", [bf16.half()])
    assert group_id("p", [bf16]) == group_id("p", [bf16.clone()])
    assert group_id("p", [torch.tensor(1.0)]) != group_id("p", [torch.tensor([1.0])])


def test_conjugate_views_hash_their_values() -> None:
    z = torch.tensor([1 + 2j, 3 - 1j])
    assert group_id("p", [z.conj()]) == group_id("p", [z.conj().resolve_conj()])
    assert group_id("p", [z.conj()]) != group_id("p", [z])


# ---------------------------------------------------------------- group_ids


def test_group_ids_matches_group_id() -> None:
    prompts = ["a cat", "a dog", "a cat", "a cat"]
    refs = [["x.png"], ["x.png"], ["x.png"], ["y.png"]]
    ids = group_ids(prompts, refs)
    assert ids.dtype == torch.int64 and ids.shape == (4,)
    assert ids.tolist() == [group_id(p, r) for p, r in zip(prompts, refs, strict=True)]
    assert ids[0] == ids[2] and len(set(ids.tolist())) == 3
    assert group_ids(prompts).tolist() == [group_id(p) for p in prompts]
    assert group_ids([]).shape == (0,) and group_ids([]).dtype == torch.int64
    assert group_ids(("a",), device="cpu").device == torch.device("cpu")


def test_group_ids_feed_group_advantages() -> None:
    import rewardkit

    ids = group_ids(["a", "b", "a", "b"])
    adv = rewardkit.group_advantages(torch.tensor([1.0, 5.0, 3.0, 5.0]), ids)
    assert torch.equal(adv, torch.tensor([-1.0, 0.0, 1.0, 0.0]))


def test_bad_input() -> None:
    with pytest.raises(TypeError, match="prompt must be a str"):
        group_id(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"references\[1\] must be a torch.Tensor, bytes or str.*int"):
        group_id("p", ["a", 1])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="references must be a sequence of references"):
        group_id("p", "ref.png")
    with pytest.raises(TypeError, match="references must be a sequence of references"):
        group_id("p", _image())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dense"):
        group_id("p", [_image().to_sparse()])
    with pytest.raises(TypeError, match="prompts must be a sequence of str"):
        group_ids("a cat")
    with pytest.raises(TypeError, match=r"prompts\[1\] must be a str"):
        group_ids(["a", None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="references has 1 entries but prompts has 2"):
        group_ids(["a", "b"], [["x"]])
    with pytest.raises(TypeError, match=r"references\[0\] must be a sequence of references"):
        group_ids(["a"], [_image()])  # type: ignore[list-item]
    with pytest.raises(TypeError, match=r"references\[0\]\[0\] must be a torch.Tensor"):
        group_ids(["a"], [[1.5]])  # type: ignore[list-item]
