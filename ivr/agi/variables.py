"""Channel variables shared by the dialplan (asterisk/extensions.conf.j2) and the handlers."""

CALL_ID = "IVR_CALL_ID"
DID = "IVR_DID"
RECORDING = "IVR_RECORDING"
NOTICE_DONE = "IVR_NOTICE_DONE"
ACTION = "IVR_ACTION"
QUEUE = "IVR_QUEUE"
QUEUE_TIMEOUT = "IVR_QUEUE_TIMEOUT"
HANGUP_CAUSE = "IVR_HANGUP_CAUSE"
LANGUAGE = "IVR_LANG"
OVERFLOWS = "IVR_OVERFLOWS"
NOTICE_LANGS = "IVR_NOTICE_LANGS"  # languages the fail-safe plays the notice in, `ja&en`
NOTICE_PROBLEM = "IVR_NOTICE_PROBLEM"  # why no notice could be played (UserEvent, CDR)
JOURNEY = "IVR_JOURNEY"  # the version of the journey the call started with
FAILSAFE_DONE = "IVR_FAILSAFE_DONE"

# Values of ACTION the dialplan's [ivr-action] context knows.
ACTION_QUEUE = "queue"
ACTION_HANGUP = "hangup"
ACTION_FAILSAFE = "missing"
ACTION_NOTICE_FAILED = "notice_failed"  # not even the fallback notice played: hang up
