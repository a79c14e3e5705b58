"""RALM's parts on tiny inputs that can be checked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.clustering import cluster_labels, cluster_seeds, clusters_for, pad_states
from recsys.lookalike import LocalAttention, LookalikeConfig, LookalikeModel
from recsys.sampling import LogUniformSampler
from recsys.serving import LookalikeScorer, padded_chunks
from recsys.tower import AttentionMerge, TowerConfig, UserTower, sampled_softmax_loss


def test_attention_merge_weights_sum_to_one_and_skip_absent_fields():
    torch.manual_seed(0)
    merge = AttentionMerge(m=4, k=3)
    h = torch.randn(2, 3, 4)
    present = torch.tensor([[True, True, True], [True, False, True]])
    merged, a = merge(h, present)
    assert torch.allclose(a.sum(-1), torch.ones(2))
    assert a[1, 1] == 0
    assert torch.allclose(merged[0], (a[0, :, None] * h[0]).sum(0))


def test_attention_merge_learns_to_weight_the_field_that_carries_the_signal():
    """In a tiny tower, field `a` decides the label and fields `b`, `c` are noise: after
    training, the merge puts most of its weight on `a`."""
    torch.manual_seed(0)
    n = 2048
    fields = {name: torch.randint(1, 21, (n, 1)) for name in ("a", "b", "c")}
    label = (fields["a"][:, 0] <= 10).float()
    tower = UserTower(TowerConfig(fields={"a": 21, "b": 21, "c": 21}, dim=4, field_dim=8, attn_dim=4, hidden=16,
                                  dropout=0.0))
    head = torch.nn.Linear(4, 1)
    weights = lambda: tower(fields)[1].mean(0)  # noqa: E731  (a, b, c, constant)
    before = weights()
    opt = torch.optim.Adam([*tower.parameters(), *head.parameters()], lr=0.02)
    for _ in range(300):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(tower(fields)[0]).squeeze(-1), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = weights()
    assert torch.allclose(after.sum(), torch.tensor(1.0))
    assert after[0] > 0.5 and after[0] > before[0] + 0.2 and after[0] > 2 * max(after[1], after[2]), (before, after)


def test_local_attention_weights_the_centroid_nearest_the_target_most():
    att = LocalAttention(dim=3, tau=3.0)
    with torch.no_grad():
        att.w_l.copy_(torch.eye(3))
    cents = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])  # (1, k=3, h=3)
    target = torch.tensor([[0.1, 0.9, 0.2]])
    pooled, a = att(cents, torch.ones(1, 3), torch.ones(1, 3, dtype=torch.bool), target)
    assert a.argmax().item() == 1 and a[0, 1] > 0.5
    assert torch.allclose(a.sum(), torch.tensor(1.0))
    # With W_l = 0 the attention is the size-weighted average: a bigger cluster counts more.
    with torch.no_grad():
        att.w_l.zero_()
    _, a = att(cents, torch.tensor([[1.0, 2.0, 1.0]]), torch.ones(1, 3, dtype=torch.bool), target)
    assert torch.allclose(a, torch.tensor([[0.25, 0.5, 0.25]]))


def test_log_uniform_sampler_frequencies_match_the_formula():
    counts = np.array([5, 100, 0, 40, 7, 3, 60, 1, 9, 20])  # ranks by count: item 1 is rank 0, ...
    sampler = LogUniformSampler(counts)
    rng = np.random.default_rng(0)
    draws = sampler.sample(400_000, rng)
    freq = np.bincount(draws, minlength=10) / len(draws)
    expected = sampler.probability(np.arange(10))
    d = len(counts)
    rank = np.argsort(np.argsort(-counts, kind="stable"), kind="stable")
    assert np.allclose(expected, (np.log(rank + 2) - np.log(rank + 1)) / np.log(d + 1))
    assert expected.sum() == pytest.approx(1.0)
    assert np.abs(freq - expected).max() < 0.003
    assert freq[1] > freq[6] > freq[3] > freq[2]  # by rank, not by count: item 2 (0 clicks) still drawn
    assert freq[2] > 0


def test_sampled_softmax_drops_accidental_hits():
    logits = torch.tensor([[1.0, 5.0, 0.0]])
    log_q = torch.zeros(1, 3)
    with_hit = sampled_softmax_loss(logits, log_q, torch.tensor([[False, True, False]]))
    without = torch.nn.functional.cross_entropy(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    assert torch.allclose(with_hit, without)


def _random_model(mode: str = "attention", seed: int = 0) -> LookalikeModel:
    torch.manual_seed(seed)
    model = LookalikeModel(LookalikeConfig(dim=6, k=4, global_dim=5, mode=mode), base_rate=0.3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


@pytest.mark.parametrize("mode", ["attention", "mean"])
def test_numpy_online_scorer_equals_the_torch_model(mode):
    model = _random_model(mode)
    scorer = LookalikeScorer.from_model(model)
    rng = np.random.default_rng(1)
    c, k, h = 7, 4, 6
    cents = rng.standard_normal((c, k, h)).astype(np.float32)
    sizes = rng.integers(1, 9, (c, k)).astype(np.float32)
    mask = rng.random((c, k)) < 0.8
    mask[0] = False  # a candidate without seeds
    mask[1, 1:] = False  # one with a single centroid
    e_u = rng.standard_normal(h).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(np.tile(e_u, (c, 1))), torch.from_numpy(cents),
                         torch.from_numpy(sizes), torch.from_numpy(mask)).numpy()
    e_global = scorer.global_embedding(cents.astype(np.float64), sizes, mask)
    got = scorer.score(e_u, cents, sizes, mask, e_global)
    assert np.abs(got - expected).max() < 1e-5
    assert got[0] == pytest.approx(scorer.bias)  # no seeds: sim 0


@pytest.mark.parametrize("mode", ["attention", "mean"])
def test_an_items_audience_scores_each_reader_as_the_readers_page_does(mode):
    scorer = LookalikeScorer.from_model(_random_model(mode))
    rng = np.random.default_rng(3)
    state = scorer.item_state(rng.standard_normal((60, 6)))
    readers = rng.standard_normal((9, 6))
    k = len(state.sizes)
    one = [scorer.score(e, state.centroids[None], state.sizes[None], np.ones((1, k), bool), state.e_global[None])[0]
           for e in readers]
    assert np.abs(scorer.audience(readers, state) - one).max() < 1e-6


def test_online_scorer_rejects_bad_shapes():
    scorer = LookalikeScorer.from_model(_random_model())
    good = (np.zeros(6), np.zeros((2, 4, 6)), np.ones((2, 4)), np.ones((2, 4), bool), np.zeros((2, 6)))
    scorer.score(*good)
    with pytest.raises(ValueError, match="e_u"):
        scorer.score(np.zeros(5), *good[1:])
    with pytest.raises(ValueError, match="centroids"):
        scorer.score(good[0], np.zeros((2, 4, 5)), *good[2:])
    with pytest.raises(ValueError, match="sizes and mask"):
        scorer.score(*good[:2], np.ones((2, 3)), *good[3:])


def test_item_state_clusters_seeds_and_matches_the_model_global_pool():
    model = _random_model()
    scorer = LookalikeScorer.from_model(model)
    rng = np.random.default_rng(2)
    seeds = rng.standard_normal((50, 6))
    state = scorer.item_state(seeds)
    assert len(state.sizes) == clusters_for(50, 4, scorer.min_cluster) and state.sizes.sum() == 50
    with torch.no_grad():
        e_global, _ = model.pool(torch.from_numpy(state.centroids[None]), torch.from_numpy(state.sizes[None]),
                                 torch.ones(1, len(state.sizes), dtype=torch.bool))
    assert np.abs(e_global.numpy()[0] - state.e_global).max() < 1e-5


def test_small_seed_sets_get_fewer_clusters_of_real_averages():
    rng = np.random.default_rng(3)
    assert clusters_for(0, 20, 10) == 0 and clusters_for(7, 20, 10) == 1 and clusters_for(55, 20, 10) == 5
    assert clusters_for(5000, 20, 10) == 20 and clusters_for(7, 20, 1) == 7
    two_groups = np.vstack([rng.normal(5, 0.1, (12, 3)), rng.normal(-5, 0.1, (12, 3))])
    labels = cluster_labels(two_groups, 20, min_size=10)
    assert set(labels[:12]) != set(labels[12:]) and len(set(labels)) == 2
    cents, sizes = cluster_seeds(two_groups, 20, min_size=10)
    assert sorted(sizes.tolist()) == [12.0, 12.0] and np.abs(np.abs(cents) - 5).max() < 0.2
    padded, psizes, pmask = pad_states([(cents, sizes), (cents[:0], sizes[:0])], 3, 3)
    assert padded.shape == (2, 3, 3) and pmask.tolist() == [[True, True, False], [False, False, False]]


def test_batched_kmeans_matches_scikit_learn_per_item():
    from sklearn.cluster import KMeans

    from recsys.clustering import batched_kmeans

    rng = np.random.default_rng(4)
    b, n, h = 30, 120, 8
    centres = rng.normal(0, 4, (b, 5, h))
    x = (centres[np.arange(b)[:, None], rng.integers(0, 5, (b, n))] + rng.normal(0, 0.5, (b, n, h))).astype(np.float32)
    lengths = rng.integers(40, n + 1, b)
    wanted = rng.integers(1, 6, b)
    cents, sizes = batched_kmeans(x, lengths, wanted)
    ratios = []
    for i in range(b):
        pts = x[i, : lengths[i]]
        assert sizes[i].sum() == lengths[i] and (sizes[i] > 0).sum() <= wanted[i]
        ours = ((pts[:, None] - cents[i][sizes[i] > 0][None]) ** 2).sum(-1).min(1).sum()
        ratios.append(ours / KMeans(int(wanted[i]), n_init=4, random_state=0).fit(pts).inertia_)
    assert np.median(ratios) < 1.05 and max(ratios) < 2.0, ratios


def test_item_states_in_batch_equal_one_by_one_for_small_seed_sets():
    """Below 2 * min_cluster seeds there is one cluster: batched and single give the same."""
    scorer = LookalikeScorer.from_model(_random_model())
    rng = np.random.default_rng(5)
    sets = [rng.standard_normal((n, 6)) for n in (0, 1, 3, 7)]
    batch = scorer.item_states(sets)
    for seeds, got in zip(sets, batch, strict=True):
        one = scorer.item_state(seeds)
        assert np.allclose(got.centroids, one.centroids, atol=1e-5) and np.allclose(got.e_global, one.e_global,
                                                                                     atol=1e-5)
        assert got.sizes.sum() == len(seeds)


def test_kmeans_from_previous_centroids_stays_at_their_fixed_point_and_follows_a_small_change():
    from recsys.clustering import batched_kmeans

    rng = np.random.default_rng(5)
    centres = rng.standard_normal((4, 8)) * 4
    x = (centres[rng.integers(0, 4, 200)] + rng.standard_normal((200, 8))).astype(np.float32)[None]
    cents, sizes = batched_kmeans(x, np.array([200]), np.array([4]))
    again, same = batched_kmeans(x, np.array([200]), np.array([4]), init=cents, iters=5)
    assert np.allclose(again, cents, atol=1e-5) and (same == sizes).all()  # a fixed point stays put
    more = np.concatenate([x[0], (centres[rng.integers(0, 4, 5)] + rng.standard_normal((5, 8)))])[None]
    warm, warm_sizes = batched_kmeans(more.astype(np.float32), np.array([205]), np.array([4]), init=cents, iters=5)
    fresh, _ = batched_kmeans(more.astype(np.float32), np.array([205]), np.array([4]))
    sse = lambda c: ((more[0][:, None] - c[0][None]) ** 2).sum(-1).min(1).sum()  # noqa: E731
    assert warm_sizes.sum() == 205 and sse(warm) <= sse(fresh) * 1.001


def test_padded_chunks_never_pad_short_seed_sets_to_a_long_ones_size():
    rng = np.random.default_rng(3)
    lengths = [1] * 500 + list(rng.integers(1, 200, 300)) + [200] * 50
    ids = list(range(1000, 1000 + len(lengths)))
    chunks = padded_chunks(ids, lengths, width=64, floats=100_000)
    assert sorted(i for c in chunks for i in c) == ids  # each once
    size = dict(zip(ids, lengths, strict=True))
    for c in chunks:
        assert len(c) == 1 or len(c) * max(size[i] for i in c) * 64 <= 100_000
    assert set(ids[:500]) <= set(chunks[0])  # the one-seed sets share one chunk
    assert padded_chunks([7], [5_000], width=64, floats=10) == [[7]]  # too long alone: still served


def test_a_lookalike_scorer_with_a_small_state_cache_scores_the_same():
    from recsys.replay import Groups
    from recsys.scorers import Lookalike, SeedTimeline

    rng = np.random.default_rng(4)
    readers, items, h = 40, 12, 6
    clicks = 600
    timeline = SeedTimeline.build(rng.integers(0, readers, clicks), rng.integers(0, items, clicks),
                                  np.sort(rng.uniform(0, 100, clicks)), np.ones(readers, bool), items)
    groups = Groups(view="overall", reader=rng.integers(0, readers, 30), time=rng.uniform(10, 100, 30),
                    items=rng.integers(0, items, (30, 5)), seeds=np.zeros((30, 5), np.int64),
                    pop=np.zeros((30, 5), np.int64), bucket=np.zeros(30, np.int64))
    scorer = LookalikeScorer.from_model(_random_model("attention"))
    vectors = rng.standard_normal((readers, h))
    small = Lookalike(scorer, vectors, timeline, cap=20, cache_size=3)
    np.testing.assert_array_equal(small(groups), Lookalike(scorer, vectors, timeline, cap=20)(groups))
    assert 0 < len(small._cache) <= 3
