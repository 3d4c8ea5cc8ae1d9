"""The SAM registry: configs build and run, official shapes match Meta's, checkpoints load safely or not at all."""

import os

import pytest
import torch
from segment_anything import sam_model_registry as meta_registry

from samgeo_ship.errors import ShipsegError
from samgeo_ship.models.registry import CONFIGS, build_sam, detect_model_type, expected_shapes, load_sam

SMALL = [name for name, config in CONFIGS.items() if not config.official]


def _meta_state_dict(model_type):
    """A state_dict of the right keys and shapes without allocating weights (vit_h would be 2.5 GB)."""
    with torch.device("meta"):
        return build_sam(CONFIGS[model_type]).state_dict()


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_official_configs_match_segment_anything(model_type):
    with torch.device("meta"):
        theirs = meta_registry[model_type]().state_dict()
    assert {k: tuple(v.shape) for k, v in theirs.items()} == expected_shapes(CONFIGS[model_type])
    assert CONFIGS[model_type].checkpoint.startswith(f"sam_{model_type}_")


@pytest.mark.parametrize("model_type", list(CONFIGS))
def test_detect_model_type_tells_every_config_apart(model_type):
    assert detect_model_type(_meta_state_dict(model_type)) == model_type


@pytest.mark.parametrize("model_type", [pytest.param(name, marks=pytest.mark.slow) if CONFIGS[name].img_size > 256
                                        else name for name in SMALL])  # sam_small encodes 512 px images
def test_small_config_segments_a_box(model_type):
    torch.manual_seed(0)
    config = CONFIGS[model_type]
    sam = build_sam(config)
    grid = config.image_embedding_size
    images = torch.rand(2, 3, config.img_size, config.img_size) * 255
    with torch.inference_mode():
        embeddings = sam.image_encoder(torch.stack([sam.preprocess(im) for im in images]))
        assert embeddings.shape == (2, config.prompt_embed_dim, grid, grid)
        # A 20 x 6 px ship-sized box on each tile.
        boxes = torch.tensor([[100.0, 120.0, 120.0, 126.0]])
        for embedding in embeddings:
            sparse, dense = sam.prompt_encoder(points=None, boxes=boxes, masks=None)
            low_res, iou = sam.mask_decoder(
                image_embeddings=embedding[None],
                image_pe=sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            assert low_res.shape == (1, 1, 4 * grid, 4 * grid)
            assert iou.shape == (1, 1)
            masks = sam.postprocess_masks(low_res, (config.img_size,) * 2, (config.img_size,) * 2)
            assert masks.shape == (1, 1, config.img_size, config.img_size)
            assert torch.isfinite(masks).all()


@pytest.fixture(scope="module")
def vit_b_checkpoint(tmp_path_factory):
    """An official-format vit_b file (a plain state_dict, ~375 MB), written once for the module."""
    torch.manual_seed(1)
    state_dict = build_sam(CONFIGS["vit_b"]).state_dict()
    path = tmp_path_factory.mktemp("vit_b") / "sam_vit_b_test.pth"
    torch.save(state_dict, path)
    return path, {k: state_dict[k] for k in ("image_encoder.pos_embed", "mask_decoder.iou_token.weight")}


def test_official_format_vit_b_loads(vit_b_checkpoint):
    path, some = vit_b_checkpoint
    sam = load_sam("vit_b", path)
    loaded = sam.state_dict()
    for key, value in some.items():
        assert torch.equal(loaded[key], value)
    assert not sam.training
    assert all(not t.is_meta for t in list(sam.parameters()) + list(sam.buffers()))
    assert sam.pixel_mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])


def test_checkpoint_of_another_type_is_named_not_dumped(vit_b_checkpoint):
    path, _ = vit_b_checkpoint
    with pytest.raises(ShipsegError) as err:
        load_sam("vit_l", path)
    message = str(err.value)
    assert "this is a vit_b checkpoint, not vit_l" in message and "--model-type vit_b" in message
    assert "size mismatch" not in message and "\n" not in message and str(path) in message


