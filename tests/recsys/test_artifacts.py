"""Trained models round-trip through their folders: the same outputs after loading."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.synth import write_movielens
from recsys.artifacts import ArtifactError, load_lookalike, load_tower, save_lookalike, save_tower
from recsys.datasets import read_dataset
from recsys.interactions import from_dataset
from recsys.lookalike import LookalikeConfig, LookalikeModel
from recsys.stage1 import Stage1Params, fit_tower, reader_vectors


def test_tower_and_lookalike_round_trip(tmp_path):
    inter = from_dataset(read_dataset("movielens", write_movielens(tmp_path / "ml", readers=30, items=40,
                                                                   clicks_per_reader=12)))
    end = float(inter.click_time[-1]) + 1
    s1 = fit_tower(inter, train_before=end, tower={"dim": 8, "field_dim": 8}, params=Stage1Params(epochs=2))
    save_tower(tmp_path / "tower", s1)
    loaded = load_tower(tmp_path / "tower")
    assert loaded.tower.config == s1.tower.config
    hists = s1.builder.histories(before=end)
    fields = s1.builder.batch(np.arange(inter.n_readers), hists)
    with torch.no_grad():
        a = s1.tower({k: torch.from_numpy(v) for k, v in fields.items()})[0]
        b = loaded.tower({k: torch.from_numpy(v) for k, v in loaded.builder.batch(np.arange(inter.n_readers),
                                                                                  hists).items()})[0]
    assert torch.allclose(a, b)
    assert np.allclose(reader_vectors(s1, before=end), a.numpy(), atol=1e-6)

    model = LookalikeModel(LookalikeConfig(dim=8, k=3))
    with torch.no_grad():
        model.local_attn.w_l.add_(0.1)
    save_lookalike(tmp_path / "look", model)
    again = load_lookalike(tmp_path / "look")
    assert again.config == model.config
    assert all(torch.equal(x, y) for x, y in zip(model.state_dict().values(), again.state_dict().values(), strict=True))


def test_missing_or_corrupt_artifacts_raise_a_clear_error(tmp_path):
    with pytest.raises(ArtifactError, match="cannot load the look-alike model"):
        load_lookalike(tmp_path / "nothing")
    (tmp_path / "look").mkdir()
    (tmp_path / "look" / "config.json").write_text("{\"dim\": 8}")
    (tmp_path / "look" / "weights.pt").write_bytes(b"not a torch file")
    with pytest.raises(ArtifactError):
        load_lookalike(tmp_path / "look")
    with pytest.raises(ArtifactError, match="cannot load the user tower"):
        load_tower(tmp_path / "look")
