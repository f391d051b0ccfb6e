"""The store's CPU per transaction: statement by statement on the async engine, or as one
piece of work through the store's runner (ivr/store/runner.py), side by side in one run.

    .venv/bin/python -m bench.store_cost [--calls 600] [--rounds 3] [--postgres URL]

On a fresh SQLite file (and a PostgreSQL database when --postgres names an empty one): the
call path's shapes, each `--calls` times: a record read, a record with its events, a write
transaction of 3 statements and one of 30 (ten calls' worth, interleaved). Each shape is
timed both ways in turn, `--rounds` times, by the process's CPU clock (every thread: the
driver's work counts). Prints a table and writes bench/results/store-cost-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ivr.store.calls import _INSERT_EVENT, _SELECT_CALL, _SELECT_EVENTS, _update_statement
from ivr.store.db import Database, sqlite_url
from ivr.store.engine import write_transaction
from ivr.store.tables import calls, to_datetime

RESULTS = Path(__file__).resolve().parent / "results"


def _writes(call_ids: list[str]) -> list[tuple[sa.Executable, dict[str, Any]]]:
    """Per call: a column update, a timeline event and another update (as CallService)."""
    now = to_datetime(time.time())
    first, second = _update_statement(("desk",), False), _update_statement(("operator",), False)
    out: list[tuple[sa.Executable, dict[str, Any]]] = []
    for cid in call_ids:
        out += [(first, {"v_desk": "support", "v_updated_at": now, "call_id_": cid}),
                (_INSERT_EVENT, {"call_id": cid, "at": now, "kind": "bench", "data": "{}"}),
                (second, {"v_operator": "op", "v_updated_at": now, "call_id_": cid})]
    return out


def shapes(db: Database, ids: list[str]) -> dict[str, tuple[Callable[[str], Awaitable[Any]],
                                                             Callable[[str], Awaitable[Any]]]]:
    """name -> (statement by statement on the async engine, through the runner); each takes
    the index of a call."""
    engine = db.engine

    async def read_async(cid: str) -> Any:
        async with engine.connect() as conn:
            return (await conn.execute(_SELECT_CALL, {"call_id_": cid})).first()

    async def read_runner(cid: str) -> Any:
        return await db.runner.read(
            lambda conn: conn.execute(_SELECT_CALL, {"call_id_": cid}).first())

    async def both_async(cid: str) -> Any:
        async with engine.connect() as conn:
            row = (await conn.execute(_SELECT_CALL, {"call_id_": cid})).first()
            return row, list(await conn.execute(_SELECT_EVENTS, {"call_id_": cid}))

    async def both_runner(cid: str) -> Any:
        return await db.runner.read(lambda conn: (
            conn.execute(_SELECT_CALL, {"call_id_": cid}).first(),
            list(conn.execute(_SELECT_EVENTS, {"call_id_": cid}))))

    def write_pair(width: int) -> tuple[Callable[[str], Awaitable[Any]],
                                        Callable[[str], Awaitable[Any]]]:
        def batch(cid: str) -> list[tuple[sa.Executable, dict[str, Any]]]:
            at = ids.index(cid)
            return _writes([ids[(at + k) % len(ids)] for k in range(width)])

        async def by_statement(cid: str) -> None:
            async with write_transaction(engine) as conn:
                for stmt, params in batch(cid):
                    await conn.execute(stmt, params)

        async def by_runner(cid: str) -> None:
            work = batch(cid)

            def run(conn: sa.Connection) -> None:
                for stmt, params in work:
                    conn.execute(stmt, params)
            await db.runner.write(run)

        return by_statement, by_runner

    return {"record read": (read_async, read_runner),
            "record + events read": (both_async, both_runner),
            "write transaction, 3 statements": write_pair(1),
            "write transaction, 30 statements": write_pair(10)}


async def measure(url: str, n: int, rounds: int) -> dict[str, Any]:
    db = await Database(url).open()
    try:
        ids = [f"bench-{i}" for i in range(n)]
        async with write_transaction(db.engine) as conn:
            await conn.execute(sa.insert(calls), [
                {"id": cid, "node": "bench", "direction": "inbound", "source": "controller",
                 "started_at": to_datetime(time.time()), "updated_at": to_datetime(time.time())}
                for cid in ids])
        out: dict[str, Any] = {}
        for name, (by_statement, by_runner) in shapes(db, ids).items():
            times: dict[str, list[float]] = {"statement by statement": [], "runner": []}
            for _ in range(rounds):
                for label, fn in (("statement by statement", by_statement),
                                  ("runner", by_runner)):
                    start = time.process_time()
                    for cid in ids:
                        await fn(cid)
                    times[label].append((time.process_time() - start) / n * 1000)
            medians = {k: round(statistics.median(v), 4) for k, v in times.items()}
            out[name] = {"cpu_ms": medians,
                         "ratio": round(medians["statement by statement"]
                                        / medians["runner"], 2)}
        return out
    finally:
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=600, help="operations per shape and way")
    parser.add_argument("--rounds", type=int, default=3, help="alternations (median kept)")
    parser.add_argument("--postgres", help="an empty PostgreSQL database's URL "
                        "(postgresql+asyncpg://...) to measure beside SQLite")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine": platform.machine(), "python": platform.python_version(),
                              "calls": args.calls, "rounds": args.rounds, "engines": {}}
    with tempfile.TemporaryDirectory() as tmp:
        engines = {"sqlite": sqlite_url(Path(tmp) / "bench.sqlite3")}
        if args.postgres:
            engines["postgresql"] = args.postgres
        for engine, url in engines.items():
            report["engines"][engine] = asyncio.run(measure(url, args.calls, args.rounds))
    print("| engine | shape | CPU ms, statement by statement | CPU ms, runner | ratio |")
    print("|---|---|---|---|---|")
    for engine, found in report["engines"].items():
        for name, row in found.items():
            print(f"| {engine} | {name} | {row['cpu_ms']['statement by statement']} | "
                  f"{row['cpu_ms']['runner']} | {row['ratio']} |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"store-cost-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"written: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
