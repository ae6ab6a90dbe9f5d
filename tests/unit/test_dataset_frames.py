"""analysis/dataset.py on hand-made rows: the exact bytes of metrics.csv, the round trip back, the
merge order and which rows a peak reads (mutants scripts/mutation found unchecked)."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from analysis import dataset

T0, T1, T2 = "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z", "2026-11-22T10:00:02Z"
Row = tuple[str, str, str, str, float | None, str, str]


def frame(rows: list[Row]) -> pd.DataFrame:
    buffer = dataset.RowBuffer()
    for row in rows:
        buffer.add(*row)
    return buffer.to_frame()


ROWS: list[Row] = [
    (T1, "managed", "DatabaseConnections", "Maximum", 3.0, "Count", "local"),
    (T0, "managed", "DatabaseConnections", "Maximum", 2.5, "Count", "local"),
    (T0, 'std, "quoted"', "Latency", "p99", None, "Milliseconds", "cloudwatch"),
    (T2, "managed", "ServerConnections", "Sample", 1e20, "Count", "pool:ee-1"),  # a whole number
]


def test_a_row_buffer_keeps_missing_values_missing_and_types_its_columns() -> None:
    buffer = dataset.RowBuffer()
    assert len(buffer) == 0
    for row in ROWS:
        buffer.add(*row)
    assert len(buffer) == 4
    data = buffer.to_frame()
    assert list(data.columns) == list(dataset.COLUMNS)
    assert isinstance(data["time"].dtype, pd.DatetimeTZDtype) and str(data["time"].dt.tz) == "UTC"
    assert data["time"][0] == pd.Timestamp("2026-11-22T10:00:01", tz="UTC")
    assert data["value"].dtype == "float64"
    assert math.isnan(data["value"][2])
    for column in dataset.LABELS:
        assert isinstance(data[column].dtype, pd.CategoricalDtype)
    assert list(data["arm"]) == ["managed", "managed", 'std, "quoted"', "managed"]
    empty = dataset.empty()
    assert list(empty.columns) == list(dataset.COLUMNS) and empty.empty
    assert isinstance(empty["time"].dtype, pd.DatetimeTZDtype)


def test_metrics_csv_is_exactly_these_bytes(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    dataset.write_metrics(frame(ROWS), path)
    assert path.read_text(encoding="utf-8") == (
        "time,arm,metric,stat,value,unit,source\n"
        "2026-11-22T10:00:01Z,managed,DatabaseConnections,Maximum,3,Count,local\n"
        "2026-11-22T10:00:00Z,managed,DatabaseConnections,Maximum,2.5,Count,local\n"
        '2026-11-22T10:00:00Z,"std, ""quoted""",Latency,p99,,Milliseconds,cloudwatch\n'
        "2026-11-22T10:00:02Z,managed,ServerConnections,Sample,100000000000000000000,Count,pool:ee-1\n"
    )
    dataset.write_metrics(dataset.empty(), path)
    assert path.read_text(encoding="utf-8") == "time,arm,metric,stat,value,unit,source\n"


def test_metrics_csv_in_chunks_is_the_same_file() -> None:
    data = frame(ROWS * 3)
    whole = b"".join(dataset._csv_chunks(data))
    chunks = list(dataset._csv_chunks(data, rows_per_chunk=5))
    assert len(chunks) == 1 + 3  # the header, then 12 rows in chunks of 5
    assert b"".join(chunks) == whole
    assert whole.count(b"\n") == 13


def test_quoting_covers_commas_quotes_and_line_breaks() -> None:
    assert dataset._quote("plain") == "plain"
    assert dataset._quote("a,b") == '"a,b"'
    assert dataset._quote('say "hi"') == '"say ""hi"""'
    assert dataset._quote("two\nlines") == '"two\nlines"'
    assert dataset._quote("cr\r") == '"cr\r"'
    assert dataset._value_cell(float("nan")) == ""
    assert dataset._value_cell(4.0) == "4"
    assert dataset._value_cell(0.1) == "0.1"
    assert dataset._value_cell(1e-7) == "1e-07"


