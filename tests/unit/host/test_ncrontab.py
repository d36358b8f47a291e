from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devstack.host.ncrontab import CronSchedule, ScheduleError, parse_schedule

SAT = datetime(2026, 11, 21, 8, 0, 3, tzinfo=UTC)  # a Saturday


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * * *", SAT, datetime(2026, 11, 21, 8, 0, 5, tzinfo=UTC)),
        ("0 */5 * * * *", SAT, datetime(2026, 11, 21, 8, 5, 0, tzinfo=UTC)),
        ("0 30 9 * * MON-FRI", SAT, datetime(2026, 11, 23, 9, 30, tzinfo=UTC)),
        ("0 30 9 * * 1-5", SAT, datetime(2026, 11, 23, 9, 30, tzinfo=UTC)),
        ("0 0 0 * * 7", SAT, datetime(2026, 11, 22, tzinfo=UTC)),  # 7 is Sunday, like 0
        ("0 0 12 1 JAN *", SAT, datetime(2027, 1, 1, 12, tzinfo=UTC)),
        ("0 0 0 29 2 *", SAT, datetime(2028, 2, 29, tzinfo=UTC)),
        ("15,45 * * * * *", SAT, datetime(2026, 11, 21, 8, 0, 15, tzinfo=UTC)),
        ("0 0 10-12/2 * * *", SAT, datetime(2026, 11, 21, 10, tzinfo=UTC)),
        # NCrontab: day AND day-of-week must both match (the 13th that is a Friday).
        ("0 0 0 13 * FRI", SAT, datetime(2027, 8, 13, tzinfo=UTC)),
        ("3 0 8 21 11 *", SAT, datetime(2027, 11, 21, 8, 0, 3, tzinfo=UTC)),  # strictly after
        ("00:05:00", SAT, SAT + timedelta(minutes=5)),
        ("1.00:00:00", SAT, SAT + timedelta(days=1)),
    ],
)
def test_next_occurrence(expression: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expression).next_after(after) == expected


def test_next_after_converts_other_zones_to_utc() -> None:
    from zoneinfo import ZoneInfo

    local = datetime(2026, 11, 21, 9, 0, 3, tzinfo=ZoneInfo("Europe/Berlin"))
    assert parse_schedule("*/5 * * * * *").next_after(local) == datetime(2026, 11, 21, 8, 0, 5, tzinfo=UTC)


def test_impossible_date_never_fires() -> None:
    schedule = parse_schedule("0 0 0 31 2 *")
    assert isinstance(schedule, CronSchedule) and schedule.next_after(SAT) is None


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * * *", "expected six fields"),
        ("60 * * * * *", "second 60 is outside 0-59"),
        ("* * 24 * * *", "hour 24 is outside 0-23"),
        ("* * * 0 * *", "day 0 is outside 1-31"),
        ("* * * * 13 *", "month 13 is outside 1-12"),
        ("* * * * * FUNDAY", "not a number"),
        ("*/0 * * * * *", "must be a positive number"),
        ("5-1 * * * * *", "runs backwards"),
        ("00:00:00", "longer than zero"),
    ],
)
def test_bad_expressions_are_refused(expression: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        parse_schedule(expression)
