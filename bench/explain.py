"""Time the shipped model's explain(), which every dashboard card and /analyze call runs.

Run: .venv/bin/python -P bench/explain.py [--repeat 5] [--longest 50000]

(--longest skips the texts longer than that: to time an older checkout, where a long word
takes minutes.)

Prints the median wall time of one explanation for an ordinary comment and for texts made of
one long word (the n-grams of such a word all widen to the whole word, which took time
quadratic in its length until explain() used position tables), plus a text of many words.
Figures are printed, not asserted; run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from moderation import classifier  # noqa: E402
from moderation.classifier import CommentText  # noqa: E402


def cases() -> dict[str, CommentText]:
    """Return the texts to explain, by name."""
    rng = random.Random(7)
    words = " ".join("".join(rng.choice("abcdefghij") for _ in range(8)) for _ in range(1200))
    return {
        "ordinary comment (18 words)": CommentText(
            "You are a complete idiot and everyone on this blog knows it, go away and stop "
            "posting.", author="Ann"),
        "one word of 1,000 letters": CommentText("a" * 1_000),
        "one word of 10,000 letters": CommentText("This is s" + "o" * 10_000 + " true"),
        "one word of 50,000 letters": CommentText("a" * 50_000),
        "1,200 words (10,800 characters)": CommentText(words),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--longest", type=int, default=50_000)
    args = parser.parse_args()
    model = classifier.load(ROOT / "models")
    model.explain(CommentText("warm up"))
    print(f"explain() with model {model.version}, median of {args.repeat}:")
    for name, item in cases().items():
        if len(item.text) > args.longest:
            continue
        times = []
        for _ in range(args.repeat):
            started = time.perf_counter()
            model.explain(item)
            times.append(time.perf_counter() - started)
        print(f"  {name:<34} {statistics.median(times) * 1000:9.2f} ms")


if __name__ == "__main__":
    main()
