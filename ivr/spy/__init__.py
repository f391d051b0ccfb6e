"""Listen, whisper, barge: a supervisor on a live call (ivr/spy/service.py)."""
