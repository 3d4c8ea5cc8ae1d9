"""The one device rule of training and detection: a device name that is not one, or a GPU that is not there, is
bad input in one sentence."""

import pytest
import torch

from samgeo_ship.device import autocaster, resolve_device
from samgeo_ship.errors import ShipsegError


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cuda0"])
def test_an_unknown_device_name_is_bad_input(name):
    with pytest.raises(ShipsegError, match=f"unknown device '{name}'; choose auto, cpu or cuda"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_a_missing_gpu_is_bad_input(name):
    with pytest.raises(ShipsegError, match=f"--device {name} was asked for, but no CUDA GPU is available"):
        resolve_device(name)


def test_no_autocast_on_the_cpu():
    with autocaster(torch.device("cpu"))():
        assert not torch.is_autocast_enabled() and torch.ones(2).mul(0.1).dtype == torch.float32
