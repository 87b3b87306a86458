"""Write a directory all at once: build it in a sibling temp dir, then rename it into place.

A crash or Ctrl-C mid-build leaves only a `.tmp-*` sibling behind, which the next build
sweeps away, never a half-written output under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from webllm_build.errors import StorageError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_directory(final: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temp dir beside `final`; on success it becomes `final`."""
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=parent))
        # mkdtemp makes it 0700; the result is an ordinary directory (a web server running as
        # another user must be able to read a built site).
        tmp.chmod(0o777 & ~_current_umask())
    except OSError as exc:
        raise StorageError(
            f"Cannot write to {parent}: {exc.strerror}. Make the directory writable, or point "
            f"the output somewhere else."
        ) from None
    try:
        yield tmp
        if final.exists():
            if not replace:
                # Another process finished the same build first; its result is as good as ours.
                shutil.rmtree(tmp)
                return
            old = Path(tempfile.mkdtemp(prefix=f".old-{final.name}-", dir=parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# Older than any real build; a younger temp dir may belong to a build running right now in
# another process, and must be left alone.
STALE_AFTER_S = 6 * 3600


def sweep_stale_temps(parent: Path) -> None:
    """Remove temp dirs that a killed build left in `parent` (interrupted ones clean up)."""
    if not parent.is_dir():
        return
    now = time.time()
    for entry in parent.iterdir():
        if not entry.name.startswith((".tmp-", ".old-")) or not entry.is_dir():
            continue
        try:
            stale = now - entry.stat().st_mtime > STALE_AFTER_S
        except FileNotFoundError:  # another process finished with it meanwhile
            continue
        if stale:
            shutil.rmtree(entry, ignore_errors=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write one file through a temp file beside it and a rename: readers never see half of it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, 0o666 & ~_current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"Cannot write {path}: {exc.strerror}. Pick a writable location.") from None