def test_read_metrics_gives_back_what_was_written(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    original = frame(ROWS)
    dataset.write_metrics(original, path)
    back = dataset.read_metrics(path)
    pd.testing.assert_frame_equal(back, original)
    # "NA", "null" or "nan" as a label stay text: only an empty value cell is missing
    path.write_text(
        f"time,arm,metric,stat,value,unit,source\n{T0},NA,null,nan,1,None,local\n",
        encoding="utf-8",
    )
    labels = dataset.read_metrics(path).iloc[0]
    assert [labels["arm"], labels["metric"], labels["stat"], labels["unit"]] == [
        "NA",
        "null",
        "nan",
        "None",
    ]
    assert isinstance(dataset.read_metrics(path)["arm"].dtype, pd.CategoricalDtype)


def test_read_metrics_names_the_columns_a_file_lacks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("time,arm,metric,value\n", encoding="utf-8")
    with pytest.raises(ValueError) as error:
        dataset.read_metrics(path)
    assert str(error.value) == f"{path} lacks columns stat, unit, source"


def raw(rows: list[Row]) -> pd.DataFrame:
    """Rows as a source hands them to combine: text times and labels, None for missing."""
    return pd.DataFrame(rows, columns=list(dataset.COLUMNS))


@pytest.mark.parametrize("merge", ["concat", "combine"])
def test_merges_sort_by_time_and_keep_equal_times_in_order(merge: str) -> None:
    if merge == "concat":
        merged = dataset.concat([frame(ROWS[:2]), dataset.empty(), frame(ROWS[2:])])
    else:
        merged = dataset.combine([raw(ROWS[:2]), raw(ROWS[2:])])
    assert [str(t) for t in merged["time"]] == [
        "2026-11-22 10:00:00+00:00",
        "2026-11-22 10:00:00+00:00",
        "2026-11-22 10:00:01+00:00",
        "2026-11-22 10:00:02+00:00",
    ]
    assert list(merged["arm"])[:2] == ["managed", 'std, "quoted"']  # stable for equal times
    assert merged["value"].tolist()[0] == 2.5
    assert list(merged.index) == [0, 1, 2, 3]
    for column in dataset.LABELS:
        assert isinstance(merged[column].dtype, pd.CategoricalDtype)
        assert all(isinstance(c, str) for c in merged[column].cat.categories)


def test_concat_of_nothing_is_the_empty_dataset() -> None:
    assert dataset.concat([dataset.empty(), dataset.empty()]).empty
    assert list(dataset.concat([]).columns) == list(dataset.COLUMNS)


def test_combine_of_one_frame_sorts_it_and_fills_missing_labels() -> None:
    rows: list[Row] = [
        (T1, "a", "m", "Sum", 1.0, "Count", "local"),
        (T0, None, "m", "Sum", None, "Count", "local"),  # type: ignore[list-item]
    ]
    one = dataset.combine([raw(rows)])
    assert list(one["arm"]) == ["", "a"]  # a missing label becomes ""
    assert one["value"].isna().tolist() == [True, False]
    two = dataset.combine([raw(rows), raw(rows)])
    assert list(two["arm"]) == ["", "", "a", "a"]


def test_series_and_peak_read_arm_level_rows_of_the_peak_statistics() -> None:
    data = frame(
        [
            (T0, "managed", "DatabaseConnections", "Maximum", 4.0, "Count", "local"),
            (T0, "managed", "DatabaseConnections", "Maximum", 6.0, "Count", "probe"),
            (T1, "managed", "DatabaseConnections", "Sample", 5.0, "Count", "responses"),
            (T1, "managed", "DatabaseConnections", "Maximum", 9.0, "Count", "pool:ee-1"),
            (T2, "managed", "DatabaseConnections", "Average", 50.0, "Count", "cloudwatch"),
            (T2, "managed", "DatabaseConnections", "Maximum", None, "Count", "cloudwatch"),
            (T2, "standard", "DatabaseConnections", "Maximum", 70.0, "Count", "local"),
            (T2, "managed", "Other", "Maximum", 80.0, "Count", "local"),
        ]
    )
    series = dataset.series(data, "managed", "DatabaseConnections")
    assert series.tolist() == [6.0, 5.0]  # max over sources per time; per-EE rows left out
    assert [str(t) for t in series.index] == [
        "2026-11-22 10:00:00+00:00",
        "2026-11-22 10:00:01+00:00",
    ]
    assert dataset.peak(data, "managed", "DatabaseConnections") == 6.0
    assert dataset.series(data, "managed", "DatabaseConnections", stats=("Average",)).tolist() == [
        50.0
    ]
    assert dataset.peak(data, "proxy", "DatabaseConnections") is None
    assert dataset.series(data, "proxy", "DatabaseConnections").dtype == "float64"
    assert len(dataset.arm_level(data)) == 7


def test_merges_keep_the_columns_in_order_and_equal_times_stable_at_scale() -> None:
    # 1,000 rows over two times: an unstable sort reorders rows of equal time
    rows: list[Row] = [
        (T1 if i % 2 else T0, f"arm-{i:04d}", "m", "Sum", float(i), "Count", "local")
        for i in range(1000)
    ]
    for merged in (
        dataset.combine([raw(rows[:500]), raw(rows[500:])]),
        dataset.concat([frame(rows[:500]), frame(rows[500:])]),
    ):
        assert list(merged.columns) == list(dataset.COLUMNS)
        arms = [str(a) for a in merged["arm"]]
        assert arms == sorted(arms[:500]) + sorted(arms[500:])
        assert arms[0] == "arm-0000" and arms[500] == "arm-0001"


def test_only_commas_quotes_and_line_breaks_are_quoted() -> None:
    assert dataset._quote("XX") == "XX"
    assert dataset._quote("a X b") == "a X b"


def test_times_must_be_in_the_contract_s_format_and_bad_values_are_missing(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValueError):
        frame([("2026-11-22 10:00:00", "a", "m", "Sum", 1.0, "Count", "local")])
    path = tmp_path / "metrics.csv"
    path.write_text(
        f"time,arm,metric,stat,value,unit,source\n{T0},a,m,Sum,abc,Count,local\n",
        encoding="utf-8",
    )
    assert dataset.read_metrics(path)["value"].isna().tolist() == [True]
