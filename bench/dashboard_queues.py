"""Time dashboard queue pages with 100,000 comments on SQLite and PostgreSQL.

Run: .venv/bin/python -P bench/dashboard_queues.py [--comments 100000] [--pg URL]
(-P keeps bench/ off sys.path, where other scripts would shadow standard modules.)
"""

from __future__ import annotations

import argparse
import random
import re
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from moderation import auth  # noqa: E402
from moderation.db import Comment, Moderator, Site, Thread, db  # noqa: E402
from tests.conftest import make_app  # noqa: E402

PAGES = {
    "pending, priority": "/dashboard/queue/pending",
    "published, priority": "/dashboard/queue/published",
    "published, newest": "/dashboard/queue/published?sort=newest",
    "rejected, score 0.9-1": "/dashboard/queue/rejected?min=0.9",
    "published, search text": "/dashboard/queue/published?q=budget",
    "published, search author": "/dashboard/queue/published?q=reader+77&in=author",
    "audit log": "/dashboard/audit",
    "stats, 30 days": "/dashboard/stats",
}


def seed(app, n: int) -> None:
    rng = random.Random(1)
    now = datetime.now(UTC)
    with app.app_context():
        site = Site(name="Bench", origins=[], settings={})
        db.session.add(site)
        db.session.flush()
        threads = [Thread(site_id=site.id, uri=f"/posts/{i}", title=f"Post {i}")
                   for i in range(500)]
        db.session.add_all(threads)
        db.session.add(Moderator(email="admin@example.org", is_admin=True,
                                 password_hash=auth.hash_password("benchmark password")))
        db.session.flush()
        rows = []
        words = ["budget", "tariff", "election", "bus", "housing", "tax", "school", "policy"]
        for i in range(n):
            spam, toxic = rng.betavariate(0.6, 3), rng.betavariate(0.7, 3)
            r = rng.random()
            status = ("published" if r < 0.8 else "pending" if r < 0.9
                      else "spam" if r < 0.95 else "rejected")
            created = now - timedelta(minutes=rng.uniform(0, 60 * 24 * 60))
            body = " ".join(rng.choice(words) for _ in range(12))
            rows.append({
                "site_id": site.id, "thread_id": threads[i % 500].id,
                "author": f"Reader {i % 5000}",
                "email": f"r{i % 5000}@example.org", "website": "", "author_key": f"k{i % 5000}",
                "client_addr": "198.51.100.0", "user_agent": "", "text": body,
                "html": f"<p>{body}</p>", "status": status, "spam_score": round(spam, 4),
                "toxicity_score": round(toxic, 4),
                "scores": {"spam": round(spam, 4), "toxicity": round(toxic, 4)},
                "reasons": ["toxicity ≥ hold"] if status == "pending" else [],
                "edit_token_hash": "", "created_at": created,
                "decided_at": None if status == "pending" else created,
            })
            if len(rows) == 5000:
                db.session.execute(insert(Comment), rows)
                rows = []
        if rows:
            db.session.execute(insert(Comment), rows)
        db.session.commit()
        db.session.execute(text("ANALYZE"))
        db.session.commit()


def timed(client, path: str, runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        response = client.get(path)
        times.append(time.perf_counter() - start)
        assert response.status_code == 200, (path, response.status_code)
    return statistics.median(times) * 1000


def run(name: str, url: str, n: int) -> None:
    app = make_app(url)
    start = time.perf_counter()
    seed(app, n)
    print(f"\n{name}: seeded {n} comments in {time.perf_counter() - start:.1f} s")
    client = app.test_client()
    client.post("/dashboard/login", data={"email": "admin@example.org",
                                          "password": "benchmark password"})
    for label, path in PAGES.items():
        print(f"  {label:<28} {timed(client, path):8.1f} ms")
    # Walk 40 pages deep through the published queue by keyset cursor.
    for sort in ("priority", "newest"):
        path = f"/dashboard/queue/published?sort={sort}"
        for _ in range(40):
            page = client.get(path).get_data(as_text=True)
            after = re.search(r'rel="next" href="([^"]+)"', page)
            assert after
            path = after.group(1).replace("&amp;", "&")
        print(f"  {'published ' + sort + ', page 41':<28} {timed(client, path):8.1f} ms")
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comments", type=int, default=100_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run("SQLite (file)", f"sqlite:///{tmp}/bench.db", args.comments)
    schema = f"bench_{secrets.token_hex(4)}"
    engine = create_engine(args.pg)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        run("PostgreSQL", f"{args.pg}?options=-csearch_path%3D{schema}", args.comments)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
