""".NET TimeSpan strings (`[d.]hh:mm:ss[.fff]`) as host.json and timer triggers write durations."""

from __future__ import annotations

import re
from datetime import timedelta

_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))?$")


def parse_timespan(text: str) -> timedelta | None:
    """The duration, or None when `text` is not in TimeSpan form."""
    found = _TIMESPAN.match(text.strip())
    if not found:
        return None
    days, hours, minutes, seconds, fraction = found.groups()
    return timedelta(
        days=int(days or 0),
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "0").ljust(6, "0")[:6]),
    )
