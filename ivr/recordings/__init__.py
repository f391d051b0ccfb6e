"""Recording as evidence: every call's recording archived as one stereo file (caller left,
operator/IVR right), indexed, hash-chained, kept by policy, searchable, analysed, exported.

A recording's life, module by module:

- ``archive.py`` / ``service_archive.py``: after the hang-up (ivr/recording.py has put the
  legs on the call's timeline) the legs become one stereo WAV or FLAC; per-side audio
  coverage is measured (one-sided flag); the file is hashed, indexed and chained. At start-up
  files without a row are indexed and rows without a file reported (``reconcile``).
- ``chain.py`` (pure) / ``store_chain.py``: the append-only hash chain; ``verify.py`` checks
  it against the index and the files and names what is wrong.
- ``retention.py``: expiry per desk, holds for flagged calls, tombstones.
- ``export.py``: the evidence bundle with a ``SHA256SUMS`` manifest.
- ``analysis.py`` (pure numpy) / ``service_analysis.py``: loudness, shouting episodes,
  silence/talk/overlap, longest monologue, the picture; a queue in the index that survives
  restarts.
- ``store_index.py``: the ``recordings`` table (ivr/store/tables.py); ``search.py``: queries.

Edges: ivr/cli_recordings.py (``ivr recordings ...``) and ivr/web/api_recordings.py.
"""
