"""lrdask.reduction: the fixed tree gives the same bits however the blocks are spread over
workers and however the workers' results are grouped and ordered."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrdask import reduction
from lrdask.sums import LogLossSums, merge_all


def block_sums(n_blocks: int, seed: int) -> list[LogLossSums]:
    """Sums whose magnitudes span many binades, so that any change of order shows."""
    rng = np.random.default_rng(seed)
    grad = rng.normal(size=(n_blocks, 6)) * 10.0 ** rng.integers(-3, 4, size=(n_blocks, 6))
    return [
        LogLossSums(float(rng.integers(1, 10**6)), float(abs(g[5])), g[:4].copy(), float(g[4]))
        for g in grad
    ]


def reference(sums: list[LogLossSums], level: int, k: int) -> LogLossSums:
    """The tree's definition, written recursively from the module docstring."""
    if level == 0:
        return sums[k]
    left = reference(sums, level - 1, 2 * k)
    if (2 * k + 1) << (level - 1) >= len(sums):
        return left
    return left.merge(reference(sums, level - 1, 2 * k + 1))


def same(a: LogLossSums, b: LogLossSums) -> bool:
    return (
        a.count == b.count
        and a.loss == b.loss
        and np.array_equal(a.grad_coef, b.grad_coef)
        and a.grad_intercept == b.grad_intercept
    )


@settings(max_examples=200, deadline=None)
@given(
    n_blocks=st.integers(1, 70),
    seed=st.integers(0, 2**32 - 1),
    workers=st.integers(1, 9),
    data=st.data(),
)
def test_any_placement_and_grouping_gives_the_tree_bits(n_blocks, seed, workers, data):
    sums = block_sums(n_blocks, seed)
    expected = reference(sums, max(0, (n_blocks - 1).bit_length()), 0)
    owner = data.draw(st.lists(st.integers(0, workers - 1), min_size=n_blocks, max_size=n_blocks))
    parts = [
        reduction.combine(
            [reduction.leaves({i: sums[i] for i in range(n_blocks) if owner[i] == w})], n_blocks
        )
        for w in range(workers)
    ]
    parts = data.draw(st.permutations(parts))  # results arrive in any order
    fan_in = data.draw(st.integers(2, 8))
    while len(parts) > fan_in:  # merged in groups on the cluster, as merge_tree does
        parts = [
            reduction.combine(parts[i : i + fan_in], n_blocks) for i in range(0, len(parts), fan_in)
        ]
    assert same(reduction.total(parts, n_blocks), expected)


def test_the_order_of_additions_matters_here():
    """The check above can fail: left-to-right gives other bits for the same blocks."""
    sums = block_sums(13, seed=5)
    tree = reduction.total([reduction.leaves(dict(enumerate(sums)))], 13)
    assert not same(tree, merge_all(sums))
    assert same(tree, reference(sums, 4, 0))


def test_a_worker_holding_an_aligned_run_sends_log_nodes():
    sums = block_sums(64, seed=1)
    nodes = reduction.combine([reduction.leaves({i: sums[i] for i in range(16, 48)})], 64)
    assert sorted(nodes) == [(4, 1), (4, 2)]
    nodes = reduction.combine([reduction.leaves({i: sums[i] for i in range(3, 29)})], 64)
    assert len(nodes) <= 2 * 6


def test_missing_or_repeated_blocks_are_errors():
    sums = block_sums(4, seed=2)
    with pytest.raises(ValueError, match="not the 4 blocks"):
        reduction.total([reduction.leaves({0: sums[0], 1: sums[1], 3: sums[3]})], 4)
    with pytest.raises(ValueError, match="given twice"):
        reduction.total([reduction.leaves({0: sums[0]}), reduction.leaves({0: sums[0]})], 4)


@pytest.mark.parametrize("workers", [1, 2, 3, 5, 8, 13, 64])
def test_the_loader_placement_sends_log_nodes_per_worker(workers):
    """Blocks placed as the loader places them (``reduction.owners``: contiguous runs) leave
    each worker at most 2·⌈log₂ B⌉ nodes to return, for every block count up to 300, and
    every worker gets a run within one block of the others' length."""
    for n_blocks in range(1, 301):
        sums = block_sums(n_blocks, seed=n_blocks)
        owner = reduction.owners(n_blocks, workers)
        counts = np.bincount(owner, minlength=workers)
        assert counts.max() - counts.min() <= 1
        assert owner == sorted(owner)  # contiguous runs
        bound = 2 * max(1, (n_blocks - 1).bit_length())
        parts = []
        for w in range(workers):
            held = {i: sums[i] for i in range(n_blocks) if owner[i] == w}
            part = reduction.combine([reduction.leaves(held)], n_blocks)
            assert len(part) <= bound, (n_blocks, w, sorted(part))
            parts.append(part)
        assert same(reduction.total(parts, n_blocks), reference(sums, bound // 2, 0))
