"""WAL written per saga on a PostgreSQL store, by relation.

Runs ``--n`` sagas of ``scale_sagas.py``'s 3-step saga, ``--concurrency`` in
flight, on the store at ``--db`` (a database ``scale.py sagas --store
postgres --keep`` left: ``scale_full`` with its million sagas, or
``scale_empty``), then reads the WAL they wrote with ``pg_walinspect``
(``pg_get_wal_records_info`` between the LSNs before and after; the extension
is created if missing, which needs a role that may) and prints, per relation
(block references mapped to ``pg_class.relfilenode``), the bytes of WAL
records and of full-page images per saga, and full-page images per saga.

``--checkpoint`` (the default) runs ``CHECKPOINT`` first: the first change
of each page after a checkpoint writes the whole page to the WAL, so this is
the figure of the checkpoint's first minutes, where random pages cost most.
Numbers are printed (and written with ``--json``), never asserted.

    python benchmarks/wal_by_relation.py --db postgresql://127.0.0.1/scale_full
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from scale_sagas import RUN

from sagakit import Orchestrator
from sagakit.adapters.store.postgres import PostgresStore

BLOCK = re.compile(r"rel \d+/\d+/(\d+) fork \w+ blk \d+( \(FPW\))?")


async def measure(
    db: str, n: int, concurrency: int, checkpoint: bool
) -> dict[str, Any]:
    import asyncpg  # noqa: PLC0415 - this benchmark's own connection

    conn = await asyncpg.connect(db)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_walinspect")
        store = await PostgresStore.connect(db, max_size=20)
        orch = Orchestrator(store, [RUN])
        try:
            await asyncio.gather(*(orch.run(RUN) for _ in range(concurrency)))  # warm
            if checkpoint:
                await conn.execute("CHECKPOINT")
            start = await conn.fetchval("SELECT pg_current_wal_insert_lsn()")
            for first in range(0, n, concurrency):
                batch = min(concurrency, n - first)
                await asyncio.gather(*(orch.run(RUN) for _ in range(batch)))
            # flushed, not inserted: pg_walinspect refuses an end past the
            # flushed WAL ("cannot accept future end LSN"), which another
            # session's unflushed records can put the insert position at; our
            # own commits are flushed before they return
            end = await conn.fetchval("SELECT pg_current_wal_flush_lsn()")
        finally:
            await orch.close()
        names = {
            str(r["relfilenode"]): r["relname"]
            for r in await conn.fetch(
                "SELECT relfilenode, relname FROM pg_class WHERE relfilenode <> 0"
            )
        }
        records = await conn.fetch(
            "SELECT resource_manager, record_length, fpi_length, block_ref"
            " FROM pg_get_wal_records_info($1, $2)",
            start,
            end,
        )
        total = await conn.fetchval("SELECT $2::pg_lsn - $1::pg_lsn", start, end)
    finally:
        await conn.close()
    written, images, pages = Counter[str](), Counter[str](), Counter[str]()
    for r in records:
        blocks = BLOCK.findall(r["block_ref"] or "")
        name = (
            names.get(blocks[0][0], blocks[0][0]) if blocks else r["resource_manager"]
        )
        written[name] += r["record_length"]
        images[name] += r["fpi_length"]
        pages[name] += sum(1 for _, fpw in blocks if fpw)
    return {
        "db": db.rsplit("/", 1)[-1],
        "sagas": n,
        "wal_bytes_per_saga": float(total) / n,
        "relations": [
            {
                "relation": name,
                "bytes_per_saga": written[name] / n,
                "image_bytes_per_saga": images[name] / n,
                "images_per_saga": pages[name] / n,
            }
            for name, _ in written.most_common()
        ],
    }


def report(found: dict[str, Any]) -> None:
    images = sum(r["image_bytes_per_saga"] for r in found["relations"])
    print(
        f"{found['db']}: {found['sagas']} sagas, WAL "
        f"{found['wal_bytes_per_saga'] / 1024:.1f} KB a saga "
        f"(full-page images {images / 1024:.1f} KB); load {os.getloadavg()[0]:.2f}"
    )
    print(f"  {'relation':40s} {'B/saga':>9s} {'images B':>9s} {'images':>7s}")
    for r in found["relations"][:14]:
        print(
            f"  {r['relation']:40s} {r['bytes_per_saga']:9.0f}"
            f" {r['image_bytes_per_saga']:9.0f} {r['images_per_saga']:7.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="a migrated PostgreSQL store")
    parser.add_argument("--n", type=int, default=3000, help="sagas (3000)")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--no-checkpoint", dest="checkpoint", action="store_false",
        help="do not run CHECKPOINT first",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    found = asyncio.run(measure(args.db, args.n, args.concurrency, args.checkpoint))
    report(found)
    if args.json:
        args.json.write_text(json.dumps(found, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
