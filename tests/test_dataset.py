import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lrdask.dataset import plan_dataset
from lrdask.errors import DataError


def write(path, **columns):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(pa.table(columns), path, row_group_size=4)
    return path


@pytest.fixture
def data_dir(tmp_path):
    d = tmp_path / "data"
    write(str(d / "a.parquet"), x=np.arange(10.0), z=np.ones(10), y=np.zeros(10, int))
    write(str(d / "b.parquet"), x=np.arange(6.0), z=np.ones(6), y=np.ones(6, int))
    (d / "_SUCCESS").write_text("")
    (d / ".hidden.parquet").write_text("not parquet")
    return str(d)


def test_plan_lists_files_pieces_and_default_features(data_dir):
    plan = plan_dataset(data_dir, "y")
    assert plan.features == ["x", "z"]
    assert [os.path.basename(f.path) for f in plan.files] == ["a.parquet", "b.parquet"]
    assert plan.num_rows == 16
    assert plan.fingerprint_items()[0][1] == 10


def test_pieces_group_row_groups_up_to_the_target(data_dir):
    plan = plan_dataset(data_dir, "y", target_piece_values=2 * 8)  # 8 rows of 2 features
    assert [(os.path.basename(p.path), p.row_groups, p.num_rows) for p in plan.pieces] == [
        ("a.parquet", (0, 1), 8),
        ("a.parquet", (2,), 2),
        ("b.parquet", (0, 1), 6),
    ]


def test_single_file_and_explicit_features(data_dir):
    plan = plan_dataset(os.path.join(data_dir, "b.parquet"), "y", features=["z"])
    assert plan.features == ["z"] and plan.num_rows == 6


def test_exclude(data_dir):
    assert plan_dataset(data_dir, "y", exclude=["z"]).features == ["x"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"label": "why"}, "label column 'why' not found; did you mean 'y'?"),
        (
            {"label": "y", "features": ["x", "zz"]},
            "feature column 'zz' not found; did you mean 'z'?",
        ),
        ({"label": "y", "features": ["x", "y"]}, "label column 'y' is also listed as a feature"),
        ({"label": "y", "exclude": ["q"]}, "excluded column 'q' not found"),
    ],
)
def test_column_errors_name_the_column_and_suggest(data_dir, kwargs, message):
    with pytest.raises(DataError, match=message):
        plan_dataset(data_dir, **kwargs)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="no such file or directory"):
        plan_dataset(str(tmp_path / "nope"), "y")


def test_empty_directory(tmp_path):
    with pytest.raises(DataError, match="directory is empty"):
        plan_dataset(str(tmp_path), "y")


def test_every_visible_file_is_data_whatever_its_extension(tmp_path):
    (tmp_path / "data.csv").write_text("x,y\n1,0\n")
    with pytest.raises(DataError, match=r"data\.csv: not a readable Parquet file .* is data"):
        plan_dataset(str(tmp_path), "y")


def test_not_parquet_file_is_named(data_dir):
    Path(data_dir, "c.parquet").write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match="c.parquet: not a readable Parquet file"):
        plan_dataset(data_dir, "y")


def test_truncated_file_is_named(data_dir):
    good = Path(data_dir, "a.parquet").read_bytes()
    Path(data_dir, "c.parquet").write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="c.parquet: not a readable Parquet file"):
        plan_dataset(data_dir, "y")


def test_non_numeric_default_feature_says_how_to_exclude(data_dir):
    write(
        os.path.join(data_dir, "a.parquet"),
        x=np.arange(3.0),
        z=np.ones(3),
        y=np.zeros(3, int),
        city=["a", "b", "c"],
    )
    write(
        os.path.join(data_dir, "b.parquet"),
        x=np.arange(3.0),
        z=np.ones(3),
        y=np.ones(3, int),
        city=["a", "b", "c"],
    )
    with pytest.raises(DataError, match="'city' has type string.*--exclude city"):
        plan_dataset(data_dir, "y")
    assert plan_dataset(data_dir, "y", exclude=["city"]).features == ["x", "z"]


