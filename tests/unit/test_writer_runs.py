"""The writer's batching rule (ivr/store/writer.py `_runs`): which queued writes may share
one executemany. Pure: no database."""

from __future__ import annotations

import sqlalchemy as sa

from ivr.store.writer import _Op, _runs

_T = sa.table("t", sa.column("a"))
EVENT = sa.insert(_T)
UPDATE = sa.update(_T)
PLAIN = sa.insert(_T).values(a=1)  # not prepared: a barrier


def op(stmt, key=None, name=""):
    return _Op(stmt, params=None if stmt is PLAIN else {"name": name}, key=key)


def names(runs):
    return [[o.params["name"] if o.params else "plain" for o in run] for run in runs]


def test_calls_interleaved_gather_into_one_run_per_statement():
    ops = [op(EVENT, "c1", "e1"), op(UPDATE, "c1", "u1"), op(EVENT, "c2", "e2"),
           op(UPDATE, "c2", "u2"), op(EVENT, "c3", "e3")]
    assert names(_runs(ops)) == [["e1", "e2", "e3"], ["u1", "u2"]]


def test_one_calls_writes_keep_their_order():
    # c1's second event may not jump over c1's update: the timeline and the record would
    # then disagree about what came first.
    ops = [op(EVENT, "c1", "e1"), op(UPDATE, "c1", "u1"), op(EVENT, "c1", "e1b"),
           op(EVENT, "c2", "e2")]
    assert names(_runs(ops)) == [["e1"], ["u1"], ["e1b", "e2"]]


def test_a_plain_statement_is_a_barrier():
    # A new call's INSERT: its events must not move before it (the foreign key).
    ops = [op(EVENT, "c1", "e1"), op(PLAIN), op(EVENT, "c2", "e2")]
    assert names(_runs(ops)) == [["e1"], ["plain"], ["e2"]]


def test_writes_without_a_key_only_join_the_run_just_before():
    ops = [op(EVENT, None, "e1"), op(EVENT, None, "e2"), op(UPDATE, "c1", "u1"),
           op(EVENT, None, "e3"), op(UPDATE, "c2", "u2")]
    # e3 may touch anything: it stays after u1, and c2's u2 may not pass it either.
    assert names(_runs(ops)) == [["e1", "e2"], ["u1"], ["e3"], ["u2"]]
