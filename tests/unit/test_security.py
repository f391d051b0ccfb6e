"""Security defaults that need no Asterisk: hostile text in AMI events, admin text that would
reach Asterisk's configuration, what the rendered files grant."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import stat
import tempfile
from pathlib import Path

import pytest
import yaml
from panoramisk.message import Message

from ivr.agi.protocol import AgiProtocolError, parse_headers
from ivr.ami.events import CallStart, QueueResult, parse_event
from ivr.asterisk.account import asterisk_account
from ivr.asterisk.render import RenderError, render_asterisk_config
from ivr.config import ConfigError, load_config
from ivr.credentials import Secrets
from ivr.journey import JourneyError, load_journey

PROJECT = Path(__file__).resolve().parents[2]
PROMPTS = PROJECT / "prompts" / "prompts.yaml"
JOURNEY = PROJECT / "dialplan"

# What Asterisk 22 sends for UserEvent(IvrCallStart,...): the channel's snapshot (its own
# fields), then the event's fields.
SNAPSHOT = (
    "Event: UserEvent\r\nPrivilege: user,all\r\nChannel: PJSIP/trunk-00000001\r\n"
    "ChannelState: 6\r\nChannelStateDesc: Up\r\nCallerIDNum: {caller}\r\n"
    "CallerIDName: x\r\nConnectedLineNum: <unknown>\r\nConnectedLineName: <unknown>\r\n"
    "Language: ja\r\nAccountCode: \r\nContext: ivr-inbound\r\nExten: s\r\nPriority: 5\r\n"
    "Uniqueid: ivr1-1764000000.7\r\nLinkedid: ivr1-1764000000.7\r\n"
)


def ami(text: str) -> Message:
    message = Message.from_line(text)
    assert message is not None
    return message


def call_start(caller: str, body: str) -> CallStart:
    event = parse_event(ami(SNAPSHOT.format(caller=caller) + "UserEvent: IvrCallStart\r\n"
                            + body))
    assert isinstance(event, CallStart), event
    return event


def test_call_start_takes_call_id_and_caller_from_asterisk_and_decodes_did():
    event = call_start("0312345678", "CallId: ivr1-1764000000.7\r\nRecording: /r/x\r\n"
                       "Did: %2B81399000000%2CCallId%3Aforged\r\n")
    assert event == CallStart("ivr1-1764000000.7", "0312345678", "+81399000000,CallId:forged",
                              "/r/x")


def test_forged_call_id_field_is_not_trusted():
    # The old dialplan let "x,CallId: forged" add a field; whatever the field says, the call
    # is the channel's.
    event = call_start("0312345678", "CallId: forged\r\nDid: 0399000000\r\n")
    assert event.call_id == "ivr1-1764000000.7"


def test_injected_header_line_is_refused_not_merged():
    # A caller number carrying CR LF would add a second Uniqueid line: trust neither.
    text = SNAPSHOT.format(caller="03\r\nUniqueid: forged") + "UserEvent: IvrCallStart\r\n"
    assert parse_event(ami(text)) is None
    event = parse_event(ami(SNAPSHOT.format(caller="03") + "UserEvent: IvrQueueResult\r\n"
                            "Queue: support\r\nStatus: TIMEOUT\r\nStatus: JOINEMPTY\r\n"))
    assert event == QueueResult("ivr1-1764000000.7", "support", "")


def test_dialplan_never_puts_caller_text_raw_into_userevent():
    text = (PROJECT / "asterisk" / "extensions.conf.j2").read_text()
    for line in text.splitlines():
        if "UserEvent(" not in line:
            continue
        assert "CALLERID" not in line, line
        raw = re.findall(r"\$\{(IVR_DID|EXTEN)\}", line.replace("URIENCODE(${IVR_DID})", ""))
        assert not raw, line


# ---- admin text into Asterisk's files ----

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ivr.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path / "var"}"\n'
                    f'[prompts]\ntexts = "{PROMPTS}"\n[journey]\ndir = "{JOURNEY}"\n' + text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_operator_name_that_would_add_a_section_is_refused(tmp_path):
    path = write(tmp_path, '[[operators]]\nendpoint = "op1001"\n'
                           'name = "x\\"\\n[evil]\\ntype=endpoint"\n')
    (problem,) = problems(path)
    assert "operators.0.name" in problem and "not allowed" in problem, problem


@pytest.mark.parametrize("name", ['a"b', "a;b", "a\\b", "<a>", "a]b", "a\tb"])
def test_operator_name_characters_refused(tmp_path, name):
    escaped = name.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t")
    path = write(tmp_path, f'[[operators]]\nendpoint = "op1001"\nname = "{escaped}"\n')
    assert any("operators.0.name" in p for p in problems(path))


def test_japanese_operator_name_is_fine(tmp_path):
    config = load_config(write(tmp_path, '[[operators]]\nendpoint = "op1001"\n'
                                         'name = "山田 花子 (営業)"\n'))
    assert config.operators[0].name == "山田 花子 (営業)"


@pytest.mark.parametrize("endpoint", ["trunk", "anonymous", "1001", "x-auth"])
def test_operator_endpoint_cannot_take_a_reserved_or_numeric_name(tmp_path, endpoint):
    path = write(tmp_path, f'[[operators]]\nendpoint = "{endpoint}"\n')
    assert any("operators.0.endpoint" in p for p in problems(path))


def test_prompt_names_in_config_are_names(tmp_path):
    path = write(tmp_path, "")
    path.write_text(path.read_text().replace("[prompts]\n",
                                             '[prompts]\nnotice = "notice\\n[evil]"\n'))
    assert any("prompts.notice" in p for p in problems(path))


def test_data_dir_that_would_split_dialplan_arguments_is_refused(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(f'[server]\ndata_dir = "{tmp_path}/v,ar"\n'
                    f'[prompts]\ntexts = "{PROMPTS}"\n[journey]\ndir = "{JOURNEY}"\n')
    (problem,) = problems(path)
    assert "server.data_dir" in problem and problem.startswith("line 2:"), problem


@pytest.mark.parametrize("field, value", [
    ("music", "default\n[evil]"),
    ("music", "a b"),
    ("periodic_announce", "please_wait\nperiodic-announce=x"),
    ("notice", "../../etc/x"),
])
def test_desk_fields_that_reach_queues_conf_are_names(tmp_path, field, value):
    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump({
        "desks": {"support": {"members": ["op1001"], field: value}},
        "entries": {"main": {"numbers": ["default"], "start": {"desk": "support"}}},
    }))
    with pytest.raises(JourneyError) as info:
        load_journey([path], operators=["op1001"])
    assert any(f"desks.support.{field}" in p for p in info.value.problems), info.value.problems


def rendered(tmp_path: Path, operators: str = "") -> Path:
    config = load_config(write(tmp_path, operators))
    secrets = Secrets("s3cret", {o.endpoint: "pw" for o in config.operators})
    return render_asterisk_config(config, secrets).etc


def test_render_refuses_a_line_break_whatever_slipped_through(tmp_path):
    config = load_config(write(tmp_path, ""))
    etc = render_asterisk_config(config, Secrets("s3cret")).etc
    with pytest.raises(RenderError):
        render_asterisk_config(config, Secrets("n3w\n[evil]"))
    # Nothing written: the files in service stay whole.
    assert "secret = s3cret\n" in (etc / "manager.conf").read_text()
    assert "evil" not in "".join(p.read_text() for p in etc.glob("*.conf"))


def test_rendered_files_grant_only_what_is_needed(tmp_path):
    etc = rendered(tmp_path, '[[operators]]\nendpoint = "op1001"\nname = "Op"\n')
    pjsip = (etc / "pjsip.conf").read_text()
    trunk = pjsip.split("[trunk]")[1]
    assert re.search(r"^identify_by = ip$", trunk, re.M)
    operator = pjsip.split("[op1001]")[1]
    assert re.search(r"^identify_by = username$", operator, re.M)
    assert re.search(r"^auth = op1001-auth$", operator, re.M)
    assert "anonymous" not in re.sub(r";.*", "", pjsip)
    modules = (etc / "modules.conf").read_text()
    assert "endpoint_identifier_anonymous" not in modules
    manager = (etc / "manager.conf").read_text()
    assert re.search(r"^read = call,agent,user$", manager, re.M)
    assert re.search(r"^write = agent,reporting,call,originate,user$", manager, re.M)
    # Only the events the controller follows are sent to it.
    followed = set(re.findall(r"^eventfilter\(action\(include\),name\((\w+)\)\) =$",
                              manager, re.M))
    assert followed == {"UserEvent", "Hangup", "QueueCallerJoin", "AgentCalled",
                        "AgentConnect", "AgentComplete", "QueueCallerAbandon"}
    assert re.search(r"^eventfilter\(action\(exclude\),name\(Hangup\),method\(contains\)\) = "
                     r"Context: from-trunk$", manager, re.M)
    for conf in etc.glob("*.conf"):
        assert stat.S_IMODE(conf.stat().st_mode) & 0o007 == 0, conf
    assert stat.S_IMODE(etc.stat().st_mode) & 0o007 == 0


def test_asterisk_is_told_to_drop_root(tmp_path):
    etc = rendered(tmp_path)
    conf = (etc / "asterisk.conf").read_text()
    assert re.search(r"^runuser = asterisk$", conf, re.M), conf
    assert not re.search(r"^run(user|group) = root$", conf, re.M)


# ---- FastAGI headers carry caller text too ----

def test_agi_header_given_twice_is_refused():
    raw = (b"agi_request: agi://127.0.0.1/inbound\nagi_uniqueid: ivr1-1.7\n"
           b"agi_callerid: 03\nagi_uniqueid: forged\n\n")
    with pytest.raises(AgiProtocolError):
        parse_headers(raw)


def test_agi_headers_split_on_line_feed_only():
    name = "x\x85agi_uniqueid: forged\x0bagi_dnid: 1\x1c".encode()
    raw = b"agi_uniqueid: ivr1-1.7\nagi_calleridname: " + name + b"\nagi_callerid: 03\n\n"
    headers = parse_headers(raw)
    assert headers["agi_uniqueid"] == "ivr1-1.7"
    assert "agi_dnid" not in headers


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_reload_by_the_controllers_own_user_keeps_files_private(tmp_path):
    """Under systemd `ivr setup` runs as root and the controller (which renders again on
    reload) as its own user, the owner of the data folder."""
    base = Path(tempfile.mkdtemp(dir="/tmp", prefix="ivr-sec-"))
    try:
        base.chmod(0o755)
        config = load_config(write(base, ""))
        config.data_dir.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(config.data_dir, nobody.pw_uid, nobody.pw_gid)
        secrets = Secrets("s3cret")
        etc = render_asterisk_config(config, secrets).etc  # as root: `ivr setup`
        account = asterisk_account(config)
        assert account is not None
        assert (etc / "manager.conf").stat().st_uid == nobody.pw_uid
        groups = os.getgroups()
        os.setgroups([account.gid])  # SupplementaryGroups=asterisk in ivr.service
        os.setegid(nobody.pw_gid)
        os.seteuid(nobody.pw_uid)
        try:
            render_asterisk_config(config, Secrets("n3w"))  # as the controller: a reload
        finally:
            os.seteuid(0)
            os.setegid(0)
            os.setgroups(groups)
        manager = etc / "manager.conf"
        assert "n3w" in manager.read_text()
        assert stat.S_IMODE(manager.stat().st_mode) == 0o640
        assert manager.stat().st_gid == account.gid  # from the folder's setgid bit
        assert (config.asterisk_dir / "run").stat().st_uid == account.uid
    finally:
        shutil.rmtree(base)


def test_one_recorder_unless_the_wall_clock_one_is_asked_for(tmp_path):
    """[ivr-record] starts MixMonitor's interleaved stereo; the ChanSpy recorder only runs
    with [recording] timeline = true (a global the dialplan tests)."""
    etc = rendered(tmp_path, "")
    text = (etc / "extensions.conf").read_text()
    record = text.split("\n[ivr-record]\n")[1].split("\n[")[0]
    assert "MixMonitor(${IVR_RECORDING}-stereo.raw,D)" in record
    assert "GotoIf($[0${IVR_REC_WALLCLOCK}]?:done)" in record
    assert re.search(r"^IVR_REC_WALLCLOCK = 0$", text, re.M)
    (tmp_path / "t").mkdir()
    with_timeline = rendered(tmp_path / "t", "[recording]\ntimeline = true\n")
    assert re.search(r"^IVR_REC_WALLCLOCK = 1$",
                     (with_timeline / "extensions.conf").read_text(), re.M)
    # The recorder's sink waits without a silence generator.
    body = text.split("\n[ivr-recorder-sink]\n")[1].split("\n[")[0]
    lines = [x for x in body.splitlines() if not x.strip().startswith(";")]
    assert not any("Wait(" in x for x in lines)


def test_every_context_a_caller_runs_in_before_an_operator_answers_has_the_cap(tmp_path):
    """The IVR-time cap is the caller's TIMEOUT(absolute): when it passes, Asterisk goes on at
    the `T` extension of the context the caller is in, and hangs up if there is none. Every
    context reachable from the answer by Goto/Gosub (the member side and the hang-up handler
    are not: Queue() and CHANNEL() name those) must lead to [ivr-cap-reached]."""
    text = (rendered(tmp_path) / "extensions.conf").read_text()
    contexts = dict(re.findall(r"^\[([\w-]+)\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S))
    assert "Set(TIMEOUT(absolute)=${IVR_MAX_IVR_TIME})" in contexts["ivr-inbound"]
    assert ("Set(EXPORT(${IVR_CALLER_CHANNEL},TIMEOUT(absolute))=0)"
            in contexts["ivr-member-connected"])
    reached, todo = set(), ["ivr-inbound"]
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        code = "\n".join(x for x in contexts[name].splitlines() if not x.lstrip().startswith(";"))
        todo += [t for t in re.findall(r"(?:Goto|Gosub)(?:If)?\([^\n]*?\b(ivr-[\w-]+),", code)
                 if t in contexts]
        todo += re.findall(r"[?:](ivr-[\w-]+),", code)  # GotoIf's / GosubIf's branches
    reached.discard("ivr-cap-reached")
    assert {"ivr-record", "ivr-action", "ivr-queue", "ivr-notice", "ivr-failsafe"} <= reached
    missing = [c for c in sorted(reached)
               if "exten => T,1,Goto(ivr-cap-reached,s,1)" not in contexts[c]]
    assert not missing, missing
