"""Operator protection (着信規制, 発信規制, リピート型, 時間拘束, feature codes, end-and-refuse).

Grouped by feature, each piece side by side:
- settings*.py   the protection settings (protection.yaml, then versions in the store): one
                 pydantic model per section, errors naming the field;
- rules*.py      pure decisions: a number and its context in, a decision with the rule id out;
- store*.py      the block list, the audit log, API tokens, settings versions;
- service*.py    what the CLI, the API, the FastAGI handlers and (later) the web console call.
"""
