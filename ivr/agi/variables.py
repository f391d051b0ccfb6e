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
ACTION_REFUSED = "refused"  # hang up after a short guard: the refusal's last frames arrive
ACTION_FAILSAFE = "missing"
ACTION_NOTICE_FAILED = "notice_failed"  # not even the fallback notice played: hang up

# Operator protection. Inheritable (set as __NAME on the caller) so that app_queue's member
# channels and the dialplan that rings the operator's phone see them.
FLAGS = "IVR_FLAGS"  # space-separated flags of the call (repeat, withheld, harassment...)
RING_PREFIX = "IVR_RING_PREFIX"  # "[R3]" before the caller name on the operator's phone
ALERT_INFO = "IVR_ALERT_INFO"  # Alert-Info header to the operator's phone ("" = none)
TALK_LIMIT = "IVR_TALK_LIMIT"  # talk-time limit in milliseconds ("" = none)
TALK_WARNING = "IVR_TALK_WARNING"  # the warning this many milliseconds before the limit
PRIVACY = "IVR_PRIVACY"  # the trunk INVITE's Privacy header, filtered ([from-trunk])
# Call-time limits (asterisk/extensions.conf.j2 [ivr-member], [ivr-limit-closing]); the globals
# of the same names are the default desk's, for the fail-safe path.
TALK_WARN_OPERATOR = "IVR_TALK_WARN_OPERATOR"  # "1": the operator hears the warning too
TALK_WARNING_PROMPT = "IVR_TALK_WARNING_PROMPT"  # prompt names under <prompts>/<lang>/
TALK_CLOSING_PROMPT = "IVR_TALK_CLOSING_PROMPT"
LIMIT_LANG = "IVR_LIMIT_LANG"  # the language of the warning and closing prompts
