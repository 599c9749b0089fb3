import math

import hypothesis.strategies as st
import pytest
import torch
from hypothesis import given

import rewardkit


@st.composite
def pair(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    b, n, c = draw(st.integers(1, 4)), draw(st.integers(1, 7)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(b, n, c, generator=gen, dtype=torch.float64)
    return a, a + 0.1 * torch.randn(b, n, c, generator=gen, dtype=torch.float64)


@given(pair(), st.floats(0.05, 10.0), st.floats(0.01, 0.5))
def test_kl_forms_relate_as_documented(data, sigma_t, abs_dt) -> None:
    mean, ref = data
    noise_std = sigma_t * math.sqrt(abs_dt)
    exact = rewardkit.kl_gaussian(mean, ref, noise_std)
    x_based = rewardkit.kl_x_based(mean, ref, sigma_t, eps=0.0)
    torch.testing.assert_close(x_based, exact * abs_dt)  # x-based = exact KL x |dt|
    # Exact KL against a float64 loop over elements.
    for b in range(mean.shape[0]):
        terms = [
            (float(x) - float(y)) ** 2 / (2 * noise_std**2)
            for x, y in zip(mean[b].flatten(), ref[b].flatten(), strict=True)
        ]
        assert float(exact[b]) == pytest.approx(math.fsum(terms) / len(terms), rel=1e-12)


@given(pair(), st.floats(0.05, 10.0))
def test_kl_v_based_formula_and_limits(data, sigma_t) -> None:
    v, v_ref = data
    got = rewardkit.kl_v_based(v, v_ref, sigma_t)
    want = (v - v_ref).square().mean(dim=(1, 2)) / (2 * sigma_t**2 + 1e-7)
    torch.testing.assert_close(got, want)
    assert torch.equal(rewardkit.kl_v_based(v, v, sigma_t), torch.zeros(v.shape[0], dtype=v.dtype))
    assert bool((got >= 0).all())


def test_kl_per_sample_sigma_and_gradient() -> None:
    v = torch.randn(3, 4, 2, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(3, 4, 2, dtype=torch.float64)
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    out = rewardkit.kl_x_based(v, ref, sigma)
    assert out.shape == (3,)
    for b in range(3):
        single = rewardkit.kl_x_based(v[b : b + 1], ref[b : b + 1], float(sigma[b]))
        torch.testing.assert_close(out[b : b + 1], single)
    assert torch.autograd.gradcheck(lambda x: rewardkit.kl_gaussian(x, ref, sigma), (v,))
    assert torch.autograd.gradcheck(lambda x: rewardkit.kl_v_based(x, ref, sigma), (v,))


def test_kl_bf16_accumulates_in_float32() -> None:
    v = torch.randn(2, 64, 8).bfloat16()
    out = rewardkit.kl_v_based(v, torch.zeros_like(v), 1.0)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, v.float().square().mean(dim=(1, 2)) / (2 + 1e-7))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: rewardkit.kl_v_based(torch.zeros(2, 3), torch.zeros(2, 4), 1.0), "same shape"),
        (lambda: rewardkit.kl_v_based(torch.zeros(2), torch.zeros(2), 1.0), "non-batch dim"),
        (
            lambda: rewardkit.kl_x_based(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3)),
            r"\(B,\) tensor with B=2",
        ),
        (
            lambda: rewardkit.kl_gaussian(torch.zeros(2, 3), torch.zeros(2, 3), 0.0),
            "noise_std must be finite and > 0",
        ),
        (lambda: rewardkit.kl_x_based(torch.zeros(2, 3), torch.zeros(2, 3), 1.0, eps=-1.0), "eps"),
    ],
)
def test_kl_bad_input(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()
