"""Time as the suite writes it: timestamps in status files and sidecars, and durations."""

from __future__ import annotations

import datetime as dt
from typing import Optional


def now() -> str:
    """The current UTC time to the second, ISO 8601: "2026-11-23T04:01:56+00:00"."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def duration(seconds: Optional[float], style: str = "compact", blank: str = "") -> str:
    """A duration in seconds as text; `blank` for None.

    style "compact" (progress lines): 42s, 18m02s, 2h05m (whole seconds, never negative).
    style "report" (the markdown report): 42.1 s below a minute, else 1m 42s, 2h 05m.
    """
    if seconds is None:
        return blank
    if style == "report" and seconds < 60:
        return f"{seconds:.1f} s"
    total = max(0, int(round(seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if style == "report":
        return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m {secs:02d}s"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
