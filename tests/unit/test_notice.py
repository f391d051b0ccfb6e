"""The recording notice can never be skipped: start-up check, controller fallback, dialplan,
CDR import."""

import asyncio
from pathlib import Path

import jinja2
import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from ivr.agi import variables as var
from ivr.agi.context import HandlerContext, Prompts
from ivr.agi.server import AgiServer
from ivr.audio.prompts import load_prompt_texts
from ivr.audio.wav import write_wav
from ivr.cdr_import import import_missed_calls, parse_cdr_file
from ivr.journey import JourneyError, load_journey
from ivr.model import Outcome
from ivr.notice import (
    check_notice_files,
    failsafe_notice_languages,
    journey_languages,
    notice_prompts,
)
from ivr.service import CallService
from ivr.store import CallStore, Database
from tests.unit.fake_asterisk import FakeAsterisk

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "dialplan" / "contact-centre.yaml"
OPERATORS = ["op1001", "op1002", "op1003", "sv2001"]
PROMPTS = load_prompt_texts(PROJECT / "prompts" / "prompts.yaml")


def example(tmp_path: Path | None = None):
    """The example journey; with a folder, open around the clock (no dependence on now)."""
    if tmp_path is None:
        return load_journey([EXAMPLE], operators=OPERATORS, prompts=PROMPTS)
    data = yaml.safe_load(EXAMPLE.read_text())
    data["schedules"]["office"]["weekly"] = {"weekdays": "24h", "sat": "24h", "sun": "24h"}
    data["schedules"]["office"]["holidays"] = []
    path = tmp_path / "open.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return load_journey([path], operators=OPERATORS, prompts=PROMPTS)


def tone(path: Path, seconds: float = 0.5) -> None:
    t = np.arange(int(8000 * seconds)) / 8000
    write_wav(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000)


def all_notices(folder: Path) -> None:
    for lang in ("ja", "en"):
        (folder / lang).mkdir(parents=True, exist_ok=True)
        tone(folder / lang / "notice.wav")
    (folder / "fallback").mkdir(parents=True, exist_ok=True)
    tone(folder / "fallback" / "notice.wav")


# ---- start-up check ----

def test_example_journey_notice_prompts_and_languages():
    journey = example()
    assert notice_prompts(journey, "notice") == {"notice"}
    assert journey_languages(journey, "ja") == {"ja", "en"}
    assert journey.entries["main"].notice_langs == ["ja", "en"]
    assert journey.entries["other"].notice_langs == ["ja"]
    assert failsafe_notice_languages(journey, "ja") == ["ja", "en"]


def test_every_notice_present_passes(tmp_path):
    all_notices(tmp_path)
    assert check_notice_files(example(), tmp_path, "notice", "ja") == []


def test_missing_english_notice_is_named_with_language_and_path(tmp_path):
    all_notices(tmp_path)
    (tmp_path / "en" / "notice.wav").unlink()
    (problem,) = check_notice_files(example(), tmp_path, "notice", "ja")
    assert "'notice'" in problem and "[en]" in problem
    assert str(tmp_path / "en" / "notice.wav") in problem
    assert "no such file" in problem


def test_unusable_notice_and_missing_fallback(tmp_path):
    all_notices(tmp_path)
    (tmp_path / "ja" / "notice.wav").write_bytes(b"not a wav at all")
    (tmp_path / "fallback" / "notice.wav").unlink()
    problems = check_notice_files(example(), tmp_path, "notice", "ja")
    assert len(problems) == 2, problems
    assert "[ja]" in problems[0] and str(tmp_path / "ja" / "notice.wav") in problems[0]
    assert "fallback" in problems[1] and str(tmp_path / "fallback" / "notice.wav") in problems[1]


def test_language_offered_only_by_a_route_is_checked(tmp_path):
    """A journey whose entries are all Japanese but whose menu switches to English."""
    path = tmp_path / "j.yaml"
    path.write_text("""
desks:
  support: {members: [op1001], notice: sorry_busy}
menus:
  main:
    prompt: main_menu
    choices: {"1": {desk: support, language: en}}
    default: {desk: support}
entries:
  main: {numbers: [default], start: {menu: main}}
""")
    journey = load_journey([path], operators=OPERATORS, prompts=PROMPTS)
    folder = tmp_path / "prompts"
    all_notices(folder)
    (folder / "ja" / "sorry_busy.wav").write_bytes((folder / "ja" / "notice.wav").read_bytes())
    (problem,) = check_notice_files(journey, folder, "notice", "ja")
    assert "'sorry_busy' [en]" in problem


