"""`poolbench collect`: the run window's metrics from the run's source into metrics.csv.

The target decides the source: local runs have per-second samples from the local recorder;
aws runs read CloudWatch and merge the probe's per-arm DatabaseConnections samples (CloudWatch
only knows the cluster's total).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from rich.console import Console

from analysis import dataset
from analysis.cloudwatch_source import Clock, CloudWatchSettings, collect_cloudwatch
from analysis.local_source import read_samples
from analysis.runfolder import METRICS, SAMPLES, RunFolder
from analysis.serving_ees import read_serving_ees
from functions.contract import TARGETS
from input_errors import InputError

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

SAMPLES_MADE_BY = "the local metrics recorder writes it during `poolbench run`"


def samples_dataset(folder: RunFolder) -> pd.DataFrame:
    """The run's samples.jsonl as a dataset (source `local`), with the EEs counted from the
    responses."""
    path = folder.require(SAMPLES, SAMPLES_MADE_BY)
    return dataset.concat([read_samples(path, source="local"), read_serving_ees(folder.path)])


def collect(
    run_dir: Path,
    *,
    target: str | None = None,
    wait: bool = True,
    client: CloudWatchClient | None = None,
    clock: Clock | None = None,
    console: Console | None = None,
) -> Path:
    """Writes <run_dir>/metrics.csv (atomically) and returns its path.

    `target` defaults to the manifest's; `client` replaces the default CloudWatch client.
    Nothing is written unless collection succeeded, so a failed collect keeps the old file.
    """
    folder = RunFolder.open(run_dir)
    chosen = target or folder.target
    if chosen not in TARGETS:
        raise InputError(f"unknown target {chosen!r}: use one of {', '.join(TARGETS)}")
    frame = collect_frame(folder, chosen, wait=wait, client=client, clock=clock, console=console)
    out = folder.file(METRICS)
    dataset.write_metrics(frame, out)
    return out


def collect_frame(
    folder: RunFolder,
    target: str,
    *,
    wait: bool = True,
    client: CloudWatchClient | None = None,
    clock: Clock | None = None,
    console: Console | None = None,
) -> pd.DataFrame:
    """The dataset for one target, not yet written."""
    if target == "local":
        return samples_dataset(folder)
    settings = CloudWatchSettings.from_outputs(folder.outputs(), folder.arms)
    start, end = folder.window()
    frame, _calls = collect_cloudwatch(
        settings, start, end, client=client, wait=wait, clock=clock, console=console
    )
    probe = folder.file(SAMPLES)
    parts = [frame, read_serving_ees(folder.path)]
    if probe.is_file():
        parts.append(read_samples(probe, source="probe"))
    return dataset.concat(parts)


def load_dataset(folder: RunFolder) -> tuple[pd.DataFrame, bool]:
    """metrics.csv if collected, else the dataset built from samples.jsonl; the flag says
    the latter, i.e. that metrics.csv still has to be written."""
    path = folder.file(METRICS)
    if path.is_file():
        return dataset.read_metrics(path), False
    if folder.target == "aws":
        raise InputError(
            f"run folder {folder.path} has no {METRICS}: an AWS run's metrics come from "
            f"CloudWatch; run `poolbench collect {folder.path} --target aws`, then "
            f"`poolbench report {folder.path}`"
        )
    return samples_dataset(folder), True


def load_or_collect(folder: RunFolder) -> pd.DataFrame:
    """metrics.csv if collected; otherwise built from samples.jsonl and written, so `report`
    works straight after `run` without touching the network."""
    frame, fresh = load_dataset(folder)
    if fresh:
        dataset.write_metrics(frame, folder.file(METRICS))
    return frame
