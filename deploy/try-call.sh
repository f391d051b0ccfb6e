#!/usr/bin/env bash
# Place one test call against a running server (make run): op1001 is logged in to its desks
# and a SIPp phone answers as op1001 (the example's fixed contact 127.0.0.1:5071); a SIPp
# caller calls the trunk, speaks (continuous RTP), presses KEYS ("SECONDS:KEY ...", RFC 2833,
# seconds after the answer) and hangs up after SECONDS. Then the call record is printed.
#   deploy/try-call.sh [CALLER] [DID] [SECONDS] [KEYS]
# The default DID is not in the example journey, so the caller goes straight to the support
# desk after greeting and notice. The main number 0501234567 asks for a language, then a desk:
#   deploy/try-call.sh 0312345678 0501234567 36 "18.8:1 20.3:1"     (Japanese, sales)
set -euo pipefail
cd "$(dirname "$0")/.."
PROJECT=$(pwd)
CALLER=${1:-0312345678}; DID=${2:-0399000000}; SECONDS_=${3:-20}; KEYS=${4:-}
SIP_PORT=$(.venv/bin/python -c "from ivr.config import load_config; print(load_config('ivr.toml').asterisk.sip_port)")
work=$(mktemp -d /tmp/ivr-try.XXXXXX)
mkdir -p "$work/pcap"
cp /usr/share/sip-tester/*.pcap "$work/pcap/"
.venv/bin/python -m tests.e2e.rtp tone "$work/pcap/operator.pcap" 120
# shellcheck disable=SC2086
.venv/bin/python -m tests.e2e.rtp caller "$work/caller.pcap" "$SECONDS_" $KEYS
.venv/bin/ivr operators login op1001
.venv/bin/python - "$work" "$SECONDS_" <<'PY'
import sys
from pathlib import Path
from tests.e2e.scenarios import caller_scenario
Path(sys.argv[1], "caller.xml").write_text(
    caller_scenario(pcap="caller.pcap", hangup_after=float(sys.argv[2]), accept_bye=True))
PY
printf 'SEQUENTIAL\n%s;\n' "$CALLER" > "$work/caller.csv"
cd "$work"
sipp -sf "$PROJECT/tests/sipp/operator.xml" -i 127.0.0.1 -p 5071 -mi 127.0.0.1 -mp 6000 \
    -m 1 -nostdin -trace_msg -message_file operator-messages.log >operator.log 2>&1 &
op=$!
sleep 0.5
echo "calling $DID from $CALLER for ${SECONDS_}s (SIPp files in $work)"
sipp "127.0.0.1:$SIP_PORT" -sf caller.xml -s "$DID" -inf caller.csv -m 1 -i 127.0.0.1 \
    -mi 127.0.0.1 -mp 6100 -nostdin -timeout 120s -timeout_error >caller.log 2>&1 \
    && echo "caller: call completed (hung up by the caller or by the server)" \
    || echo "caller: call FAILED (see $work/caller.log)"
kill "$op" 2>/dev/null || true
cd - >/dev/null
sleep 2
.venv/bin/ivr calls --limit 1