def test_notice_languages_validation(tmp_path):
    path = tmp_path / "j.yaml"
    path.write_text("""
desks: {support: {members: [op1001]}}
entries:
  main: {numbers: [default], notice_languages: [ja, ja], start: {desk: support}}
""")
    with pytest.raises(JourneyError) as info:
        load_journey([path], operators=OPERATORS, prompts=PROMPTS)
    assert "listed twice" in str(info.value)


def test_ivr_check_refuses_a_missing_notice(tmp_path):
    from ivr.cli import main

    config = tmp_path / "ivr.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                      f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                      f'[journey]\ndir = "{PROJECT / "dialplan"}"\n'
                      '[desk]\ndefault = "support"\n'
                      + "".join(f'[[operators]]\nendpoint = "{op}"\n' for op in OPERATORS))
    prompts = tmp_path / "var" / "prompts"
    all_notices(prompts)
    runner = CliRunner()
    ok = runner.invoke(main, ["check", "-c", str(config)])
    assert ok.exit_code == 0, ok.output
    (prompts / "en" / "notice.wav").unlink()
    bad = runner.invoke(main, ["check", "-c", str(config)])
    assert bad.exit_code == 2
    assert "'notice' [en]" in bad.output and str(prompts / "en" / "notice.wav") in bad.output


# ---- the dialplan ----

def test_failsafe_dialplan_checks_playback_status_and_never_queues_without_notice():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PROJECT / "asterisk"),
                             undefined=jinja2.StrictUndefined)
    from ivr.asterisk.render import template_context
    from ivr.config import load_config
    from ivr.credentials import Secrets

    config = load_config(PROJECT / "ivr.example.toml")
    secrets = Secrets(ami_secret="x", operator_passwords={o.endpoint: "p"
                                                          for o in config.operators})
    text = env.get_template("extensions.conf.j2").render(
        template_context(config, secrets, example()))
    contexts = {}
    for block in text.split("\n[")[1:]:
        name, _, body = block.partition("]")
        contexts[name] = "\n".join(x for x in body.splitlines()
                                   if not x.strip().startswith(";"))
    failsafe = contexts["ivr-failsafe"]
    assert "Gosub" in failsafe and "ivr-notice,s,1" in failsafe
    assert "Playback(" not in failsafe  # the notice plays in [ivr-notice], checked
    notice = contexts["ivr-notice"]
    assert notice.count("PLAYBACKSTATUS") >= 2
    assert "IVR_FALLBACK_NOTICE" in notice and "ivr-notice-failed" in notice
    assert "Queue(" not in notice and "Queue(" not in contexts["ivr-notice-failed"]
    assert "UserEvent(IvrNoticeFailed" in contexts["ivr-notice-failed"]
    assert "Hangup(" in contexts["ivr-notice-failed"]
    assert "IVR_NOTICE_LANGS = ja&en" in text
    # A failed STREAM FILE leaves AGISTATUS=FAILURE even though the controller went on and
    # answered (fallback notice played, desk chosen): its IVR_ACTION decides, not AGISTATUS.
    for name in ("ivr-inbound", "ivr-queue"):
        assert "AGISTATUS" not in contexts[name], name
    assert f"IVR_FALLBACK_NOTICE = {config.prompts_dir / 'fallback' / 'notice'}\n" in text


# ---- the controller ----

@pytest.fixture
async def service(tmp_path):
    db = await Database(tmp_path / "t.sqlite3").open()
    yield CallService(CallStore(db), node="test")
    await db.close()


@pytest.fixture
async def server(service, tmp_path):
    journey = example(tmp_path)
    ctx = HandlerContext(calls=service, prompts=Prompts(tmp_path / "prompts", "ja"),
                         notice="notice", default_desk="support", journey=lambda: journey)
    srv = AgiServer(ctx, host="127.0.0.1", port=0, header_timeout=0.5, command_timeout=2)
    await srv.start()
    yield srv
    await srv.stop()


def answering(missing: set[str]):
    """Asterisk's answers, measured on Asterisk 22: a file it cannot open gives
    `200 result=-1 endpos=0` on a live channel."""
    def answer(fake: FakeAsterisk, command: str):
        if command.startswith("STREAM FILE"):
            path = command.split('"')[1]
            return "200 result=-1 endpos=0" if path in missing else "200 result=0 endpos=40000"
        if command.startswith("CHANNEL STATUS"):
            return "200 result=6"
        return FakeAsterisk.default_answer(fake, command)
    return answer


def run_inbound(server, missing: set[str], did: str = "0399000000") -> FakeAsterisk:
    fake = FakeAsterisk(server.port, "inbound", variables={var.DID: did})
    fake.answer = lambda command: answering(missing)(fake, command)
    return fake


def streams(fake: FakeAsterisk) -> list[str]:
    return [c.split('"')[1] for c in fake.commands if c.startswith("STREAM FILE")]


