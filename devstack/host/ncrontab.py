"""NCRONTAB schedules as Azure Functions timer triggers read them.

Six fields, `{second} {minute} {hour} {day} {month} {day-of-week}`, each `*`, a number, a range
`a-b`, a step `*/n` `a-b/n` `a/n`, or a comma list of those; month and weekday names (JAN, MON).
Like NCrontab (which the host uses), a date must match BOTH the day and the day-of-week fields.
Also the TimeSpan form `hh:mm:ss` (App Service plans): an interval from host start.
All times are UTC.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devstack.host.timespan import parse_timespan

_MONTHS = {name.upper(): i for i, name in enumerate(calendar.month_abbr) if name}
_DAYS = {"SUN": 0, "MON": 1, "TUE": 2, "WED": 3, "THU": 4, "FRI": 5, "SAT": 6}
# (name, low, high, names)
_FIELDS = (
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 6, _DAYS),
)
_SEARCH_LIMIT = timedelta(days=366 * 5)


class ScheduleError(ValueError):
    """The expression is neither a valid six-field NCRONTAB expression nor a TimeSpan."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str
    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence strictly after `moment` (aware, any zone); None if there is none in 5 years."""
        t = moment.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + _SEARCH_LIMIT
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1) + timedelta(days=32)).replace(day=1, hour=0, minute=0, second=0)
            elif t.day not in self.days or (t.isoweekday() % 7) not in self.weekdays:
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
            elif t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
            elif t.second not in self.seconds:
                t += timedelta(seconds=1)
            else:
                return t
        return None


@dataclass(frozen=True)
class IntervalSchedule:
    """TimeSpan schedule: every `interval`, counted from the previous occurrence."""

    expression: str
    interval: timedelta

    def next_after(self, moment: datetime) -> datetime | None:
        return moment.astimezone(UTC) + self.interval


Schedule = CronSchedule | IntervalSchedule


def parse_schedule(expression: str) -> Schedule:
    text = expression.strip()
    interval = parse_timespan(text)
    if interval is not None:
        if interval <= timedelta(0):
            raise ScheduleError(f"schedule {expression!r}: a TimeSpan must be longer than zero")
        return IntervalSchedule(expression, interval)
    parts = text.split()
    if len(parts) != 6:
        raise ScheduleError(
            f"schedule {expression!r}: expected six fields '{{second}} {{minute}} {{hour}} {{day}} {{month}} "
            f"{{day-of-week}}' (or a TimeSpan hh:mm:ss), found {len(parts)}"
        )
    sets = [_parse_field(expression, part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(d % 7 for d in sets[5])
    return CronSchedule(expression, *sets[:5], weekdays)


def _parse_field(expression: str, text: str, name: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    top = 7 if name == "day-of-week" else high  # 7 is Sunday too

    def number(token: str) -> int:
        value = names.get(token.upper()) if names else None
        if value is None:
            if not token.isdigit():
                raise ScheduleError(f"schedule {expression!r}: {name} field has {token!r}, not a number")
            value = int(token)
        if not low <= value <= top:
            raise ScheduleError(f"schedule {expression!r}: {name} {value} is outside {low}-{high}")
        return value

    values: set[int] = set()
    for item in text.split(","):
        base, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"schedule {expression!r}: {name} step {step_text!r} must be a positive number")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = number(first), number(last)
            if start > end:
                raise ScheduleError(f"schedule {expression!r}: {name} range {base!r} runs backwards")
        else:
            start = number(base)
            end = high if step_text else start
        values.update(range(start, end + 1, step))
    return frozenset(values)
