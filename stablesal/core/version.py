"""The package version (``stablesal.__version__``) and the hash of its source, kept in the bottom
layer so that every layer may record them."""

import functools
import hashlib
from pathlib import Path

__version__ = "0.1.0"

PACKAGE = Path(__file__).resolve().parents[1]


@functools.lru_cache(maxsize=None)
def source_hash(*folders: str) -> str:
    """A hash of every ``.py`` file under ``folders`` of the package (all of it when none is given):
    each file's path and bytes, each length-prefixed so no two file sets hash alike, 16 hex digits.
    A cached result keyed on it is recomputed whenever the code that computed it changes, and a
    module added or moved into those folders is covered without a list to maintain."""
    roots = [PACKAGE / folder for folder in folders] or [PACKAGE]
    digest = hashlib.sha256()
    for path in sorted({path for root in roots for path in root.rglob("*.py")}):
        for part in (path.relative_to(PACKAGE).as_posix().encode(), path.read_bytes()):
            digest.update(len(part).to_bytes(8, "little") + part)
    return digest.hexdigest()[:16]
