"""Checks on paths and scale that run before anything starts, so a bad argument is one line and
exit code 2 (InputError) rather than a traceback, or a stack that dies halfway through its start.

Paths: every folder the command will write into must be a folder (or creatable as one) and
writable; a file it will write must have an existing, writable folder. Scale: the local stack's
PostgreSQL must be able to start with the max_connections the run asks of it.
"""

from __future__ import annotations

import os
from pathlib import Path

from input_errors import InputError

# PostgreSQL 15 accepts max_connections in 1..262143 (MAX_BACKENDS, 2^18 - 1), and the sum
# max_connections + autovacuum_max_workers (3) + max_worker_processes (8) + max_wal_senders (10)
# + 1 must stay within it too (postgres refuses to start otherwise: "outside the valid range").
PG_MAX_BACKENDS = 2**18 - 1
PG_OTHER_BACKENDS = 3 + 8 + 10 + 1
PG_MAX_CONNECTIONS = PG_MAX_BACKENDS - PG_OTHER_BACKENDS
# Shared memory PostgreSQL 15 allocates per max_connections slot (PGPROC, lock table, snapshots),
# from `postgres -C shared_memory_size -c max_connections=N`: 1,097 MiB at 20,050 and 4,815 MiB
# at 100,050 here, so 46.5 KiB a slot; it must fit in memory beside the EEs, so half of what is
# available is the most the stack lets PostgreSQL take.
PG_SHARED_KIB_PER_CONNECTION = 46.5
PG_MEMORY_SHARE = 0.5


def check_folder(path: Path, option: str) -> Path:
    """A folder the command creates (if missing) and writes into; returns it absolute.

    The missing part is created and removed again, which is the one sure test (root passes
    every permission check, yet cannot create a folder in /proc); a refused run leaves no trace."""
    path = path.absolute()
    if path.exists() and not path.is_dir():
        raise InputError(f"{option} {path} is a file; name a folder (it is created if missing)")
    missing: list[Path] = []
    existing = path
    while not existing.exists():
        missing.append(existing)
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {path} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path} cannot be created: {existing} is not writable")
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
    except OSError as exc:
        raise InputError(
            f"{option} {path} cannot be created: {exc.strerror} ({exc.filename})"
        ) from None
    finally:
        for folder in reversed(created):
            folder.rmdir()
    return path


def check_output_file(path: Path, option: str) -> Path:
    """A file the command writes once it is up: its folder must exist and be writable now."""
    path = path.absolute()
    if path.is_dir():
        raise InputError(f"{option} {path} is a folder; name a file")
    if not path.parent.is_dir():
        raise InputError(
            f"{option} {path}: folder {path.parent} does not exist; create it or name another"
        )
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise InputError(f"{option} {path}: folder {path.parent} is not writable")
    return path


def available_memory_kib() -> int | None:
    """MemAvailable from /proc/meminfo (Linux); None where there is none (the check is skipped)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def check_local_scale(max_connections: int, asked_by: str, memory_kib: int | None) -> None:
    """Refuses a local stack whose PostgreSQL cannot start. `asked_by` names what set
    max_connections: a run sets it to at least 2 per user + 50 (room for every user's
    connection on every arm, and the recorder)."""
    if max_connections > PG_MAX_CONNECTIONS:
        raise InputError(
            f"{asked_by} needs PostgreSQL max_connections {max_connections:,}, above PostgreSQL's"
            f" limit of {PG_MAX_CONNECTIONS:,}, which allows at most"
            f" {(PG_MAX_CONNECTIONS - 50) // 2:,} users in all (users per arm x arms)"
        )
    if memory_kib is None:
        return
    shared_kib = max_connections * PG_SHARED_KIB_PER_CONNECTION
    if shared_kib > memory_kib * PG_MEMORY_SHARE:
        fits = int(memory_kib * PG_MEMORY_SHARE / PG_SHARED_KIB_PER_CONNECTION)
        raise InputError(
            f"{asked_by} needs PostgreSQL max_connections {max_connections:,}:"
            f" {shared_kib / 1024**2:.1f} GiB of shared memory at"
            f" {PG_SHARED_KIB_PER_CONNECTION} KiB each, over half of the"
            f" {memory_kib / 1024**2:.1f} GiB available, which allows at most"
            f" {max((fits - 50) // 2, 1):,} users in all (users per arm x arms)"
        )
