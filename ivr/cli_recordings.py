"""`ivr recordings ...`: the recordings index from the command line (search, show) and the
evidence commands (verify, export, expire, hold, release: ivr/cli_evidence.py).

Like `ivr calls`, these work on the database (and the recordings folder) directly; the actor
in the audit log is the OS user, the origin `cli`. Search goes through the same service as
the API (ivr/recordings/service_search.py), so a filter means the same at both.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import click

from ivr.cli_protection import _run, _settings, config_option
from ivr.config import Config


@click.group()
def recordings() -> None:
    """Recorded calls: search, verify the hash chain, export evidence, retention."""


def _service(config: Config, db: Any, country: str):
    from ivr.recordings.service_search import RecordingSearch
    from ivr.recordings.store_index import RecordingIndex

    return RecordingSearch(RecordingIndex(db), config.recordings_dir, country=lambda: country)


def _when(ts: float | None) -> str:
    return "-" if ts is None else datetime.fromtimestamp(ts).astimezone().strftime(
        "%Y-%m-%d %H:%M:%S")


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


@recordings.command("search")
@config_option
@click.option("--number", help="The caller's or the dialled number, any form (03-1234-5678).")
@click.option("--desk", help="The desk the call reached.")
@click.option("--operator", help="The operator (extension) who took it.")
@click.option("--from", "since", metavar="WHEN",
              help="Started at or after: 2026-11-25, an ISO time, epoch seconds, or an age "
                   "(7d, 12h, 2w).")
@click.option("--to", "until", metavar="WHEN", help="Started before (a date: through that day).")
@click.option("--outcome", help="completed, abandoned, refused, ...")
@click.option("--flag", help="One flag (one_sided, flagged, ...).")
@click.option("--min-duration", type=float, metavar="SECONDS")
@click.option("--max-duration", type=float, metavar="SECONDS")
@click.option("--shouting/--no-shouting", default=None,
              help="Analysed with (or without) shouting episodes.")
@click.option("--state", help="recording, final, missing or expired.")
@click.option("--kind", help="call, or called (an outbound call's far end).")
@click.option("--page", type=int, default=1, show_default=True)
@click.option("--per-page", type=int, default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document (as the API's).")
def search_cmd(config_path: str, as_json: bool, **options: Any) -> None:
    """Recordings matching every filter given, newest first, a page at a time."""
    from ivr.recordings.search import build_query

    params = {"from" if k == "since" else "to" if k == "until" else k: v
              for k, v in options.items()}

    async def work(config: Config, db: Any):
        settings = await _settings(config, db)
        query = build_query(params)
        service = _service(config, db, settings.numbers.country_code)
        return query, await service.search(query)

    query, page = _run(config_path, work)
    if as_json:
        click.echo(json.dumps(page.as_dict(query), ensure_ascii=False, indent=2))
        return
    if not page.rows:
        click.echo("no recordings match")
        return
    for r in page.rows:
        shout = "-" if r.shouting is None else str(r.shouting)
        click.echo(f"{_when(r.started_at)}  {r.call_id:<24} {r.kind:<6} "
                   f"{r.caller or 'withheld':<14} -> {r.did or '-':<12} {r.desk or '-':<10} "
                   f"{r.operator or '-':<8} {r.outcome or '-':<10} "
                   f"{(f'{r.duration:.0f}s' if r.duration is not None else '-'):>6} "
                   f"{r.state:<8} shout={shout} {' '.join(r.flag_list)}")
    shown_to = (page.page - 1) * page.per_page + len(page.rows)
    more = f"; next: --page {page.next_page}" if page.next_page else ""
    click.echo(f"{shown_to - len(page.rows) + 1}-{shown_to} of {page.total}{more}")


@recordings.command("show")
@config_option
@click.argument("call_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON document (as the API's).")
def show_cmd(config_path: str, call_id: str, as_json: bool) -> None:
    """A call's recordings: the index rows (file, hash, chain, retention, analysis)."""
    from ivr.recordings.service_search import detail

    async def work(config: Config, db: Any):
        return await _service(config, db, "81").for_call(call_id)

    rows = _run(config_path, work)
    if as_json:
        click.echo(json.dumps({"call_id": call_id, "recordings": [detail(r) for r in rows]},
                              ensure_ascii=False, indent=2))
        return
    for r in rows:
        click.echo(f"{r.call_id} {r.kind}: {r.path} ({r.format}, {_size(r.size)}, "
                   f"{r.duration if r.duration is not None else '-'} s) {r.state}")
        click.echo(f"  started {_when(r.started_at)}  caller {r.caller or 'withheld'} -> "
                   f"{r.did or '-'}  desk {r.desk or '-'}  operator {r.operator or '-'}  "
                   f"outcome {r.outcome or '-'}  flags {' '.join(r.flag_list) or '-'}")
        click.echo(f"  sha256 {r.sha256 or '-'}  chain #{r.chain_seq or '-'}  audio caller "
                   f"{_share(r.caller_audio)} other {_share(r.other_audio)}")
        keep = "held: " + (r.hold_reason or "") if r.hold else f"until {_when(r.keep_until)}"
        click.echo(f"  kept {keep}  analysis {r.analysis_state}"
                   f"{f' (shouting {r.shouting})' if r.shouting is not None else ''}")
        if r.deleted_at is not None:
            click.echo(f"  deleted {_when(r.deleted_at)} by {r.deleted_by}: "
                       f"{r.deleted_reason}")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def register(main: click.Group) -> None:
    from ivr.cli_evidence import add_commands as add_evidence

    add_evidence(recordings)
    main.add_command(recordings)
