"""Where blocks live: an even placement, and the fewest moves that restore one.

Pure Python over worker addresses and block indices; nothing here knows about Dask. The
placement never changes a result (the reduction order is fixed by block index,
``lrdask.reduction``), only how long a pass takes: the slowest worker sets the pass time,
so no worker should hold more than ⌈B/W⌉ of B blocks over W workers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def even_moves(
    holdings: Mapping[str, Sequence[int]], workers: Sequence[str]
) -> list[tuple[int, str, str]]:
    """The moves ``(block, from, to)`` that leave every worker in ``workers`` with ⌊B/W⌋ or
    ⌈B/W⌉ blocks, taking as few blocks as possible.

    ``holdings`` maps a worker to the blocks it holds (each block held once; a holder not
    in ``workers`` is leaving and gives all its blocks away). A block is taken from the
    worker holding the most (the highest-numbered of its blocks, so runs of consecutive
    blocks stay runs) and given to the worker holding the fewest; ties go to the lowest
    address. Raises ValueError without workers."""
    if not workers:
        raise ValueError("no workers to place blocks on")
    held = {addr: sorted(holdings.get(addr, ())) for addr in workers}
    leaving = sorted(i for addr, blocks in holdings.items() if addr not in held for i in blocks)
    n_blocks = sum(len(b) for b in held.values()) + len(leaving)
    low, high = divmod(n_blocks, len(workers))
    cap = low + (1 if high else 0)
    moves: list[tuple[int, str, str]] = []
    sources = {i: addr for addr, blocks in holdings.items() if addr not in held for i in blocks}

    def fewest() -> str:
        return min(sorted(held), key=lambda a: len(held[a]))

    for i in leaving:  # blocks of workers that are gone or leaving go first
        to = fewest()
        held[to].append(i)
        held[to].sort()
        moves.append((i, sources[i], to))
    # then from the fullest to the emptiest until every count is ⌊B/W⌋ or ⌈B/W⌉ (at most
    # ``high`` workers may hold ⌈B/W⌉)
    while True:
        most = max(sorted(held), key=lambda a: len(held[a]))
        least = fewest()
        over = len(held[most]) > cap or (
            len(held[most]) == cap and sum(len(b) == cap for b in held.values()) > high
        )
        if len(held[least]) >= low and not over:
            break
        if len(held[most]) - len(held[least]) <= 1:
            break
        i = held[most].pop()
        held[least].append(i)
        held[least].sort()
        moves.append((i, most, least))
    return moves
