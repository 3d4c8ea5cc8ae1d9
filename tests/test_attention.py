"""The encoder's attention by blocks of queries gives segment_anything's results, forward and backward."""

import pytest
import torch
from segment_anything.modeling import image_encoder

from samgeo_ship.models import attention
from samgeo_ship.models.registry import CONFIGS, build_sam


def _pair(input_size):
    """segment_anything's Attention and a ChunkedAttention with the same (random, non-zero) weights."""
    torch.manual_seed(0)
    plain = image_encoder.Attention(32, num_heads=4, use_rel_pos=True, input_size=input_size)
    with torch.no_grad():
        plain.rel_pos_h.normal_(0, 0.5)
        plain.rel_pos_w.normal_(0, 0.5)
    chunked = image_encoder.Attention(32, num_heads=4, use_rel_pos=True, input_size=input_size)
    chunked.load_state_dict(plain.state_dict())
    attention.chunk_attention(chunked)
    return plain, chunked


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_chunked_attention_equals_segment_anything(monkeypatch, size):
    monkeypatch.setattr(attention, "CHUNK_ENTRIES", 2 * 4 * 64 * 7)  # blocks of 7 queries: uneven, several
    plain, chunked = _pair(size)
    assert type(chunked) is attention.ChunkedAttention
    x = torch.randn(2, *size, 32, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    expected, got = plain(x), chunked(x2)
    assert torch.allclose(got, expected, atol=1e-6, rtol=1e-5)
    expected.square().sum().backward()
    got.square().sum().backward()
    assert torch.allclose(x2.grad, x.grad, atol=1e-5, rtol=1e-4)
    assert torch.allclose(chunked.rel_pos_h.grad, plain.rel_pos_h.grad, atol=1e-5, rtol=1e-4)


def test_built_models_use_chunked_attention_and_keep_their_keys():
    sam = build_sam(CONFIGS["sam_tiny"])
    layers = [m for m in sam.image_encoder.modules() if isinstance(m, image_encoder.Attention)]
    assert layers and all(type(m) is attention.ChunkedAttention for m in layers)
    plain = image_encoder.Attention(128, num_heads=4, use_rel_pos=True, input_size=(8, 8))
    assert set(layers[0].state_dict()) == set(plain.state_dict())
