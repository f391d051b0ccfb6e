"""The analysis drawn as an SVG: loudness per side over time, shouting episodes marked.

Plain SVG text (no plotting library): one panel per side (caller on top, operator/IVR
below), dBFS against time, the speaker's baseline dashed, each episode a red band. Browsers
show it as it is; it embeds in an evidence bundle as a file.
"""

from __future__ import annotations

from typing import Any, Final
from xml.sax.saxutils import escape, quoteattr

WIDTH: Final = 960
PANEL_HEIGHT: Final = 160
LEFT: Final = 56  # room for the dBFS labels
RIGHT: Final = 16
TOP: Final = 28
GAP: Final = 36  # between the panels, room for the time labels
TOP_DBFS: Final = 0.0
BOTTOM_DBFS: Final = -70.0  # quieter than any talk; lower levels are drawn on the floor
MAX_POINTS: Final = 2000  # a long call is drawn from the loudest window of each column
LABELS: Final = {"caller": "caller (left)", "other": "operator / IVR (right)"}


def render_svg(analysis: dict[str, Any], title: str = "") -> str:
    """The picture of one analysis (``ivr.recordings.analysis.analyse``'s dict)."""
    if "caller" not in analysis or "other" not in analysis:
        raise ValueError("not an analysis: no caller/other sides"
                         + (f" ({analysis['error']})" if "error" in analysis else ""))
    duration = max(float(analysis.get("duration") or 0.0), 0.1)
    window = float(analysis.get("window_s") or 0.1)
    height = TOP + 2 * PANEL_HEIGHT + 2 * GAP
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="11">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="18" font-size="13">{escape(title)}</text>',
    ]
    for k, side in enumerate(("caller", "other")):
        top = TOP + k * (PANEL_HEIGHT + GAP)
        parts += _panel(analysis[side], LABELS[side], top, duration, window)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _panel(side: dict[str, Any], label: str, top: float, duration: float, window: float
           ) -> list[str]:
    plot_w = WIDTH - LEFT - RIGHT

    def x(t: float) -> float:
        return LEFT + plot_w * min(max(t / duration, 0.0), 1.0)

    def y(db: float) -> float:
        db = min(max(db, BOTTOM_DBFS), TOP_DBFS)
        return top + PANEL_HEIGHT * (TOP_DBFS - db) / (TOP_DBFS - BOTTOM_DBFS)

    out = [f'<text x="{LEFT}" y="{top - 6}" font-weight="bold">{escape(label)}</text>',
           f'<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_HEIGHT}" '
           'fill="#fafafa" stroke="#999"/>']
    for db in range(int(TOP_DBFS), int(BOTTOM_DBFS) - 1, -20):
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(db):.1f}" y2="{y(db):.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 4}" y="{y(db) + 4:.1f}" text-anchor="end">{db} dBFS'
                   "</text>")
    step = _tick_step(duration)
    t = 0.0
    while t <= duration + 1e-9:
        out.append(f'<text x="{x(t):.1f}" y="{top + PANEL_HEIGHT + 14}" text-anchor="middle">'
                   f"{_clock(t)}</text>")
        t += step
    for ep in side.get("episodes", []):
        x0, x1 = x(float(ep["start"])), x(float(ep["end"]))
        note = (f"shouting {_clock(float(ep['start']))}–{_clock(float(ep['end']))}, "
                f"peak {ep['peak_dbfs']} dBFS, +{ep['above_baseline_db']} dB")
        out.append(f'<rect x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1.5):.1f}" '
                   f'height="{PANEL_HEIGHT}" fill="#e53935" fill-opacity="0.25">'
                   f"<title>{escape(note)}</title></rect>")
    levels = [float(v) for v in side.get("loudness", [])]
    if levels:
        out.append(f'<polyline fill="none" stroke="#1e5aa8" stroke-width="1" '
                   f'points={quoteattr(_points(levels, window, x, y))}/>')
    baseline = side.get("baseline_dbfs")
    if baseline is not None:
        out.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{y(baseline):.1f}" '
                   f'y2="{y(baseline):.1f}" stroke="#555" stroke-dasharray="4 3">'
                   f"<title>baseline {baseline} dBFS</title></line>")
    return out


def _points(levels: list[float], window: float, x, y) -> str:
    """Polyline points; more windows than MAX_POINTS are grouped, each group drawn at its
    loudest window so no outburst disappears from a long call's picture."""
    group = max(1, -(-len(levels) // MAX_POINTS))
    pts = []
    for k in range(0, len(levels), group):
        pts.append(f"{x((k + group / 2) * window):.1f},{y(max(levels[k:k + group])):.1f}")
    return " ".join(pts)


def _tick_step(duration: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if duration / step <= 12:
            return float(step)
    return 7200.0


def _clock(seconds: float) -> str:
    s = round(seconds)
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"
