"""A small MovieLens-format log with planted taste groups, for fast end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

GENRES = ["Drama", "Comedy", "Action", "Horror"]


def write_movielens(folder: Path, *, readers: int = 90, items: int = 120, clicks_per_reader: int = 40,
                    seed: int = 0, late_readers: int = 0) -> Path:
    """Readers and items belong to one of four taste groups (the genre); a reader clicks an
    item of their own group 85% of the time. Timestamps interleave readers so that most
    readers have history before the test period; the last `late_readers` readers click only
    in the last twentieth of the time (readers with no train history)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    item_group = np.arange(items) % len(GENRES)
    reader_group = rng.integers(len(GENRES), size=readers)
    lines = ["movieId,title,genres"]
    lines += [f"{i + 1},Film {i + 1} ({1980 + i % 40}),{GENRES[g]}" for i, g in enumerate(item_group)]
    (folder / "movies.csv").write_text("\n".join(lines) + "\n")
    rows, t0 = ["userId,movieId,rating,timestamp"], 1_500_000_000
    popularity = rng.zipf(1.6, items).clip(1, 50).astype(float)
    events = []
    for r in range(readers + late_readers):
        if r == readers:
            reader_group = np.concatenate([reader_group, rng.integers(len(GENRES), size=late_readers)])
        own = np.flatnonzero(item_group == reader_group[r])
        other = np.flatnonzero(item_group != reader_group[r])
        chosen: set[int] = set()
        while len(chosen) < clicks_per_reader:
            pool = own if rng.random() < 0.85 else other
            p = popularity[pool] / popularity[pool].sum()
            chosen.add(int(rng.choice(pool, p=p)))
        start = 950_000 if r >= readers else 0
        times = np.sort(rng.uniform(start, 1_000_000, clicks_per_reader)).astype(int)
        events += [(int(t), r + 1, i + 1) for t, i in zip(times, rng.permutation(sorted(chosen)), strict=True)]
    for t, r, i in sorted(events):
        rows.append(f"{r},{i},4.0,{t0 + t}")
    (folder / "ratings.csv").write_text("\n".join(rows) + "\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n1,1,classic,1500000000\n")
    return folder


def write_mind(folder: Path, *, readers: int = 80, items: int = 100, impressions_per_reader: int = 12,
               seed: int = 0) -> Path:
    """MIND news.tsv + behaviors.tsv with planted taste groups: each impression shows 8
    stories; a reader clicks those of their own group with probability 0.5, others 0.05."""
    from datetime import datetime, timedelta

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cats = ["sports", "finance", "travel", "health"]
    item_group = np.arange(items) % len(cats)
    (folder / "news.tsv").write_text("".join(
        f"N{i}\t{cats[g]}\t{cats[g]}-sub\tStory {i} about {cats[g]}\tAbstract {i}.\thttps://x/{i}\t[]\t[]\n"
        for i, g in enumerate(item_group)))
    reader_group = rng.integers(len(cats), size=readers)
    start = datetime(2019, 11, 9)
    rows, n = [], 0
    slots = sorted((rng.uniform(0, 6 * 24 * 3600), r) for r in range(readers) for _ in range(impressions_per_reader))
    history: dict[int, list[int]] = {}
    for offset, r in slots:
        n += 1
        shown = rng.choice(items, size=8, replace=False)
        labels = [int(rng.random() < (0.5 if item_group[i] == reader_group[r] else 0.05)) for i in shown]
        if not any(labels):
            labels[0] = 1
        when = (start + timedelta(seconds=int(offset))).strftime("%m/%d/%Y %I:%M:%S %p")
        hist = " ".join(f"N{i}" for i in history.get(r, []))
        rows.append(f"{n}\tU{r}\t{when}\t{hist}\t" + " ".join(f"N{i}-{c}" for i, c in zip(shown, labels, strict=True)))
        history.setdefault(r, [])
    (folder / "behaviors.tsv").write_text("\n".join(rows) + "\n")
    return folder
