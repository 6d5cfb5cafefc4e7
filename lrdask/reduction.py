"""The order in which partial sums are added: a fixed binary tree over block indices.

Floating-point addition is commutative but not associative, so a sum of per-block partial
sums depends on how it is bracketed. This module fixes the bracketing by the data alone:
blocks are numbered 0 … B−1 in the plan's order (files, row groups), and the total is the
root of the binary tree whose node (L, k) covers blocks [k·2^L, (k+1)·2^L) ∩ [0, B):

    node(0, k) = the sums of block k
    node(L, k) = node(L−1, 2k).merge(node(L−1, 2k+1))   if block (2k+1)·2^(L−1) exists
               = node(L−1, 2k)                          otherwise

Any worker can compute the nodes whose blocks it holds all of; ``combine`` turns any set
of nodes (a worker's leaves, several workers' subtrees) into the largest nodes they
determine, and ``total`` finishes the tree. Whoever computes a node, it is the same
numbers, so the result does not depend on the number of workers, the placement of the
blocks, recomputation after a fault, or the order in which results arrive (the idea of
the reproducible reductions in Demmel & Nguyen, "Parallel Reproducible Summation", 2015,
with a tree instead of binning; Spark's ``treeAggregate`` has the shape, not the order).

A worker that holds an aligned run of blocks sends O(log B) nodes; after a fault, blocks
scattered over workers may send up to one node per block. Pure Python over objects with
a ``merge`` method; nothing here knows about Dask.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Node = tuple[int, int]  # (level, index): blocks [index·2^level, (index+1)·2^level)


def owners(n_blocks: int, n_workers: int) -> list[int]:
    """The worker (0 … n_workers−1) each block is placed on: contiguous runs of nearly equal
    length, block i on ⌊i·W/B⌋. A run of consecutive blocks is covered by at most about
    2·log₂ B aligned nodes, so this placement keeps what a worker returns small."""
    return [i * n_workers // n_blocks for i in range(n_blocks)]


def leaves(sums_by_block: Mapping[int, object]) -> dict[Node, object]:
    """Block sums as the tree's level-0 nodes."""
    return {(0, i): s for i, s in sums_by_block.items()}


def combine(parts: Iterable[Mapping[Node, object]], n_blocks: int) -> dict[Node, object]:
    """The largest nodes that ``parts`` (disjoint sets of nodes) determine, each computed
    by the fixed rule. Any grouping of the same nodes gives the same result."""
    nodes: dict[Node, object] = {}
    for part in parts:
        for node, value in part.items():
            if node in nodes:
                raise ValueError(f"tree node {node} given twice")
            nodes[node] = value
    level = 0
    while (1 << level) < n_blocks:
        for node in sorted(n for n in nodes if n[0] == level and n[1] % 2 == 0):
            _, k = node
            right = (level, k + 1)
            right_exists = (k + 1) << level < n_blocks
            if right_exists and right not in nodes:
                continue
            left = nodes.pop(node)
            nodes[(level + 1, k // 2)] = left.merge(nodes.pop(right)) if right_exists else left
        level += 1
    return nodes


def total(parts: Iterable[Mapping[Node, object]], n_blocks: int):
    """The root: the sum over all ``n_blocks`` blocks. Raises ValueError if the parts do
    not cover every block exactly once."""
    nodes = combine(parts, n_blocks)
    root = (max(0, (n_blocks - 1).bit_length()), 0)
    if n_blocks < 1 or list(nodes) != [root]:
        raise ValueError(f"the partial sums cover {sorted(nodes)}, not the {n_blocks} blocks")
    return nodes[root]