def test_truncated_checkpoint_is_refused(vit_b_checkpoint, tmp_path):
    path, _ = vit_b_checkpoint
    cut = tmp_path / "cut.pth"
    with open(path, "rb") as src:
        cut.write_bytes(src.read(5_000_000))
    with pytest.raises(ShipsegError, match="truncated or corrupt"):
        load_sam("vit_b", cut)


class _Payload:
    """Pickles as a call to os.system: what a malicious checkpoint would carry."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1), "x": _Payload(marker)}, evil)
    with pytest.raises(ShipsegError, match="code that would run on load"):
        load_sam("sam_tiny", evil)
    assert not marker.exists()
    # The payload is live: an unsafe load would have run it.
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_missing_and_non_tensor_files_are_refused(tmp_path):
    with pytest.raises(ShipsegError, match="not found"):
        load_sam("vit_b", tmp_path / "absent.pth")
    listing = tmp_path / "list.pth"
    torch.save([1, 2, 3], listing)
    with pytest.raises(ShipsegError, match="not a dict of tensors"):
        load_sam("vit_b", listing)
    meta = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "lr": 0.1}, meta)
    with pytest.raises(ShipsegError, match="entry 'epoch' is a int"):
        load_sam("vit_b", meta)
    with pytest.raises(ShipsegError, match="unknown model type 'vit_x'"):
        load_sam("vit_x")


@pytest.fixture(scope="module")
def tiny_state_dict():
    torch.manual_seed(2)
    return build_sam(CONFIGS["sam_tiny"]).state_dict()


WRAPPINGS = {
    "plain": lambda sd: sd,
    "trainer": lambda sd: {"model": sd, "epoch": 7},
    "ddp": lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}},
}


@pytest.mark.parametrize("wrapping", list(WRAPPINGS))
def test_small_checkpoint_round_trips_even_when_wrapped(tmp_path, tiny_state_dict, wrapping):
    torch.save(WRAPPINGS[wrapping](tiny_state_dict), tmp_path / "sam.pth")
    loaded = load_sam("sam_tiny", tmp_path / "sam.pth")
    assert loaded.state_dict().keys() == tiny_state_dict.keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in tiny_state_dict.items())
    original = build_sam(CONFIGS["sam_tiny"])
    original.load_state_dict(tiny_state_dict)
    image = torch.rand(1, 3, 256, 256)
    with torch.inference_mode():
        assert torch.equal(loaded.image_encoder(image), original.eval().image_encoder(image))


def test_small_checkpoint_of_another_type_or_with_missing_keys_is_named(tmp_path, tiny_state_dict):
    torch.save(tiny_state_dict, tmp_path / "plain.pth")
    with pytest.raises(ShipsegError, match="this is a sam_tiny checkpoint, not sam_small"):
        load_sam("sam_small", tmp_path / "plain.pth")
    partial = {k: v for k, v in tiny_state_dict.items() if not k.startswith("mask_decoder.iou_prediction_head")}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(ShipsegError, match=r"does not fit sam_tiny .*6 missing \(e\.g\. 'mask_decoder") as err:
        load_sam("sam_tiny", tmp_path / "partial.pth")
    assert "size mismatch" not in str(err.value)


def test_a_loaded_model_takes_the_checkpoint_tensors_without_a_second_copy(tiny_state_dict):
    from samgeo_ship.models.registry import PIXEL_MEAN, sam_from_state

    state = {k: v.clone() for k, v in tiny_state_dict.items()}
    sam = sam_from_state(CONFIGS["sam_tiny"], state)
    assert sam.image_encoder.pos_embed.data_ptr() == state["image_encoder.pos_embed"].data_ptr()
    assert sam.image_encoder.pos_embed.requires_grad  # still a trainable parameter
    assert torch.equal(sam.pixel_mean.flatten(), torch.tensor(PIXEL_MEAN))  # not stored in checkpoints
    assert not any(t.is_meta for t in [*sam.parameters(), *sam.buffers()])
