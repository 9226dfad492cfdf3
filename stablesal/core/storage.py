"""Files that survive interruption: atomic writes, checksums and configuration hashes.

Every file stablesal writes goes to a temporary name in the same folder and is then
renamed over the target (``os.replace`` is atomic on POSIX and Windows), so a killed run
never leaves a half-written file. Binary artefacts carry a SHA-256 in a sidecar
``<name>.sha256`` so that truncated or corrupted files are detected, never used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch


class CorruptFileError(RuntimeError):
    """A cached file or checkpoint failed its checksum or could not be parsed."""


def config_hash(config: Any, length: int = 12) -> str:
    """Stable short hash of a JSON-serialisable configuration (key order ignored)."""
    text = json.dumps(config, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def tensor_digest(*tensors, length: int = 16) -> str:
    """A short hash of the contents, shapes and dtypes of ``tensors`` (None allowed): a cached unit
    keyed on it is recomputed when the images it explained change, whatever the configuration says."""
    digest = hashlib.sha256()
    for tensor in tensors:
        if tensor is None:
            digest.update(b"none")
            continue
        array = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(array.shape)}{array.dtype}".encode())
        digest.update(array.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:length]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp creates 0600; give the file the mode an ordinary open() would (0666 less the
        # umask), so a report folder can be shared or served
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    _atomic_write(Path(path), lambda handle: handle.write(data))


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def _checksum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def save_checked(path: Path | str, data: bytes) -> None:
    """Atomically write ``data`` and its SHA-256 sidecar (sidecar last: it marks completion)."""
    path = Path(path)
    atomic_write_bytes(path, data)
    atomic_write_text(_checksum_path(path), hashlib.sha256(data).hexdigest() + "\n")


def load_checked(path: Path | str) -> bytes:
    """Read a file written by :func:`save_checked`, verifying its checksum.

    Raises
    ------
    FileNotFoundError
        If the file or its checksum sidecar is missing (an unfinished write).
    CorruptFileError
        If the content does not match the recorded checksum.
    """
    path = Path(path)
    sidecar = _checksum_path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not sidecar.exists():
        # stablesal writes the sidecar last: without it, the write was interrupted, or the file was
        # made elsewhere (or copied without its sidecar) and cannot be checked
        raise CorruptFileError(f"{path} has no checksum file {sidecar.name}: either its write did not finish or it "
                               "was not written by stablesal's checked writer (or was copied without the sidecar)")
    data = path.read_bytes()
    expected = sidecar.read_text().strip()
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise CorruptFileError(f"{path} is corrupt: SHA-256 {actual[:12]}… does not match the recorded {expected[:12]}…")
    return data


def save_torch(path: Path | str, obj: Any) -> None:
    """``torch.save`` with an atomic rename and a checksum sidecar."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    save_checked(path, buffer.getvalue())


def has_checksum(path: Path | str) -> bool:
    """Whether ``path`` has the SHA-256 sidecar :func:`save_checked` writes."""
    return _checksum_path(Path(path)).exists()


def load_torch(path: Path | str, require_checksum: bool = True) -> Any:
    """Load a file written by :func:`save_torch`; corrupt or truncated files raise :class:`CorruptFileError`.

    ``require_checksum=False`` also reads a file without a sidecar (one written elsewhere, or copied
    without it) as it is; a file with a sidecar is always verified."""
    path = Path(path)
    if not require_checksum and not has_checksum(path):
        if not path.exists():
            raise FileNotFoundError(f"no such file: {path}")
        data = path.read_bytes()
    else:
        data = load_checked(path)
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged pickle
        raise CorruptFileError(f"{path} could not be read as a torch file: {error}") from error


def save_json_checked(path: Path | str, obj: Any) -> None:
    """JSON written atomically with a SHA-256 sidecar (cached units of work)."""
    save_checked(path, json.dumps(obj).encode())


def load_json_checked(path: Path | str) -> Any | None:
    """A cached unit written by :func:`save_json_checked`, or None when it is missing, unfinished
    (no sidecar) or corrupt (checksum or JSON mismatch): the caller then recomputes it."""
    try:
        return json.loads(load_checked(path))
    except (FileNotFoundError, CorruptFileError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def cached_unit(cache_dir: Path | str | None, prefix: str, description: dict) -> tuple[Path | None, Any | None]:
    """The cache file of one unit of work described by ``description`` (hashed into the name after
    ``prefix``) and its saved result: ``(None, None)`` without a cache folder, ``(path, None)`` when
    the unit is missing, unfinished or corrupt and must be computed."""
    if not cache_dir:
        return None, None
    path = Path(cache_dir) / f"{prefix}{config_hash(description)}.json"
    return path, load_json_checked(path)
