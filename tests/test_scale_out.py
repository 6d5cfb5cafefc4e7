"""Scale-out: every worker used, blocks placed evenly, one pass shape at any worker count.

Real `dask scheduler` / `dask worker` processes where the test is about processes joining;
in-process workers where the test needs more workers than this machine holds processes.
"""

import logging
import math
import os
import pickle
import signal
import subprocess

import numpy as np
import pytest
from conftest import random_problem, write_partitions
from distributed import Client, LocalCluster
from procs import BIN, RealCluster, leaked_setting, lrdask
from reference import numpy_gradient_descent

from lrdask import dataset, scheduling
from lrdask.estimator import LogisticRegression
from lrdask.placement import even_moves

ALPHA, ITERATIONS = 0.5, 25


def block_counts(client: Client) -> dict[str, int]:
    """Blocks of the running job per worker (every registered worker listed)."""
    has_what = client.has_what()
    return {
        addr: sum(str(key).startswith("lrdask-load-") for key in keys)
        for addr, keys in has_what.items()
    }


def assert_even(counts: dict[str, int], n_blocks: int) -> None:
    workers = len(counts)
    assert sum(counts.values()) == n_blocks, counts
    assert max(counts.values()) <= math.ceil(n_blocks / workers), counts
    assert min(counts.values()) >= n_blocks // workers, counts


def reference_fit(path):
    """The same fit on an in-process cluster of another shape: the bits to match."""
    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        return LogisticRegression(alpha=ALPHA, max_iter=ITERATIONS, tol=0, gtol=0).fit(
            path, "y", client=client
        )


@pytest.fixture
def twelve_blocks(tmp_path, monkeypatch):
    """12 files, one block each (blocks are defined by the data alone; the threshold that
    groups small files is lowered in this process, where the plan is made)."""
    monkeypatch.setattr(dataset, "BLOCK_ENOUGH_ROWS", 1)
    X, y = random_problem(1_200, 3, seed=41)
    return X, y, write_partitions(tmp_path / "data", X, y, [100] * 12)


@pytest.mark.cluster
@pytest.mark.parametrize("start, joining", [(1, 3), (2, 5)])
def test_workers_that_join_late_receive_blocks_and_change_no_bit(
    twelve_blocks, tmp_path, caplog, monkeypatch, start, joining
):
    X, y, path = twelve_blocks
    monkeypatch.setattr(scheduling, "REGROUP_SECONDS", 0.0)  # look for new workers every pass
    seen: dict[int, dict[str, int]] = {}
    with (
        RealCluster(workers=start, tmp_dir=str(tmp_path)) as cluster,
        Client(cluster.address) as client,
    ):

        def join_then_count(info):
            if info.iteration == 3:
                for _ in range(joining):
                    cluster.add_worker()
                client.wait_for_workers(start + joining, timeout=60)
            if info.iteration in (2, ITERATIONS - 1):
                seen[info.iteration] = block_counts(client)

        with caplog.at_level(logging.INFO, logger="lrdask"):
            model = LogisticRegression(alpha=ALPHA, max_iter=ITERATIONS, tol=0, gtol=0).fit(
                path, "y", client=client, callback=join_then_count
            )
    assert len(seen[2]) == start
    assert_even(seen[2], 12)
    assert len(seen[ITERATIONS - 1]) == start + joining  # every worker holds blocks
    assert_even(seen[ITERATIONS - 1], 12)
    assert "that hold fewer than the others" in caplog.text
    assert "runs as tasks" not in caplog.text  # moving blocks is not a fault
    assert np.array_equal(model.coef_, reference_fit(path).coef_)
    w, _, costs = numpy_gradient_descent(X, y, ALPHA, ITERATIONS)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.loss_history_[:ITERATIONS], costs, rtol=1e-12)


