import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fsspec.implementations.local import LocalFileSystem

from lrdask.dataset import Piece
from lrdask.encoding import numeric_encoding
from lrdask.errors import DataError
from lrdask.loading import BlockReport, block_from_table, check_reports, load_piece


def enc(features, label="y", classes=(0, 1)):
    return numeric_encoding(features, label, classes)


def test_block_is_contiguous_and_projected(tmp_path):
    path = str(tmp_path / "a.parquet")
    pq.write_table(
        pa.table({"a": [1.0, 2.0, 3.0], "b": [4, 5, 6], "c": ["u", "v", "w"], "y": [0, 1, 1]}),
        path,
        row_group_size=1,
    )
    block = load_piece(Piece(path, (1, 2), 2), LocalFileSystem(), enc(["b", "a"]))
    assert block.X.flags.f_contiguous and block.X.dtype == np.float64
    np.testing.assert_array_equal(block.X, [[5.0, 2.0], [6.0, 3.0]])
    np.testing.assert_array_equal(block.y, [1.0, 1.0])
    assert block.report.rows == 2 and block.report.positives == 2
    assert "row groups 1-2" in block.report.source


def test_float32_storage():
    table = pa.table({"a": np.arange(3.0), "y": np.array([0, 1, 0])})
    block = block_from_table(table, enc(["a"]), "t", dtype="float32")
    assert block.X.dtype == np.float32 and block.y.dtype == np.float64


def test_counts_nan_inf_and_nulls_per_column():
    table = pa.table(
        {
            "a": pa.array([1.0, None, 3.0, np.nan]),
            "b": np.array([np.inf, 1.0, 2.0, 0.0]),
            "y": np.array([0, 1, 0, 1]),
        }
    )
    report = block_from_table(table, enc(["a", "b"]), "src").report
    assert report.missing_values == {"a": 2} and report.bad_values == {"b": 1}


def test_reports_labels_that_are_not_classes():
    table = pa.table({"a": np.zeros(5), "y": np.array([-1, 1, 1, 2, 0.5])})
    report = block_from_table(table, enc(["a"]), "part-3").report
    assert report.bad_label_rows == 3 and report.bad_labels == [-1.0, 0.5, 2.0]
    with pytest.raises(
        DataError,
        match=r"part-3: label column 'y' holds 3 of 5 rows with values that are not "
        r"classes of the model \(-1.0, 0.5, 2.0\); its classes are 0, 1",
    ):
        check_reports([report], "y", classes=(0, 1))


def test_nan_error_counts_across_partitions():
    reports = [
        BlockReport("p0", 10, 3, missing_values={"x": 2}),
        BlockReport("p1", 10, 3, missing_values={"x": 1, "z": 4}),
    ]
    with pytest.raises(
        DataError,
        match=r"p0: column 'x' has 3 null or NaN value\(s\) "
        r"in 2 partition\(s\); also in 'z'; pass --missing mean",
    ):
        check_reports(reports, "y")


def test_zero_rows_and_single_class():
    with pytest.raises(DataError, match="zero rows"):
        check_reports([BlockReport("p0", 0)], "y")
    with pytest.raises(DataError, match="class 1 has no rows in all 7 rows"):
        check_reports([BlockReport("p0", 7, 0)], "y")
    with pytest.raises(DataError, match="class 'no' has no rows in all 7 rows"):
        check_reports([BlockReport("p0", 3, 3), BlockReport("p1", 4, 4)], "y", classes=("no", 1))
    check_reports([BlockReport("p0", 3, 1)], "y")


def test_unreadable_piece_names_the_file(tmp_path):
    path = tmp_path / "gone.parquet"
    with pytest.raises(DataError, match="gone.parquet .*cannot be read"):
        load_piece(Piece(str(path), (0,), 1), LocalFileSystem(), enc(["a"]))


def test_grouped_pieces_make_one_block_and_name_the_bad_file(tmp_path):
    from lrdask.loading import load_pieces

    pieces = []
    for i, (a, y) in enumerate([([1, 2], [0, 1]), ([3, None], [1, 0]), ([5, 6], [1, 2])]):
        path = str(tmp_path / f"p{i}.parquet")
        pq.write_table(pa.table({"a": pa.array(a, pa.int64()), "y": y}), path)
        pieces.append(Piece(path, (0,), 2))
    fs = LocalFileSystem()
    good = load_pieces(tuple(pieces[:1]) + (pieces[0],), fs, enc(["a"]))
    np.testing.assert_array_equal(good.X[:, 0], [1, 2, 1, 2])
    bad = load_pieces(tuple(pieces), fs, enc(["a"])).report
    assert bad.rows == 6 and bad.missing_values == {"a": 1} and bad.bad_label_rows == 1
    assert bad.source.startswith(pieces[1].path)  # the first file with a problem
    with pytest.raises(DataError, match=r"p1\.parquet \(row group 0\): column 'a' has 1 null"):
        check_reports([bad], "y")