def test_non_numeric_requested_feature(data_dir):
    write(
        os.path.join(data_dir, "a.parquet"),
        x=np.arange(3.0),
        y=np.zeros(3, int),
        tags=pa.array([[1.0], [2.0], []]),
    )
    with pytest.raises(
        DataError, match="'tags' has type list<.*double>.*remove it from --features"
    ):
        plan_dataset(data_dir, "y", features=["x", "tags"])


def test_string_label_is_planned_and_a_nested_one_refused(tmp_path):
    write(str(tmp_path / "a.parquet"), x=np.arange(3.0), y=["no", "yes", "no"])
    assert plan_dataset(str(tmp_path), "y").label == "y"
    write(str(tmp_path / "a.parquet"), x=np.arange(3.0), y=[[1], [2], [3]])
    with pytest.raises(DataError, match="label column 'y' has type list"):
        plan_dataset(str(tmp_path), "y")


def test_schema_mismatch_missing_column(data_dir):
    write(os.path.join(data_dir, "b.parquet"), x=np.arange(6.0), y=np.ones(6, int))
    with pytest.raises(DataError, match="b.parquet: column 'z' is missing in this file"):
        plan_dataset(data_dir, "y")


def test_schema_mismatch_type(data_dir):
    write(
        os.path.join(data_dir, "b.parquet"),
        x=[str(i) for i in range(6)],
        z=np.ones(6),
        y=np.ones(6, int),
    )
    with pytest.raises(
        DataError, match="b.parquet: column 'x' has type string here but double in .*a.parquet"
    ):
        plan_dataset(data_dir, "y")


def test_int_and_float_columns_mix(data_dir):
    write(os.path.join(data_dir, "b.parquet"), x=np.arange(6), z=np.ones(6), y=np.ones(6, int))
    assert plan_dataset(data_dir, "y").num_rows == 16


def test_zero_rows(tmp_path):
    write(str(tmp_path / "a.parquet"), x=np.zeros(0), y=np.zeros(0, int))
    with pytest.raises(DataError, match="zero rows in 1 file"):
        plan_dataset(str(tmp_path), "y")


def test_small_pieces_are_grouped_into_blocks():
    from lrdask.dataset import Piece, group_pieces

    pieces = [Piece(f"f{i}", (0,), n) for i, n in enumerate([10, 10, 30, 5, 5, 100, 1])]
    groups = group_pieces(pieces, 30)
    assert [[p.path for p in g] for g in groups] == [
        ["f0", "f1"],
        ["f2"],
        ["f3", "f4"],
        ["f5"],
        ["f6"],
    ]
    assert [p for g in groups for p in g] == pieces  # every piece once, in order


def test_blocks_depend_on_the_data_alone(tmp_path):
    """Small files are grouped until a block has BLOCK_ENOUGH_ROWS rows, whatever the
    cluster: the blocks fix the arithmetic (``lrdask.reduction``)."""
    from conftest import random_problem, write_partitions

    from lrdask import dataset

    X, y = random_problem(400, 2)
    plan = plan_dataset(write_partitions(tmp_path / "d", X, y, [25] * 16), "y")
    assert len(plan.pieces) == 16
    assert [len(g) for g in plan.blocks()] == [16]
    plan.target_values = 2 * 100  # two features: 100 rows per block at most
    assert [len(g) for g in plan.blocks()] == [4, 4, 4, 4]
    assert dataset.BLOCK_ENOUGH_ROWS > 100


def test_groups_close_once_they_have_enough_rows():
    from lrdask.dataset import Piece, group_pieces

    pieces = [Piece(f"f{i}", (0,), 10) for i in range(7)]
    sizes = [len(g) for g in group_pieces(pieces, rows_per_block=100, enough_rows=25)]
    assert sizes == [3, 3, 1]