@pytest.mark.cluster
@pytest.mark.parametrize("victims", [("source",), ("target",), ("source", "target")])
def test_a_worker_killed_while_blocks_move_changes_no_bit(
    twelve_blocks, tmp_path, caplog, monkeypatch, victims
):
    """SIGKILL the worker a block moves from, the one it moves to, or both, after the
    moves are chosen and before they run: the job goes on (a move that cannot arrive
    leaves the block where it was, a lost block is recomputed) with the same bits."""
    _, _, path = twelve_blocks
    monkeypatch.setattr(scheduling, "REGROUP_SECONDS", 0.0)
    chosen = []
    even_moves_ = scheduling.placement.even_moves

    def kill_during_move(holdings, workers):
        moves = even_moves_(holdings, workers)
        if moves and not chosen:
            chosen.append(moves)
            pids = client.run(os.getpid)
            _, source, target = moves[0]
            for role in victims:
                os.kill(pids[{"source": source, "target": target}[role]], signal.SIGKILL)
        return moves

    monkeypatch.setattr(scheduling.placement, "even_moves", kill_during_move)
    with (
        RealCluster(workers=1, tmp_dir=str(tmp_path)) as cluster,
        Client(cluster.address) as client,
    ):

        def join(info):
            if info.iteration == 3:
                for _ in range(3):
                    cluster.add_worker()
                client.wait_for_workers(4, timeout=60)

        with caplog.at_level(logging.INFO, logger="lrdask"):
            model = LogisticRegression(alpha=ALPHA, max_iter=ITERATIONS, tol=0, gtol=0).fit(
                path, "y", client=client, callback=join
            )
    assert chosen, "no block moved: the test tested nothing"
    if "target" in victims:
        assert "did not arrive (the new worker left, hung or paused?)" in caplog.text
    assert np.array_equal(model.coef_, reference_fit(path).coef_)


@pytest.mark.cluster
@pytest.mark.parametrize("how", ["paused", "stopped"])
def test_a_worker_that_joins_paused_or_hung_gets_no_blocks_and_stalls_nothing(
    twelve_blocks, tmp_path, caplog, monkeypatch, how
):
    """A late joiner that cannot take blocks (paused for lack of memory: its limit is below
    what a bare worker uses; or hung: SIGSTOP after it registered) must not end the job:
    moving blocks is optional, so the blocks stay where they were and the bits match."""
    _, _, path = twelve_blocks
    monkeypatch.setattr(scheduling, "REGROUP_SECONDS", 0.0)
    monkeypatch.setattr(scheduling, "MOVE_SECONDS", 5.0)
    with (
        RealCluster(workers=2, tmp_dir=str(tmp_path)) as cluster,
        Client(cluster.address) as client,
    ):
        late = []

        def join(info):
            if info.iteration == 3:
                if how == "paused":
                    cluster.memory_limit = "100MiB"
                late.append(cluster.add_worker())
                client.wait_for_workers(3, timeout=60)
                if how == "stopped":
                    late[0].send_signal(signal.SIGSTOP)

        try:
            with caplog.at_level(logging.INFO, logger="lrdask"):
                model = LogisticRegression(alpha=ALPHA, max_iter=ITERATIONS, tol=0, gtol=0).fit(
                    path, "y", client=client, callback=join, pass_timeout=30
                )
        finally:
            for proc in late:
                proc.send_signal(signal.SIGCONT)
    assert late
    assert (
        "did not arrive (the new worker left, hung or paused?)" in caplog.text
        or "are not running (paused for lack of memory, or closing)" in caplog.text
    ), caplog.text
    assert np.array_equal(model.coef_, reference_fit(path).coef_)


