"""`poolbench report` / `poolbench collect` at the CLI edge: paths printed, bad input is one
line on stderr with exit code 2, and nothing already in the run folder is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolbench.cli import main


def test_report_prints_the_report_path(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run_dir)]) == 0
    out = capsys.readouterr().out.strip()
    assert out == str(run_dir / "report.html")
    assert (run_dir / "summary.json").is_file()


def test_collect_local_prints_the_metrics_path(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["collect", str(run_dir), "--target", "local", "--no-wait"]) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "metrics.csv")


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("poolbench: error: ")
    return lines[0]


def test_missing_run_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_folder_without_manifest_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    line = _one_error_line(capsys)
    assert "has no manifest.json" in line and "poolbench run" in line


@pytest.mark.parametrize(
    ("removed", "command"),
    [
        ("locust_stats.csv", "report"),
        ("samples.jsonl", "report"),
        ("samples.jsonl", "collect"),
    ],
)
def test_partial_folder_names_the_missing_file_and_keeps_what_exists(
    run_dir: Path, removed: str, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an earlier report and a run folder that has lost one input file
    assert main(["report", str(run_dir)]) == 0
    capsys.readouterr()
    (run_dir / "metrics.csv").unlink()
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    (run_dir / removed).unlink()
    del before[removed]
    # When the command runs, it names the file and exits 2
    assert main([command, str(run_dir)]) == 2
    assert f"has no {removed}" in _one_error_line(capsys)
    # And every file that was there is unchanged
    after = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    assert after == before


def test_unknown_target_exits_2(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["collect", str(run_dir), "--target", "gcp"]) == 2
    assert "--target must be one of local, aws" in _one_error_line(capsys)


def test_aws_collect_without_outputs_names_it(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (run_dir / "outputs.json").unlink()
    assert main(["collect", str(run_dir), "--target", "aws", "--no-wait"]) == 2
    assert "has no outputs.json" in _one_error_line(capsys)
