"""Playing the recording notice from the controller: in full, never skipped, never missing.

Asterisk answers STREAM FILE for a file it cannot open with `200 result=-1 endpos=0` (the
channel still up): that is a failure, and so is a playback that ends at sample 0. A failed
notice is replaced by the fallback notice (bilingual, rendered at set-up); if even that
fails, NoticeFailed is raised and the call must end without reaching any operator.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr.agi import variables as var
from ivr.agi.context import Prompts
from ivr.agi.protocol import AgiChannel, AgiPlaybackError
from ivr.model import Disposition
from ivr.service import CallService


class NoticeFailed(Exception):
    """Neither the notice nor the fallback notice could be played."""

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__(problem)


async def _play(agi: AgiChannel, path: str) -> str | None:
    """Play a file with no escape digits; the problem, or None if it played."""
    try:
        res = await agi.stream(path, "")
    except AgiPlaybackError as exc:
        return exc.line
    if res.endpos == 0:
        return f"nothing played: {res.line}"
    return None


def _clean(text: str) -> str:
    # Dialplan arguments split on commas; a UserEvent header must stay on one line.
    return " ".join(text.replace(",", ";").replace("|", "/").split())


async def play_notice(
    agi: AgiChannel,
    calls: CallService,
    call_id: str,
    prompts: Prompts,
    prompt: str,
    languages: Sequence[str],
) -> None:
    """The notice `prompt` in each of `languages`, in order; the fallback notice instead if
    one cannot be played; then IVR_NOTICE_DONE for the dialplan. Raises NoticeFailed (the
    dialplan variable IVR_NOTICE_PROBLEM set) when nothing could be played."""
    await calls.notice_started(call_id, prompt)
    for language in languages:
        path = prompts.path(prompt, language)
        problem = await _play(agi, path)
        if problem is None:
            continue
        await calls.notice_failed(call_id, f"{language}/{prompt}", path, problem)
        fallback = prompts.fallback_notice
        fallback_problem = await _play(agi, fallback)
        if fallback_problem is not None:
            await calls.notice_failed(call_id, "fallback/notice", fallback, fallback_problem)
            why = _clean(f"{language}/{prompt}: {problem}; fallback/notice: {fallback_problem}")
            await agi.set_variable(var.NOTICE_PROBLEM, why)
            raise NoticeFailed(why)
        await calls.notice_fallback(call_id, f"{language}/{prompt}", fallback)
        break  # the fallback speaks every language
    # Tell the dialplan first: should we die now, the fail-safe path must not replay it.
    await agi.set_variable(var.NOTICE_DONE, "1")
    await calls.notice_finished(call_id)


async def end_without_notice(agi: AgiChannel, calls: CallService, call_id: str,
                             exc: NoticeFailed) -> None:
    """No notice could be played, so no operator may ring: the dialplan's
    [ivr-notice-failed] raises IvrNoticeFailed, marks the CDR and hangs up with a cause."""
    await calls.disposed(call_id, Disposition.NOTICE_FAILED, exc.problem)
    await agi.set_variable(var.ACTION, var.ACTION_NOTICE_FAILED)