async def test_bilingual_entry_plays_notice_in_both_languages(server):
    prompts = server.ctx.prompts
    fake = run_inbound(server, set(), did="0501234567")
    # The language menu waits for a key; the fake answers WAIT FOR DIGIT with 0 (none).
    await asyncio.wait_for(fake.run(), 5)
    played = streams(fake)
    assert played[:3] == [prompts.path("welcome", "ja"), prompts.path("notice", "ja"),
                          prompts.path("notice", "en")]
    assert played[3] == prompts.path("language_select", "ja")
    assert fake.variables[var.NOTICE_LANGS] == "ja&en"


async def test_missing_notice_plays_fallback_then_queues(server, service):
    prompts = server.ctx.prompts
    fake = run_inbound(server, {prompts.path("notice", "ja")})
    await asyncio.wait_for(fake.run(), 5)
    assert streams(fake) == [prompts.path("welcome"), prompts.path("notice"),
                             prompts.fallback_notice]
    assert fake.variables[var.NOTICE_DONE] == "1"
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE
    events = await service.events(fake.uniqueid)
    kinds = [e["kind"] for e in events]
    assert kinds.index("notice_failed") < kinds.index("notice_fallback") < kinds.index(
        "notice_finished") < kinds.index("routed")
    failed = next(e for e in events if e["kind"] == "notice_failed")
    assert failed["data"] == {"prompt": "ja/notice", "path": prompts.path("notice"),
                              "problem": "200 result=-1 endpos=0"}
    record = await service.get(fake.uniqueid)
    assert record.notice_ended_at is not None


async def test_notice_and_fallback_missing_ends_the_call_without_queue(server, service):
    prompts = server.ctx.prompts
    fake = run_inbound(server, {prompts.path("notice"), prompts.fallback_notice})
    await asyncio.wait_for(fake.run(), 5)
    assert var.QUEUE not in fake.variables
    assert var.NOTICE_DONE not in fake.variables
    assert fake.variables[var.ACTION] == var.ACTION_NOTICE_FAILED
    assert "fallback/notice" in fake.variables[var.NOTICE_PROBLEM]
    assert server.failures_total == 0
    events = await service.events(fake.uniqueid)
    assert [e["data"]["prompt"] for e in events if e["kind"] == "notice_failed"] == [
        "ja/notice", "fallback/notice"]
    record = await service.get(fake.uniqueid)
    assert record.notice_ended_at is None and record.disposition == "notice_failed"
    ended = await service.hung_up(fake.uniqueid, 41, "Temporary failure")
    assert ended.outcome == Outcome.FAILED


async def test_empty_playback_counts_as_failure(server, service):
    prompts = server.ctx.prompts
    fake = FakeAsterisk(server.port, "inbound", variables={var.DID: "0399000000"})

    def answer(command: str):
        if command.startswith("STREAM FILE") and prompts.path("notice") in command:
            return "200 result=0 endpos=0"
        return FakeAsterisk.default_answer(fake, command)

    fake.answer = answer
    await asyncio.wait_for(fake.run(), 5)
    assert streams(fake)[-1] == prompts.fallback_notice
    assert fake.variables[var.ACTION] == var.ACTION_QUEUE


async def test_desk_notice_on_overflow_falls_back(server, service):
    prompts = server.ctx.prompts
    journey = server.ctx.journey()
    # sales overflows to support; give support its own notice for this test.
    desks = dict(journey.desks)
    desks["support"] = desks["support"].model_copy(update={"notice": "please_wait"})
    patched = type(journey)(**{**journey.__dict__, "desks": desks})
    server.ctx = HandlerContext(calls=service, prompts=prompts, notice="notice",
                                default_desk="support", journey=lambda: patched)
    fake = FakeAsterisk(server.port, "queue_result",
                        variables={var.CALL_ID: "c-1", var.QUEUE: "sales",
                                   "QUEUESTATUS": "TIMEOUT"})
    missing = {prompts.path("please_wait"), prompts.fallback_notice}
    fake.answer = lambda command: answering(missing)(fake, command)
    await service.call_started("c-1", caller=None, did=None, recording_path=None,
                               source=__import__("ivr.model").model.Source.CONTROLLER)
    await asyncio.wait_for(fake.run(), 5)
    assert fake.variables[var.ACTION] == var.ACTION_NOTICE_FAILED
    assert fake.variables.get(var.QUEUE) == "sales"  # not moved on to support
    kinds = [e["kind"] for e in await service.events("c-1")]
    assert kinds.count("notice_failed") == 2 and "routed" not in kinds


# ---- CDR import ----

