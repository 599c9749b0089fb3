"""PlanShape validation and parameter counting."""

import pytest
import torch

from rewardkit.planning.model import PlanShape, count_parameters


def test_count_parameters_counts_shared_once_and_filters_trainable() -> None:
    lin = torch.nn.Linear(3, 2)
    net = torch.nn.Sequential(lin, lin, torch.nn.Linear(2, 1))
    net[2].weight.requires_grad_(False)
    assert count_parameters(net) == 8 + 3
    assert count_parameters(net, trainable=True) == 8 + 1
    assert count_parameters(net, trainable=False) == 2


@pytest.mark.parametrize("field", ["batch", "height", "width", "reference_size", "text_tokens"])
def test_plan_shape_rejects_non_positive(field: str) -> None:
    args = {"batch": 1, "height": 16, "width": 16, "references": 0, "reference_size": 16, "text_tokens": 1}
    args[field] = 0
    with pytest.raises(ValueError, match=field):
        PlanShape(**args)


def test_plan_shape_rejects_negative_references() -> None:
    with pytest.raises(ValueError, match="references"):
        PlanShape(1, 16, 16, -1, 16, 1)
