"""Output files of the commands: checked before any work, written whole or not at all.

``check_out_file`` / ``check_out_folder`` refuse a path that cannot be written (wrong suffix, a folder where a
file goes, a parent that is a file, a location that cannot be written) before a command trains or scores, so a
bad ``--out`` costs nothing. ``staged`` writes frames to hidden temporary files beside their targets and moves
them into place only when every one is written (and the caller's block, e.g. a database upsert, succeeded); on
any failure the temporary files are removed and an existing file at the target is left as it was. A target
without a suffix is a folder of Parquet parts (:func:`write_parts`), staged and swapped in the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from features.errors import SalesmlError

__all__ = [
    "PART_GLOB",
    "check_out_file",
    "check_out_folder",
    "check_out_parts",
    "staged",
    "write_frame",
    "write_parts",
]

PART_GLOB = "part-*.parquet"


def _writable_ancestor(path: Path, option: str) -> None:
    """The nearest existing ancestor of ``path`` must be a folder this process can create files in."""
    ancestor = path.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise SalesmlError(f"{option} {path}: {ancestor} is a file, not a folder")
    try:
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as err:
        raise SalesmlError(
            f"{option} {path}: cannot create files in {ancestor} ({err.strerror or err})"
        ) from err


def check_out_file(out: Path, suffixes: tuple[str, ...], option: str = "--out") -> Path:
    """``out`` as a file to write: one of ``suffixes``, not a folder, in a location that can be written."""
    if not str(out).strip():
        raise SalesmlError(f"{option} is empty; give a file name ending in {' or '.join(suffixes)}")
    if out.suffix not in suffixes:
        raise SalesmlError(f"{option} must end in {' or '.join(suffixes)}, got {out}")
    if out.is_dir():
        raise SalesmlError(f"{option} {out} is a folder; give a file name ending in {' or '.join(suffixes)}")
    _writable_ancestor(out, option)
    return out


def check_out_folder(out: str | Path, files: tuple[str, ...], option: str = "--out") -> Path:
    """``out`` as a folder to write ``files`` into: not empty, not a file, in a location that can be written."""
    if not str(out).strip():
        raise SalesmlError(f"{option} is empty; give a folder for {', '.join(files)}")
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise SalesmlError(f"{option} {folder} is a file; give a folder for {', '.join(files)}")
    for name in files:
        if (folder / name).is_dir():
            raise SalesmlError(f"{option} {folder}: {folder / name} is a folder, where the file {name} goes")
    _writable_ancestor(folder / files[0], option)
    return folder


def check_out_parts(out: Path, option: str = "--out") -> Path:
    """``out`` as a folder of Parquet parts to (re)write: a new folder, or one that holds only such parts."""
    if out.exists() and not out.is_dir():
        raise SalesmlError(f"{option} {out} is a file; a name without a suffix is a folder of Parquet parts")
    if out.is_dir():
        other = sorted(p.name for p in out.iterdir() if not p.match(PART_GLOB))
        if other:
            raise SalesmlError(
                f"{option} {out} holds other files ({', '.join(other[:3])}); a folder of score parts is replaced "
                "whole, so give a new folder or one with only part-*.parquet files"
            )
    _writable_ancestor(out / "part-00000.parquet", option)
    return out


def write_parts(
    frame: pd.DataFrame, folder: Path, by: str = "customer_id", n_parts: int | None = None
) -> None:
    """``frame`` as ``folder/part-00000.parquet`` ...: rows hashed on ``by`` into ``n_parts`` parts (default: 4,
    more to keep a part under about 500,000 rows; one entity's rows in one part; an empty part is not written)."""
    from features.distributed import entity_buckets

    n_parts = n_parts or max(4, -(-len(frame) // 500_000))
    folder.mkdir()
    part = entity_buckets(frame[by], n_parts) if len(frame) else []
    for p in range(n_parts):
        rows = frame[part == p]
        if len(rows):
            rows.to_parquet(folder / f"part-{p:05d}.parquet", index=False)


def _swap(temp: Path, path: Path) -> None:
    """Put the staged ``temp`` at ``path`` (a file replaced at once; a folder: the old one moved aside first)."""
    if not temp.is_dir():
        os.replace(temp, path)
        return
    old = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.old")
    if path.exists():
        os.replace(path, old)
    os.replace(temp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """Write ``frame`` to ``path`` by its suffix (.parquet or .csv)."""
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)


@contextlib.contextmanager
def staged(
    targets: dict[Path, pd.DataFrame],
    option: str = "--out",
    writer: Callable[[pd.DataFrame, Path], None] = write_frame,
) -> Iterator[None]:
    """Write every frame to a temporary file beside its target (a target without a suffix: a temporary folder of
    Parquet parts, :func:`write_parts`); on leaving the block without an error, move them all into place. Any
    error (writing, or raised in the block) removes the temporary files and keeps whatever was at the targets
    before."""
    temps: dict[Path, Path] = {}
    try:
        for path, frame in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Not mkstemp: its files are private (0600); these get the permissions any new file gets here.
            temps[path] = path.with_name(
                f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
            )
            try:
                (writer if path.suffix else write_parts)(frame, temps[path])  # no suffix: a folder
            except OSError as err:
                raise SalesmlError(
                    f"could not write {option} {path}: {err.strerror or err}; nothing was written"
                ) from err
        yield
        for path, temp in temps.items():
            _swap(temp, path)
    finally:
        for temp in temps.values():
            if temp.is_dir():
                shutil.rmtree(temp, ignore_errors=True)
            else:
                temp.unlink(missing_ok=True)
