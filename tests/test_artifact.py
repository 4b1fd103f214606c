"""The model artifact is read in a child process and reaches the worker without pickle."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moderation.artifact import ArtifactError, decode, encode, load_in_child

MODELS = Path(__file__).resolve().parent.parent / "models"


def test_encode_decode_round_trip_keeps_arrays_and_builtins() -> None:
    value = {
        "format": 1,
        "weights": np.arange(12, dtype=np.float16).reshape(3, 4),
        "heads": ["spam", "toxicity"],
        "features": {"bits": 19, "ranges": (2, 5), "flag": True, "none": None, 3: "int key"},
        "scalar": np.float32(0.25),
    }
    back = decode(encode(value))
    assert back["weights"].dtype == np.float16
    assert np.array_equal(back["weights"], value["weights"])
    assert back["features"] == value["features"]
    assert back["heads"] == ["spam", "toxicity"]
    assert back["scalar"] == 0.25


def test_object_arrays_are_refused() -> None:
    with pytest.raises(ArtifactError, match="object arrays"):
        encode({"x": np.array([object()], dtype=object)})


def test_child_refuses_a_file_whose_hash_changed(tmp_path: Path) -> None:
    fake = tmp_path / "classifier.skops"
    fake.write_bytes(b"not a zip")
    with pytest.raises(ArtifactError, match="sha256 mismatch"):
        load_in_child(fake, "0" * 64, [])


@pytest.mark.skipif(not (MODELS / "manifest.json").exists(), reason="no shipped model")
def test_loading_the_shipped_model_keeps_scikit_learn_out_of_the_process() -> None:
    code = (
        "import sys; from moderation.classifier import load; c = load(sys.argv[1]); "
        "print(c.version, 'sklearn' in sys.modules, 'skops' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(MODELS)], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"]