@pytest.mark.cluster
def test_blocks_are_even_and_workers_beyond_blocks_are_logged(twelve_blocks, tmp_path, caplog):
    """Loads are placed in even runs (no worker holds more than ⌈B/W⌉); with more workers
    than blocks the idle ones are named."""
    _, _, path = twelve_blocks
    seen: list[dict[str, int]] = []

    def count(info):
        if info.iteration == 1:
            seen.append(block_counts(client))

    with (
        RealCluster(workers=5, tmp_dir=str(tmp_path)) as cluster,
        Client(cluster.address) as client,
    ):
        LogisticRegression(alpha=ALPHA, max_iter=3, tol=0, gtol=0).fit(
            path, "y", client=client, callback=count
        )
        X, y = random_problem(300, 3, seed=47)
        few = write_partitions(tmp_path / "few", X, y, [100] * 3)  # 3 blocks, 5 workers
        with caplog.at_level(logging.INFO, logger="lrdask"):
            LogisticRegression(alpha=ALPHA, max_iter=3, tol=0, gtol=0).fit(
                few, "y", client=client, callback=count
            )
    assert len(seen[0]) == 5
    assert_even(seen[0], 12)
    assert sorted(seen[1].values()) == [0, 0, 1, 1, 1]
    assert "2 worker(s) hold no block and stay idle: the data has 3 block(s) for 5" in (caplog.text)


@pytest.mark.cluster
def test_a_dask_dataframe_placed_unevenly_is_evened_out(tmp_path, caplog):
    """Dask places the computed partitions of a DataFrame itself (here all on the one
    worker that holds the source data): the job moves blocks until the counts are even."""
    import dask.dataframe as dd
    import pandas as pd

    X, y = random_problem(1_200, 3, seed=43)
    frame = pd.DataFrame(X, columns=["x0", "x1", "x2"])
    frame["y"] = y
    seen: list[dict[str, int]] = []
    with (
        RealCluster(workers=4, tmp_dir=str(tmp_path)) as cluster,
        Client(cluster.address) as client,
    ):
        first = sorted(client.scheduler_info()["workers"])[0]
        source = client.persist(dd.from_pandas(frame, npartitions=8), workers=[first])
        with caplog.at_level(logging.INFO, logger="lrdask"):
            model = LogisticRegression(alpha=ALPHA, max_iter=ITERATIONS, tol=0, gtol=0).fit(
                source,
                label="y",
                client=client,
                callback=lambda info: (
                    seen.append(block_counts(client)) if info.iteration == 1 else None
                ),
            )
    assert sorted(seen[0].values()) == [2, 2, 2, 2], seen
    assert "placing" in caplog.text
    w, _, _ = numpy_gradient_descent(X, y, ALPHA, ITERATIONS)
    np.testing.assert_allclose(model.coef_, w, rtol=1e-12, atol=1e-12)


def test_65_and_more_workers_take_the_same_pass_and_survive_a_lost_worker(
    twelve_blocks, tmp_path, caplog, monkeypatch
):
    """No switch at 64 workers: every pass is one Client.run at 65 and 80 workers, and a
    worker lost mid-run is recovered with the same bits (in-process workers: this machine
    does not hold 80 worker processes)."""
    monkeypatch.setattr(dataset, "BLOCK_ENOUGH_ROWS", 1)
    X, y = random_problem(16_000, 3, seed=42)
    path = write_partitions(tmp_path / "wide", X, y, [100] * 160)
    reference = reference_fit(path)
    for n_workers in (65,):
        with (
            LocalCluster(
                n_workers=n_workers,
                threads_per_worker=1,
                processes=False,
                dashboard_address=":0",
                memory_limit=0,  # one process: a per-worker share of it would pause them all
            ) as cluster,
            Client(cluster) as client,
        ):
            lost = []

            def lose_one(info, cluster=cluster, lost=lost):
                if info.iteration == 8 and not lost:
                    holder = next(
                        w
                        for w in cluster.workers.values()
                        if any(str(k).startswith("lrdask-load-") for k in w.data)
                    )
                    lost.append(holder.address)
                    cluster.sync(holder.close)

            caplog.clear()
            with caplog.at_level(logging.INFO, logger="lrdask"):
                model = LogisticRegression(alpha=ALPHA, max_iter=ITERATIONS, tol=0, gtol=0).fit(
                    path, "y", client=client, callback=lose_one
                )
        assert lost
        assert caplog.text.count("runs as tasks") >= 1  # the lost blocks were recomputed
        assert caplog.text.count("runs as tasks") <= ITERATIONS // 3  # the fast path came back
        assert np.array_equal(model.coef_, reference.coef_), n_workers
        assert model.intercept_ == reference.intercept_


