"""Flag changes per second and `audit --verify` time, on SQLite and PostgreSQL. Prints figures, not pass/fail.

    python -m benchmarks.state [--changes 10000] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/test]

(Run it with -m from the repository root: as a script, this file would shadow the `state` package.)
Each change is one transaction, as from the CLI: lock the chain head, check the version, write the flag and its
audit event, commit. PostgreSQL runs in a throwaway schema, dropped afterwards."""
from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, text

from state import audit
from state.store import Store

FEATURES = [f"feature-{i:02d}" for i in range(20)]
SCOPES = ["mesh", "shop", "cart", "payments", "search"]


def run(url: str, changes: int) -> tuple[float, float, int]:
    """(changes per second, verify seconds, events) for a fresh database at `url`."""
    store = Store.open(url)
    try:
        versions: dict[tuple[str, str], int] = {}
        start = time.perf_counter()
        for i in range(changes):
            key = (FEATURES[i % len(FEATURES)], SCOPES[i // len(FEATURES) % len(SCOPES)])
            flag = store.set_flag("bench", *key, {"weight": i % 100}, "on", "bench", f"change {i}",
                                  versions.get(key, 0))
            versions[key] = flag.version
        rate = changes / (time.perf_counter() - start)
        start = time.perf_counter()
        broken = audit.verify(store)
        verify_seconds = time.perf_counter() - start
        assert broken is None, broken
        return rate, verify_seconds, len(store.audit_events())
    finally:
        store.close()


def run_postgres(base_url: str, changes: int) -> tuple[float, float, int]:
    schema = f"meshstep_bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f"CREATE SCHEMA {schema}"))
    try:
        sep = "&" if "?" in base_url else "?"
        return run(f"{base_url}{sep}options=-csearch_path%3D{schema}", changes)
    finally:
        with admin.connect() as c:
            c.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
                        help="PostgreSQL URL (a schema is created in it and dropped); '' to skip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = {"SQLite (WAL file)": run(f"sqlite:///{Path(tmp) / 'bench.db'}", args.changes)}
    if args.pg:
        results["PostgreSQL"] = run_postgres(args.pg, args.changes)
    print(f"{'backend':<18} {'changes':>8} {'changes/s':>10} {'verify':>9} {'events':>7}")
    for name, (rate, verify_seconds, events) in results.items():
        print(f"{name:<18} {args.changes:>8} {rate:>10.0f} {verify_seconds:>8.2f}s {events:>7}")


if __name__ == "__main__":
    main()
