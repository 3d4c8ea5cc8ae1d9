"""The resumable training checkpoint: a TrainState with its best weights and the optimizer round-trip, and a
damaged checkpoint is a one-line error naming the file."""

import json

import pytest
import torch
from safetensors.torch import save_file

from samgeo_ship.errors import ShipsegError
from samgeo_ship.training.checkpoint import META_KEY, load_state, save_state
from samgeo_ship.training.state import TrainState


def test_a_train_state_round_trips_with_its_weights_and_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    best = {k: v.detach().clone() + 1 for k, v in model.state_dict().items()}
    state = TrainState(setup={"seed": 3, "datasets": ["a"]}, epoch=2, step=7, best_score=0.5, best_epoch=1,
                       bad_epochs=1, history=[{"epoch": 1, "loss": 0.25}], best=best)
    path = tmp_path / "m.ckpt.safetensors"
    save_state(path, state, model.state_dict(), optimizer.state_dict())
    loaded, weights, opt = load_state(path)
    assert loaded.meta() == state.meta()
    assert loaded.best.keys() == best.keys() and all(torch.equal(loaded.best[k], best[k]) for k in best)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    restored = torch.optim.AdamW(torch.nn.Linear(3, 2).parameters(), lr=1e-3)
    restored.load_state_dict(opt)
    moments = optimizer.state_dict()["state"][0]
    assert torch.equal(restored.state_dict()["state"][0]["exp_avg"], moments["exp_avg"])
    assert float(restored.state_dict()["state"][0]["step"]) == float(moments["step"])


@pytest.mark.parametrize("meta", [None, {"epoch": 1}, {"epoch": 1, "optimizer": {"param_groups": [], "scalars": {}}}])
def test_a_damaged_checkpoint_names_the_file(tmp_path, meta):
    path = tmp_path / "m.ckpt.safetensors"
    if meta is None:
        path.write_bytes(b"not a safetensors file")
    else:
        save_file({"model/w": torch.zeros(1)}, str(path), metadata={META_KEY: json.dumps(meta)})
    with pytest.raises(ShipsegError, match="is not a shipseg training checkpoint") as err:
        load_state(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
