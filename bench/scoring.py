"""Benchmark the shipped classifier against alt-profanity-check on the same comments."""

from __future__ import annotations

import os
import sys

# One core, as the targets are stated per core; must be set before numpy is imported.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import csv  # noqa: E402
import gzip  # noqa: E402
import importlib.util  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moderation.classifier import CommentText, load  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
# Share of each source in the realistic mix: mostly English comments, some Chinese, some spam.
MIX = [
    ("toxic_spans_acl2022_comments.csv.gz", "comment_text", None, 0.30),
    ("jigsaw_train_sample.csv.gz", "comment_text", None, 0.25),
    ("cold_dev.csv.gz", "TEXT", None, 0.15),
    ("youtube_spam_psy.csv.gz", "CONTENT", "AUTHOR", 0.15),
    ("sms_spam.csv.gz", "SMS", None, 0.15),
]
WORDS = ("the post article really good think agree point thanks data model code great "
         "but not sure why would you this that about people time year idea work read").split()
ZH = "我们你他的是了在有和不这个人上来到说要就出会可也能对都好看文章写得谢谢分享同意"


def comments(n: int, seed: int = 1) -> list[CommentText]:
    """Return a realistic mix of comments from ../shared/data, or generated ones without it."""
    rng = random.Random(seed)
    out: list[CommentText] = []
    if DATA.is_dir():
        for name, text_col, author_col, share in MIX:
            path = DATA / name
            if not path.is_file():
                continue
            with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
                rows = list(csv.DictReader(fh))
            for r in rng.sample(rows, min(len(rows), int(n * share))):
                out.append(CommentText(r[text_col], author=r[author_col] if author_col else ""))
    while len(out) < n:
        kind = rng.random()
        if kind < 0.15:
            text = "".join(rng.choice(ZH) for _ in range(rng.randint(8, 60)))
        else:
            text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 60))).capitalize()
            if kind > 0.9:
                text += f" visit http://deal{rng.randint(1, 99)}.example/offer now!"
        out.append(CommentText(text, author=rng.choice(["", "Anna", "Best Deals 24"])))
    rng.shuffle(out)
    return out[:n]


def rss_mb() -> float:
    """Return the resident set size of this process in MB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(name: str, load_fn: Callable[[], Any], batch_fn: Callable[[Any, list[Any]], Any],
            single_fn: Callable[[Any, Any], Any], inputs: Sequence[Any],
            batch_size: int, singles: int) -> dict[str, float]:
    """Measure load time, RSS, batched throughput and single-call latency of one scorer."""
    rss0 = rss_mb()
    t = time.perf_counter()
    model = load_fn()
    load_s = time.perf_counter() - t
    rss_delta = rss_mb() - rss0
    batch_fn(model, list(inputs[:batch_size]))  # warm caches
    runs = []
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, len(inputs), batch_size):
            batch_fn(model, list(inputs[i:i + batch_size]))
        runs.append(len(inputs) / (time.perf_counter() - t))
    # Three timed passes: the first gives the raw figures; the per-comment minimum over the
    # passes filters out preemption by other processes on a shared machine.
    passes = []
    for _ in range(3):
        times = []
        for item in inputs[:singles]:
            t0 = time.perf_counter_ns()
            single_fn(model, item)
            times.append((time.perf_counter_ns() - t0) / 1e6)
        passes.append(times)
    lat = sorted(passes[0])
    best = sorted(min(t) for t in zip(*passes, strict=True))
    res = {
        "load_s": load_s,
        "rss_mb": rss_mb(),
        "rss_delta_mb": rss_delta,
        "batched_per_s": max(runs),
        "single_per_s": 1000.0 / statistics.mean(lat),
        "p50_ms": lat[len(lat) // 2],
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
        "p99_best_ms": best[min(len(best) - 1, int(len(best) * 0.99))],
    }
    print(f"{name}: load {res['load_s']:.3f} s, RSS after load {res['rss_mb']:.0f} MB "
          f"(+{res['rss_delta_mb']:.0f} MB), batched {res['batched_per_s']:,.0f}/s, "
          f"single {res['single_per_s']:,.0f}/s, p50 {res['p50_ms']:.3f} ms, "
          f"p99 {res['p99_ms']:.3f} ms (best of 3 per comment: {res['p99_best_ms']:.3f} ms)")
    return res


def main() -> int:
    """Run the benchmark and print the figures and ratios."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, default=ROOT / "models")
    parser.add_argument("-n", type=int, default=10000, help="comments in the mix")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--singles", type=int, default=2000)
    args = parser.parse_args()

    items = comments(args.n)
    mean_len = statistics.mean(len(c.text) for c in items)
    source = "../shared/data" if DATA.is_dir() else "generated text"
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"{len(items)} comments from {source}, mean length {mean_len:.0f} characters, "
          f"batches of {args.batch}, {args.singles} single calls, 1 thread")
    ours = measure("ours", lambda: load(args.model), lambda m, b: m.score(b),
                   lambda m, x: m.score_one(x), items, args.batch, args.singles)
    if importlib.util.find_spec("profanity_check") is None:
        print("alt-profanity-check is not installed; no comparison")
        return 0

    def load_theirs() -> Any:
        # Importing the package unpickles its model, so import time is its load time.
        import profanity_check

        return profanity_check.predict_prob

    texts = [c.text for c in items]
    theirs = measure("alt-profanity-check", load_theirs, lambda m, b: m(b),
                     lambda m, x: m([x]), texts, args.batch, args.singles)
    print("ratios ours/theirs (>= 1 means ours is better):")
    print(f"  batched throughput {ours['batched_per_s'] / theirs['batched_per_s']:.2f}")
    print(f"  single throughput  {ours['single_per_s'] / theirs['single_per_s']:.2f}")
    print(f"  p50 speed-up       {theirs['p50_ms'] / ours['p50_ms']:.2f}")
    print(f"  p99 speed-up       {theirs['p99_ms'] / ours['p99_ms']:.2f}")
    print(f"  p99 best-of-3      {theirs['p99_best_ms'] / ours['p99_best_ms']:.2f}")
    ratio = ours["batched_per_s"] / theirs["batched_per_s"]
    for label, key in (("raw", "p99_ms"), ("best of 3", "p99_best_ms")):
        ok = ours["batched_per_s"] >= 20000 and ratio >= 1.0 and ours[key] <= 1.0
        print(f"targets (>= 20,000/s batched and >= 1x alt-profanity-check, <= 1 ms p99 single, "
              f"{label}): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