async def test_cdr_import_reads_notice_failure_and_old_rows(service, tmp_path):
    path = tmp_path / "ivr-cdr.csv"
    old = ('"a.1","a.1","0311","s","ivr-failsafe","PJSIP/trunk-1","","Hangup",'
           '"1700000000","1700000000","1700000010","ANSWERED","0399","/r/a.1.wav","","failsafe"')
    new = ('"b.1","b.1","0312","s","ivr-notice-failed","PJSIP/trunk-2","","Hangup",'
           '"1700000100","1700000100","1700000110","ANSWERED","0399","/r/b.1.wav","",'
           '"failsafe","failed: ja/notice: Playback FAILED + fallback/notice: Playback FAILED"')
    path.write_text(old + "\n" + new + "\n")
    calls = {c.call_id: c for c in parse_cdr_file(path)}
    assert calls["a.1"].outcome == Outcome.ABANDONED_IN_MENU and calls["a.1"].notice == ""
    assert calls["b.1"].outcome == Outcome.FAILED
    await import_missed_calls(path, service, node="ivr1")
    record = await service.get("b.1")
    assert record.outcome == "failed" and record.failsafe
    failed = [e for e in await service.events("b.1") if e["kind"] == "notice_failed"]
    assert "fallback/notice: Playback FAILED" in failed[0]["data"]["problem"]


# Dialplan functions and the module that provides each (Asterisk 22).
FUNCTION_MODULES = {"CALLERID": "func_callerid", "CDR": "func_cdr", "CSV_QUOTE": "func_strings",
                    "CUT": "func_cut", "IF": "func_logic", "STRFTIME": "func_strings",
                    "CHANNEL": "func_channel", "LOCAL": "app_stack", "FILTER": "func_strings",
                    "URIENCODE": "func_uri", "SHARED": "func_global", "LEN": "func_strings",
                    "PJSIP_HEADER": "res_pjsip_header_funcs"}


def test_every_dialplan_function_is_loaded():
    """A function whose module is not loaded expands to nothing: the fail-safe once played no
    notice at all because CUT() was missing."""
    import re

    modules = (PROJECT / "asterisk" / "modules.conf.j2").read_text()
    used = set()
    for path in (PROJECT / "asterisk").glob("*.conf.j2"):
        used |= set(re.findall(r"\$\{([A-Z_]+)\(", path.read_text()))
        used |= set(re.findall(r"[(,]([A-Z_]+)\(", path.read_text())) & set(FUNCTION_MODULES)
    assert used, "no dialplan functions found"
    unknown = used - set(FUNCTION_MODULES)
    assert not unknown, f"add the module of {unknown} to FUNCTION_MODULES"
    for name in sorted(used):
        assert f"load => {FUNCTION_MODULES[name]}.so" in modules, name


def test_ivr_setup_and_run_refuse_an_unusable_notice(tmp_path, monkeypatch):
    """`ivr run` and `ivr setup` share prepare(): a cached notice that is not audio (rendering
    keeps it, its text did not change) stops start-up with prompt, language and path."""
    from ivr.cli import main

    config = tmp_path / "ivr.toml"
    config.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                      f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n'
                      f'[journey]\ndir = "{PROJECT / "dialplan"}"\n'
                      '[desk]\ndefault = "support"\n'
                      + "".join(f'[[operators]]\nendpoint = "{op}"\n' for op in OPERATORS))
    prompts = tmp_path / "var" / "prompts"
    all_notices(prompts)
    (prompts / "en" / "notice.wav").write_bytes(b"RIFF....garbage")
    monkeypatch.setattr("ivr.setup.render_all_prompts", lambda config: 0)
    for command in ("setup", "run"):
        result = CliRunner().invoke(main, [command, "-c", str(config)])
        assert result.exit_code == 2, result.output
        assert "'notice' [en]" in result.output
        assert str(prompts / "en" / "notice.wav") in result.output


async def test_tracker_records_dialplan_notice_failure_once(service):
    from ivr.ami.events import NoticeFailed, NoticeFallback, parse_event
    from ivr.ami.tracker import CallTracker
    from ivr.model import Source

    assert parse_event({"Event": "UserEvent", "UserEvent": "IvrNoticeFailed", "CallId": "x",
                        "Uniqueid": "x", "Source": "dialplan", "Problem": "p"}) == \
        NoticeFailed("x", "dialplan", "p")
    await service.call_started("x", caller=None, did=None, recording_path=None,
                               source=Source.AMI)
    tracker = CallTracker(service)
    await tracker.handle(NoticeFallback("x", "ja/notice", "ja/notice: Playback FAILED"))
    await tracker.handle(NoticeFailed("x", "controller", "already recorded"))
    await tracker.handle(NoticeFailed("x", "dialplan", "fallback/notice: Playback FAILED"))
    kinds = [e["kind"] for e in await service.events("x")]
    assert kinds.count("notice_failed") == 2 and "notice_fallback" in kinds
    ended = await service.hung_up("x", 41, "Temporary failure")
    assert ended.outcome == Outcome.FAILED
