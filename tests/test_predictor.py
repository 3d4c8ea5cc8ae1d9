"""The tile predictor's second decoder pass for models with a box prior."""

import torch

from samgeo_ship.inference.predictor import TilePredictor
from samgeo_ship.models.bundle import BundleCard


class _MaskBeyondTheBox:
    """A model whose mask for box k is a fixed rectangle (or nothing), wherever the box is: what _refine must read."""

    box_prior = 3.0
    img_size = 32

    def decode(self, embedding, boxes=None, points=None, masks=None):
        logits = torch.full((len(boxes), 32, 32), -5.0)
        logits[0, 4:10, 2:30] = 5.0  # a ship longer than its proposal box
        return logits, torch.ones(len(boxes))


def test_refinement_prompts_again_with_the_box_of_each_mask():
    predictor = TilePredictor(_MaskBeyondTheBox(), BundleCard("sam_tiny", ["R", "G", "B"], 10.0, 32, 0))
    proposals = torch.tensor([[10.0, 4.0, 20.0, 10.0], [1.0, 1.0, 3.0, 3.0]])
    refined = predictor._refine(torch.zeros(1), proposals)
    assert refined.tolist() == [[2.0, 4.0, 30.0, 10.0], [1.0, 1.0, 3.0, 3.0]]  # the empty mask keeps its box