@pytest.mark.cluster
def test_wait_for_workers_waits_then_uses_them(tmp_path):
    X, y = random_problem(200_000, 3, seed=44)  # 4 blocks of at most 65,536 rows
    path = write_partitions(tmp_path / "data", X, y, [50_000] * 4)
    env = {k: v for k, v in os.environ.items() if not leaked_setting(k)}
    with RealCluster(workers=1, tmp_dir=str(tmp_path)) as cluster:
        args = ["--label", "y", "--max-iter", 5, "--tol", 0, "--scheduler", cluster.address]
        job = subprocess.Popen(
            [
                os.path.join(BIN, "lrdask"),
                "train",
                path,
                "--out",
                tmp_path / "m",
                *map(str, args),
                "--wait-for-workers",
                "3",
                "--wait-for-workers-timeout",
                "120",
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        seen = []
        while not any("waiting up to 120s for 3 worker(s): 1 registered" in s for s in seen):
            line = job.stderr.readline()
            assert line, "".join(seen)
            seen.append(line)
        cluster.add_worker()
        cluster.add_worker()
        _, err = job.communicate(timeout=180)
        assert job.returncode == 0, "".join(seen) + err
        assert "3 worker(s) registered" in err
        assert f"cluster: scheduler {cluster.address}, 3 worker(s)" in err

        # the timeout: the job goes on with what it has, and says so
        quick = lrdask(
            "train",
            path,
            "--out",
            tmp_path / "m2",
            *args,
            "--wait-for-workers",
            5,
            "--wait-for-workers-timeout",
            1,
        )
        assert "only 3 of 5 worker(s) registered within --wait-for-workers-timeout 1s" in (
            quick.stderr
        )
        assert "going on with 3" in quick.stderr

    # the embedded cluster cannot grow: a configuration error, before any work
    bad = lrdask(
        "train",
        path,
        "--label",
        "y",
        "--out",
        tmp_path / "m3",
        "--workers",
        1,
        "--wait-for-workers",
        2,
        check=False,
    )
    assert bad.returncode == 2
    last = bad.stderr.strip().splitlines()[-1]
    assert last.startswith("lrdask: error: --wait-for-workers 2: the embedded"), bad.stderr
    assert "INFO cluster:" not in bad.stderr  # refused before a cluster started


def test_wait_for_workers_is_a_config_key(tmp_path):
    X, y = random_problem(300, 2, seed=45)
    path = write_partitions(tmp_path / "data", X, y, [300])
    config = tmp_path / "job.toml"
    config.write_text(
        f'data = "{path}"\nlabel = "y"\nout = "{tmp_path / "m"}"\nworkers = 1\n'
        "wait_for_workers = 2\n"
    )
    bad = lrdask("train", "--config", config, check=False)
    assert bad.returncode == 2
    assert "--wait-for-workers 2: the embedded LocalCluster has 1 worker(s)" in bad.stderr
    config.write_text(config.read_text().replace("= 2", "= 0"))
    bad = lrdask("train", "--config", config, check=False)
    assert bad.returncode == 2
    assert "wait_for_workers" in bad.stderr


@pytest.mark.parametrize("seed", range(300))
def test_even_moves_leave_every_count_within_one(seed):
    """Any holdings (workers leaving, joining, all blocks on one) → counts ⌊B/W⌋…⌈B/W⌉,
    each block still held once, and no block moved that did not have to."""
    rng = np.random.default_rng(seed)
    n_workers = int(rng.integers(1, 20))
    n_blocks = int(rng.integers(0, 80))
    names = [f"tcp://10.0.0.{k}:1" for k in range(n_workers + 4)]
    holders = list(rng.choice(names, size=int(rng.integers(1, len(names))), replace=False))
    holdings: dict[str, list[int]] = {a: [] for a in holders}
    for i in range(n_blocks):
        holdings[holders[int(rng.integers(len(holders)))]].append(i)
    workers = sorted(rng.choice(names, size=n_workers, replace=False))
    moves = even_moves(holdings, workers)
    final = {a: set(holdings.get(a, ())) for a in workers}
    for block, source, target in moves:
        if source in final:
            final[source].remove(block)
        final[target].add(block)
    assert sorted(i for held in final.values() for i in held) == list(range(n_blocks))
    assert_even({a: len(b) for a, b in final.items()}, n_blocks)
    cap = math.ceil(n_blocks / n_workers)
    must = sum(len(b) for a, b in holdings.items() if a not in workers) + sum(
        max(0, len(b) - cap) for a, b in holdings.items() if a in workers
    )
    assert must <= len(moves) <= must + n_workers  # only the excess (and ties at the cap)


def test_even_moves_keep_an_even_placement_and_refuse_no_workers():
    holdings = {"a": [0, 1, 2], "b": [3, 4], "c": [5, 6]}
    assert even_moves(holdings, ["a", "b", "c"]) == []
    assert even_moves({"a": [0, 1, 2, 3]}, ["a", "b"]) == [(3, "a", "b"), (2, "a", "b")]
    with pytest.raises(ValueError, match="no workers"):
        even_moves(holdings, [])


def test_a_pass_sends_the_same_bytes_whatever_the_number_of_blocks(tmp_path, monkeypatch):
    """What a pass sends is (w, b) and a version, not the block lists: the arguments of
    the per-pass Client.run are the same size for 4 and 400 blocks."""
    monkeypatch.setattr(dataset, "BLOCK_ENOUGH_ROWS", 1)
    sent: list[int] = []
    original = Client.run

    def run(self, function, *args, **kwargs):
        if function is scheduling.fold_installed:
            sent.append(len(pickle.dumps(args)))
        return original(self, function, *args, **kwargs)

    monkeypatch.setattr(Client, "run", run)
    X, y = random_problem(800, 3, seed=46)
    by_blocks = {}
    with (
        LocalCluster(
            n_workers=3, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster) as client,
    ):
        for n in (4, 400):
            path = write_partitions(tmp_path / f"d{n}", X, y, [len(y) // n] * n)
            sent.clear()
            model = LogisticRegression(alpha=ALPHA, max_iter=3, tol=0, gtol=0)
            model.fit(path, "y", client=client)
            assert model.n_partitions_ == n
            by_blocks[n] = max(sent)
    assert by_blocks[4] > 0
    assert by_blocks[400] <= by_blocks[4] + 8, by_blocks  # the block count's digits at most


@pytest.mark.cluster
@pytest.mark.parametrize("solver", ["newton", "gd"])
def test_large_partial_sums_are_merged_among_the_workers(tmp_path, monkeypatch, solver):
    """Partial sums over ``KEEP_OVER_BYTES`` (here every one) stay on the workers and are
    merged worker to worker in groups of FAN_IN (real processes: the merge goes through
    the workers' own connections); the driver receives at most FAN_IN of them, and the
    model is the same to the bit as when every worker sends its sums to the driver."""
    monkeypatch.setattr(dataset, "BLOCK_ENOUGH_ROWS", 1)
    X, y = random_problem(1_400, 6, seed=48)
    path = write_partitions(tmp_path / "data", X, y, [100] * 14)
    received: list[int] = []
    total = scheduling.reduction.total

    def counting_total(parts, n_blocks):
        parts = list(parts)
        received.append(len(parts))
        return total(parts, n_blocks)

    def fit(client):
        return LogisticRegression(solver=solver, alpha=ALPHA, max_iter=6, tol=0, gtol=0).fit(
            path, "y", client=client
        )

    with (
        RealCluster(workers=5, tmp_dir=str(tmp_path)) as cluster,
        Client(cluster.address) as client,
    ):
        direct = fit(client)
        monkeypatch.setattr(scheduling, "KEEP_OVER_BYTES", 0)
        monkeypatch.setattr(scheduling, "FAN_IN", 2)  # 5 holders: two merge levels
        monkeypatch.setattr(scheduling.reduction, "total", counting_total)
        received.clear()
        merged = fit(client)
        leftovers = client.run(lambda: len(scheduling._KEPT))
    assert received and max(received) <= 2, received  # at most a fan-in's worth
    assert np.array_equal(merged.coef_, direct.coef_)
    assert merged.intercept_ == direct.intercept_
    assert merged.loss_history_ == direct.loss_history_
    assert set(leftovers.values()) == {0}  # nothing kept after the run


@pytest.mark.cluster
@pytest.mark.parametrize(
    "sig, wait_timeout", [(signal.SIGKILL, 60), (signal.SIGSTOP, 3)], ids=["killed", "stopped"]
)
def test_a_scheduler_lost_while_the_job_waits_for_workers_is_a_cluster_error(
    tmp_path, sig, wait_timeout
):
    """The scheduler dies (or hangs) while ``--wait-for-workers`` waits: exit 3 with one
    line saying so, not a storage error or a traceback."""
    X, y = random_problem(300, 2, seed=48)
    path = write_partitions(tmp_path / "data", X, y, [300])
    env = {k: v for k, v in os.environ.items() if not leaked_setting(k)}
    with RealCluster(workers=1, tmp_dir=str(tmp_path)) as cluster:
        job = subprocess.Popen(
            [
                os.path.join(BIN, "lrdask"),
                "train",
                path,
                "--label",
                "y",
                "--out",
                str(tmp_path / "m"),
                "--scheduler",
                cluster.address,
                "--wait-for-workers",
                "3",
                "--wait-for-workers-timeout",
                str(wait_timeout),
            ],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            seen = []
            while not any("for 3 worker(s): 1 registered" in s for s in seen):
                line = job.stderr.readline()
                assert line, "".join(seen)
                seen.append(line)
            cluster.scheduler.send_signal(sig)
            _, err = job.communicate(timeout=180)
        finally:
            cluster.scheduler.send_signal(signal.SIGCONT)
            if job.poll() is None:
                job.kill()
                job.wait()
    assert job.returncode == 3, "".join(seen) + err
    last = err.strip().splitlines()[-1]
    assert last.startswith(
        "lrdask: error: the Dask scheduler stopped answering while the job waited for workers"
    ), err
    # Dask's own client logger may still print its cancelled reconnect (as it does for a
    # scheduler lost mid-pass): the job's message is the last line, and the exit code


@pytest.mark.parametrize("n_workers", [1, 2, 7, 8, 9, 16, 17, 64, 65, 130, 1000])
def test_relays_cover_every_worker_once_in_groups_of_fan_in(n_workers):
    """A pass reaches ⌈W / FAN_IN⌉ relays (all W up to FAN_IN), each passing it on to at
    most FAN_IN − 1 others: every worker is folded exactly once."""
    addresses = [f"tcp://10.1.{k // 250}.{k % 250}:8788" for k in range(n_workers)]
    tree = scheduling.relays(addresses)
    covered = [addr for root, children in tree.items() for addr in (root, *children)]
    assert sorted(covered) == sorted(addresses)
    fan_in = scheduling.FAN_IN
    assert len(tree) == (n_workers if n_workers <= fan_in else math.ceil(n_workers / fan_in))
    assert all(len(children) <= fan_in - 1 for children in tree.values())
