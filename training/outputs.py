"""Output files of the commands: checked before any work, written whole or not at all.

``check_out_file`` / ``check_out_folder`` refuse a path that cannot be written (wrong suffix, a folder where a
file goes, a parent that is a file, a location that cannot be written) before a command trains or scores, so a
bad ``--out`` costs nothing. ``staged`` writes frames to hidden temporary files beside their targets and moves
them into place only when every one is written (and the caller's block, e.g. a database upsert, succeeded); on
any failure the temporary files are removed and an existing file at the target is left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd

from features.errors import SalesmlError

__all__ = ["check_out_file", "check_out_folder", "staged", "write_frame"]


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
    """Write every frame to a temporary file beside its target; on leaving the block without an error, move them
    all into place. Any error (writing, or raised in the block) removes the temporary files and keeps whatever
    was at the targets before."""
    temps: dict[Path, Path] = {}
    try:
        for path, frame in targets.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            # Not mkstemp: its files are private (0600); these get the permissions any new file gets here.
            temps[path] = path.with_name(
                f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
            )
            try:
                writer(frame, temps[path])
            except OSError as err:
                raise SalesmlError(
                    f"could not write {option} {path}: {err.strerror or err}; nothing was written"
                ) from err
        yield
        for path, temp in temps.items():
            os.replace(temp, path)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
