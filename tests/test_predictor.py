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


class _MaskInsideTheBox:
    """A decoder that cannot reach past its prompt box: its mask is the ship's pixels (rows 4-9, columns 2-29)
    inside the box, or nothing."""

    box_prior = 3.0
    img_size = 32

    def decode(self, embedding, boxes=None, points=None, masks=None):
        logits = torch.full((len(boxes), 32, 32), -5.0)
        for k, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
            logits[k, max(y0, 4):min(y1, 10), max(x0, 2):min(x1, 30)] = 5.0
        return logits, torch.ones(len(boxes))


def test_refinement_grows_a_short_proposal_to_the_whole_ship():
    # The proposal covers the middle half of the ship; prompting with it as it is would give back the same half.
    predictor = TilePredictor(_MaskInsideTheBox(), BundleCard("sam_tiny", ["R", "G", "B"], 10.0, 32, 0))
    proposals = torch.tensor([[9.0, 5.0, 23.0, 9.0]])
    assert predictor._refine(torch.zeros(1), proposals).tolist() == [[2.0, 4.0, 30.0, 10.0]]
