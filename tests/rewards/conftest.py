"""Shared fixtures for the reward tests: a toy encoder and tiny random encoders."""

import os

import pytest

import rewardkit
from rewardkit.rewards import tiny_encoder_config
from tests.rewards.helpers import ToyEncoder

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub from the tests


@pytest.fixture
def toy_encoder() -> ToyEncoder:
    return ToyEncoder()


@pytest.fixture(scope="session")
def tiny_siglip():
    return rewardkit.siglip_encoder(config=tiny_encoder_config("siglip"), device="cpu")


@pytest.fixture(scope="session")
def tiny_csd():
    return rewardkit.csd_encoder(config=rewardkit.CSDConfig.tiny(), device="cpu")
