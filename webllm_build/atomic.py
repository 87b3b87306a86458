"""Write a directory all at once: build it in a sibling temp dir, then rename it into place.

A crash or Ctrl-C mid-build leaves only a `.tmp-*` sibling behind, which the next build
sweeps away, never a half-written output under the final name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from webllm_build.errors import CacheError


@contextmanager
def atomic_directory(final: Path, *, replace: bool = True) -> Iterator[Path]:
    """Yield an empty temp dir beside `final`; on success it becomes `final`."""
    parent = final.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=parent))
    except OSError as exc:
        raise CacheError(
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


def sweep_stale_temps(parent: Path) -> None:
    """Remove temp dirs that an interrupted build left in `parent`."""
    if not parent.is_dir():
        return
    for entry in parent.iterdir():
        if entry.name.startswith((".tmp-", ".old-")) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
