"""Operator feature codes on the controller side: the settings, the AMI event, and the
service writing the record, the block (with provenance) and the audit entry, on SQLite and
PostgreSQL alike."""

from __future__ import annotations

import pytest

from ivr.ami.events import FeatureUsed, parse_event
from ivr.model import Source
from ivr.protection.service_blocks import BlockService
from ivr.protection.service_features import FeatureService
from ivr.protection.settings import SettingsError, parse_settings
from ivr.protection.settings_features import FeatureSettings
from ivr.protection.store_audit import AuditStore
from ivr.protection.store_blocks import BlockStore
from ivr.service import CallService
from ivr.store import CallStore
from tests.store.conftest import Clock

pytestmark = pytest.mark.timeout(60)
T0 = 1_700_000_000.0


# ---- settings ----

def test_default_codes_render_the_applicationmap():
    entries = {e["name"]: e for e in FeatureSettings().applicationmap()}
    assert entries["ivr_flag"]["code"] == "*1" and entries["ivr_flag"]["on"] == "self"
    assert entries["ivr_notice"]["on"] == "peer"  # the caller's channel: recorded
    assert entries["ivr_end_refuse"]["app"] == "Gosub(ivr-feature-end,s,1(operator_closing))"
    assert entries["ivr_escalate"]["app"] == "BlindTransfer(supervisor,ivr-escalate)"


@pytest.mark.parametrize("codes, field", [
    ({"flag": "*2"}, "same code"),  # the notice's default
    ({"flag": "*"}, "is the start of"),  # a prefix of every other code
    ({"escalate": "*3,"}, "features.codes.escalate"),  # a comma would add a field
    ({"notice": "*2\n[x]"}, "features.codes.notice"),
    ({"notice": ""}, "features.codes.notice"),
    ({"end_and_refuse": "*9999999"}, "features.codes.end_and_refuse"),
])
def test_bad_codes_are_refused_naming_the_field(codes, field):
    with pytest.raises(SettingsError) as err:
        parse_settings({"features": {"codes": codes}})
    assert field in str(err.value)


def test_other_bad_values_name_their_field():
    for doc, field in [({"escalate_mode": "attended"}, "features.escalate_mode"),
                       ({"block_days": 0}, "features.block_days"),
                       ({"closing_prompt": "../etc/x"}, "features.closing_prompt"),
                       ({"supervisor_desk": "Boss Desk"}, "features.supervisor_desk")]:
        with pytest.raises(SettingsError) as err:
            parse_settings({"features": doc})
        assert field in str(err.value), doc
    with pytest.raises(SettingsError) as err:
        parse_settings({"features": {"supervisor_desk": "boss"}}, desks={"support"})
    assert "features.supervisor_desk" in str(err.value)


# ---- the AMI event ----

def test_ivr_feature_event_takes_the_call_from_linkedid():
    msg = {"Event": "UserEvent", "UserEvent": "IvrFeature", "Feature": "flag",
           "Uniqueid": "op-leg.7", "Linkedid": "call.1", "Channel": "PJSIP/op1001-00000001",
           "CallId": "call.1", "Timestamp": "1700000001.5"}
    event = parse_event(msg)
    assert event == FeatureUsed("call.1", "flag", "PJSIP/op1001-00000001", at=1700000001.5)
    assert parse_event({**msg, "Feature": "drop_tables"}) is None
    assert parse_event({**msg, "Linkedid": ["a", "b"]}) is None  # a repeated header


# ---- the service ----

async def _call(calls: CallService, call_id: str, caller: str | None) -> None:
    await calls.call_started(call_id, caller=caller, did="0399000000", recording_path=None,
                             source=Source.AMI, started_at=T0)
    await calls.connected(call_id, "op1001", 5, T0 + 10)


def _service(db, clock) -> tuple[CallService, FeatureService, BlockStore, AuditStore]:
    calls = CallService(CallStore(db), node="n1", clock=clock)
    blocks, audit = BlockStore(db, clock=clock), AuditStore(db)
    service = FeatureService(calls, BlockService(blocks, audit, clock=clock), FeatureSettings)
    return calls, service, blocks, audit


async def test_flag_is_recorded_once(db):
    clock = Clock()
    calls, service, _blocks, _audit = _service(db, clock)
    await _call(calls, "c1", "0312345678")
    await service.used_feature("c1", "flag", at=T0 + 20)
    await service.used_feature("c1", "flag", at=T0 + 25)
    record = await calls.get("c1")
    assert record.flags == "harassment"
    flagged = [e for e in await calls.events("c1") if e["kind"] == "flagged"]
    assert len(flagged) == 2 and flagged[0]["data"]["operator"] == "op1001"
    assert service.used["flag"] == 2


async def test_end_and_refuse_blocks_the_number_with_provenance(db):
    clock = Clock()
    calls, service, blocks, audit = _service(db, clock)
    await _call(calls, "c2", "+81 3-1234-5678")
    await service.used_feature("c2", "end_and_refuse", at=T0 + 30,
                               prompt="ja/operator_closing")
    [block] = await blocks.active(T0 + 31)
    assert (block.kind, block.value, block.source, block.added_by) == (
        "exact", "0312345678", "operator", "op1001")
    assert block.call_id == "c2" and block.review == "pending"
    assert block.reason == "ended by operator"
    assert block.expires_at == pytest.approx(T0 + 30 + 30 * 86400)
    [entry] = [e for e in await audit.list() if e.action == "block.add"]
    assert entry.actor == "op1001" and entry.role == "operator"
    kinds = [e["kind"] for e in await calls.events("c2")]
    assert "end_and_refuse" in kinds and "blocked" in kinds
    ended = await calls.hung_up("c2", 16, "Normal Clearing", T0 + 38)
    assert ended.hangup_by == "operator"


async def test_withheld_and_unusable_numbers_are_not_blocked(db):
    clock = Clock()
    calls, service, blocks, _audit = _service(db, clock)
    await _call(calls, "c3", "anonymous")  # no usable number: caller stays null
    await service.used_feature("c3", "end_and_refuse", at=T0 + 30)
    await _call(calls, "c4", None)
    await service.used_feature("c4", "end_and_refuse_withheld", at=T0 + 30)
    assert await blocks.active(T0 + 31) == []
    for call_id in ("c3", "c4"):
        kinds = [e["kind"] for e in await calls.events(call_id)]
        assert "block_impossible" in kinds and "blocked" not in kinds


async def test_escalate_and_notice_and_an_unknown_call(db):
    clock = Clock()
    calls, service, _blocks, _audit = _service(db, clock)
    await _call(calls, "c5", "0312345678")
    await service.used_feature("c5", "notice", at=T0 + 12, prompt="ja/notice")
    await service.used_feature("c5", "notice_end", at=T0 + 19, prompt="ja/notice",
                               status="SUCCESS")
    await service.used_feature("c5", "escalate", at=T0 + 40, desk="supervisor")
    record = await calls.get("c5")
    assert record.desk == "supervisor"
    events = {e["kind"]: e for e in await calls.events("c5")}
    assert events["escalated"]["data"]["operator"] == "op1001"
    assert events["feature_notice"]["data"]["prompt"] == "ja/notice"
    await service.used_feature("nope", "flag")  # logged, nothing raised
