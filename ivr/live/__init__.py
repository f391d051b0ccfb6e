"""Live protection: shouting followed while the call is connected (ivr/live/detector.py
decides, ivr/live/service.py reads the recording as it grows and acts through Asterisk)."""
