"""Saving and loading trained models: config and weights together, in one folder per model,
so what a training job writes the web process and the workers can read.

    tower/       config.json (TowerConfig + feature vocabularies), weights.pt, vocab.npz
    lookalike/   config.json (LookalikeConfig), weights.pt
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch

from recsys.features import FeatureBuilder
from recsys.interactions import Interactions
from recsys.lookalike import LookalikeConfig, LookalikeModel
from recsys.stage1 import Stage1Result
from recsys.tower import ItemSoftmax, TowerConfig, UserTower


class ArtifactError(RuntimeError):
    """A model folder is missing, incomplete or unreadable."""


def save_tower(folder: Path, result: Stage1Result) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    inter = result.builder.inter
    (folder / "config.json").write_text(json.dumps({
        "tower": result.tower.config.to_dict(), "train_before": result.train_before,
        "best_epoch": result.best_epoch, "reader_keys": inter.reader_keys, "item_keys": inter.item_keys,
        "categories": inter.categories, "subcategories": inter.subcategories, "keywords": inter.keywords,
        "profile_vocab": inter.profile_vocab}))
    np.savez(folder / "vocab.npz", item_category=inter.item_category, item_subcategory=inter.item_subcategory,
             item_keywords=inter.item_keywords, **{f"profile_{k}": v for k, v in inter.profile.items()})
    torch.save({"tower": result.tower.state_dict(), "softmax": result.softmax.state_dict()}, folder / "weights.pt")


def load_tower(folder: Path) -> Stage1Result:
    try:
        meta = json.loads((folder / "config.json").read_text())
        arrays = np.load(folder / "vocab.npz")
        weights = torch.load(folder / "weights.pt", weights_only=True)
        inter = Interactions(
            reader_keys=meta["reader_keys"], item_keys=meta["item_keys"], item_category=arrays["item_category"],
            item_subcategory=arrays["item_subcategory"], item_keywords=arrays["item_keywords"], item_text=[],
            categories=meta["categories"], subcategories=meta["subcategories"], keywords=meta["keywords"],
            profile={k: arrays[f"profile_{k}"] for k in meta["profile_vocab"]}, profile_vocab=meta["profile_vocab"],
            click_reader=np.zeros(0, np.int32), click_item=np.zeros(0, np.int32), click_time=np.zeros(0))
        config = TowerConfig(**meta["tower"])
        tower, softmax = UserTower(config), ItemSoftmax(config.n_items, config.dim)
        tower.load_state_dict(weights["tower"])
        softmax.load_state_dict(weights["softmax"])
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, pickle.UnpicklingError) as exc:
        raise ArtifactError(f"cannot load the user tower from {folder}: {exc.__class__.__name__}: {exc}") from exc
    tower.eval()
    return Stage1Result(tower, softmax, FeatureBuilder(inter, config.max_history), meta["train_before"],
                        best_epoch=meta.get("best_epoch", 0))


def save_lookalike(folder: Path, model: LookalikeModel) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(model.config.to_dict()))
    torch.save(model.state_dict(), folder / "weights.pt")


def load_lookalike(folder: Path) -> LookalikeModel:
    try:
        model = LookalikeModel(LookalikeConfig(**json.loads((folder / "config.json").read_text())))
        model.load_state_dict(torch.load(folder / "weights.pt", weights_only=True))
    except (OSError, KeyError, ValueError, RuntimeError, TypeError, pickle.UnpicklingError) as exc:
        raise ArtifactError(f"cannot load the look-alike model from {folder}: {exc.__class__.__name__}: {exc}") from exc
    model.eval()
    return model


def _save_joblib(folder: Path, payload: dict, meta: dict) -> None:
    """scikit-learn objects kept with joblib, as scikit-learn recommends, with a JSON
    description beside them."""
    import joblib

    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(payload, folder / "model.joblib")
    (folder / "config.json").write_text(json.dumps(meta))


def _load_joblib(folder: Path, what: str) -> dict:
    import joblib

    try:
        payload = joblib.load(folder / "model.joblib")
        payload["meta"] = json.loads((folder / "config.json").read_text())
    # A truncated pickle fails with whatever the opcode it stops in raises (IndexError,
    # TypeError, AttributeError as well as EOFError), depending on where it was cut.
    except (OSError, KeyError, ValueError, EOFError, IndexError, TypeError, AttributeError,
            pickle.UnpicklingError) as exc:
        raise ArtifactError(f"cannot load the {what} from {folder}: {exc.__class__.__name__}: {exc}") from exc
    return payload


def save_coldstart(folder: Path, *, model, calibration, meta: dict) -> None:
    """The cold-start estimator and the hybrid's calibration maps."""
    _save_joblib(folder, {"model": model, "calibration": calibration}, meta)


def load_coldstart(folder: Path) -> dict:
    """{"model": ColdStartModel, "calibration": Calibration | None, "meta": dict}."""
    return _load_joblib(folder, "cold-start model")


def save_ctr(folder: Path, *, models: dict, meta: dict) -> None:
    """The CTR models ({"ctr": CtrModel, "ctr_feature": CtrModel | None, "ctr_noralm": CtrModel | None}, the
    latter two over recsys.ctr.FEATURE_COLUMNS and NORALM_COLUMNS) and their prior and report."""
    _save_joblib(folder, models, meta)


def load_ctr(folder: Path) -> dict:
    """{"ctr": CtrModel, "ctr_feature": CtrModel | None, "ctr_noralm": CtrModel | None, "meta": dict} (an
    artifact without a learned-weight model lacks its key)."""
    return _load_joblib(folder, "CTR model")
