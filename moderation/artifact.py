"""Read a skops artifact in a child process, so scikit-learn never enters a web worker.

skops (and through it scikit-learn and SciPy) adds about 140 MB to a process. The shipped
artifact holds only numpy arrays and plain builtins, so a short-lived child process verifies the
file's sha256, loads it with skops and an explicit trusted-types list, and hands the contents
back as an ``.npz`` stream read with ``allow_pickle=False``: no pickle crosses the boundary
and the worker keeps only numpy.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

META_KEY = "__meta__"
CHILD_TIMEOUT_SECONDS = 180


class ArtifactError(Exception):
    """The artifact could not be verified or decoded; the message says why."""


def pack(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Return a JSON-able description of value, moving its numpy arrays into arrays."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ArtifactError("object arrays are not supported")
        key = f"a{len(arrays)}"
        arrays[key] = value
        return {"__array__": key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {"__dict__": [[pack(k, arrays), pack(v, arrays)] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [pack(v, arrays) for v in value]}
    if isinstance(value, list):
        return [pack(v, arrays) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise ArtifactError(f"unsupported value of type {type(value).__name__}")


def unpack(description: Any, arrays: Any) -> Any:
    """Rebuild the value that pack() described."""
    if isinstance(description, list):
        return [unpack(v, arrays) for v in description]
    if isinstance(description, dict):
        if "__array__" in description:
            return arrays[description["__array__"]]
        if "__tuple__" in description:
            return tuple(unpack(v, arrays) for v in description["__tuple__"])
        return {unpack(k, arrays): unpack(v, arrays) for k, v in description["__dict__"]}
    return description


def encode(value: Any) -> bytes:
    """Return value as npz bytes: its arrays plus a JSON description of the rest."""
    arrays: dict[str, np.ndarray] = {}
    meta = json.dumps(pack(value, arrays)).encode()
    arrays[META_KEY] = np.frombuffer(meta, dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def decode(data: bytes) -> Any:
    """Return the value encode() wrote, without unpickling anything."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    meta = json.loads(arrays.pop(META_KEY).tobytes().decode())
    return unpack(meta, arrays)


def load_verified(path: Path, sha256: str, trusted: list[str]) -> Any:
    """Load a skops file in this process after checking its hash and its types."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise ArtifactError(f"sha256 mismatch for {path.name}: expected {sha256}, got {digest}")
    import skops.io as sio

    try:
        untrusted = [t for t in sio.get_untrusted_types(data=data) if t not in trusted]
    except Exception as exc:  # noqa: BLE001 - a damaged zip raises many different errors
        raise ArtifactError(f"corrupt artifact {path.name}: {exc}") from exc
    if untrusted:
        raise ArtifactError(f"artifact {path.name} holds untrusted types: {', '.join(untrusted)}")
    try:
        return sio.loads(data, trusted=trusted)
    except Exception as exc:  # noqa: BLE001
        raise ArtifactError(f"corrupt artifact {path.name}: {exc}") from exc


def load_in_child(path: Path, sha256: str, trusted: list[str]) -> Any:
    """Load a verified skops file in a child process and return its contents."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
    try:
        child = subprocess.run(
            [sys.executable, "-m", "moderation.artifact", str(path), sha256, *trusted],
            capture_output=True, env=env, timeout=CHILD_TIMEOUT_SECONDS, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ArtifactError(f"could not run the artifact loader: {exc}") from exc
    if child.returncode != 0:
        lines = child.stderr.decode(errors="replace").strip().splitlines()
        raise ArtifactError(lines[-1] if lines else f"loader exited with {child.returncode}")
    try:
        return decode(child.stdout)
    except Exception as exc:  # noqa: BLE001
        raise ArtifactError(f"the artifact loader returned unreadable data: {exc}") from exc


def main(argv: list[str]) -> int:
    """Child entry point: verify and load the artifact, write it to stdout as npz."""
    path, sha256, *trusted = argv
    try:
        data = encode(load_verified(Path(path), sha256, trusted))
    except ArtifactError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
