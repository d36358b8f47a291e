"""Alert rules as data: a figure, a condition over a window, a scope, and what to do when it holds.

Microsoft's dual-write knows one kind (N errors of a type within a window: e-mail, pause or stop) and reads
it when the maps restart. Ours are rows in Table Storage read at every evaluation, over every figure of
core.ops.metrics, and the defaults below are shipped (seeded once; editable and deletable like any rule).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from core.ops.meter import Direction
from core.sync.domain import Category

Metric = Literal["errors", "error_rate_pct", "lag_p95_s", "backlog_age_s", "parked_records", "dead_letters",
                 "applied_per_s", "throttled_per_min", "deployment_failed"]
METRICS: tuple[str, ...] = get_args(Metric)
# Figures of a map (one alert per map in scope; pausing makes sense); the others are the engine's as a whole.
PER_MAP: frozenset[str] = frozenset({"errors", "error_rate_pct", "lag_p95_s", "backlog_age_s", "parked_records",
                                     "dead_letters", "applied_per_s"})
Op = Literal[">", ">=", "<", "<="]
COMPARE: dict[str, Callable[[float, float], bool]] = {">": operator.gt, ">=": operator.ge, "<": operator.lt,
                                                       "<=": operator.le}
UNITS = {"errors": "errors", "error_rate_pct": "%", "lag_p95_s": "s", "backlog_age_s": "s",
         "parked_records": "records", "dead_letters": "open errors", "applied_per_s": "/s",
         "throttled_per_min": "/min", "deployment_failed": ""}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class Scope(BaseModel):
    model_config = ConfigDict(extra="forbid")
    map: str | None = Field(None, description="one map; null: every map (an alert per map)")
    direction: Direction | None = Field(None, description="one direction; null: both")


class AlertRule(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="letters, digits, . _ -; at most 63")
    description: str = ""
    enabled: bool = True
    metric: Metric = Field(description="errors: open errors first failed in the window; error_rate_pct: failed / "
                           "(applied + failed); lag_p95_s: source change -> applied; backlog_age_s: the oldest "
                           "waiting change; parked_records; dead_letters: open errors of any age; applied_per_s; "
                           "throttled_per_min: 429 answers per side; deployment_failed: 1 when the last failed")
    op: Op = ">"
    threshold: float = Field(ge=0)
    window_minutes: float = Field(15, ge=1, le=1440, description="counted per minute: at least 1")
    category: Category | None = Field(None, description="errors of this category only (metric errors)")
    scope: Scope = Field(default_factory=Scope)
    notify: bool = True
    pause: bool = Field(False, description="pause the map while the rule fires (Microsoft's threshold action)")
    resume_when_clear: bool = Field(False, description="resume (catch up) the map the rule paused once it clears")
    recipients: list[str] = Field(default_factory=list, description="e-mail recipients; empty: ALERT_EMAIL_TO")
    cooldown_minutes: float = Field(30, ge=0, le=10080, description="no new notification of this rule and "
                                    "subject sooner than this after the last one")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("letters, digits, '.', '_' and '-' only, starting with a letter or digit, at most 63")
        return value

    @field_validator("recipients")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if not re.fullmatch(r"[^@\s,;]+@[^@\s,;]+", a)]
        if bad:
            raise ValueError(f"not an e-mail address: {', '.join(bad)}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        if self.pause and self.metric not in PER_MAP:
            raise ValueError(f"pause needs a figure of a map; {self.metric} is the engine's as a whole")
        if self.resume_when_clear and not self.pause:
            raise ValueError("resume_when_clear resumes what the rule paused: it needs pause")
        if self.category is not None and self.metric != "errors":
            raise ValueError("category narrows the metric errors only")
        if self.scope.map is not None and self.metric not in PER_MAP:
            raise ValueError(f"scope.map: {self.metric} is not a figure of a map")
        return self

    def condition(self) -> str:
        unit = UNITS[self.metric]
        what = self.metric + (f" ({self.category})" if self.category else "")
        return f"{what} {self.op} {self.threshold:g}{(' ' + unit) if unit else ''} over {self.window_minutes:g} min"

    def breached(self, value: float | None) -> bool:
        """Whether `value` meets the condition (no figure: it does not)."""
        return value is not None and COMPARE[self.op](value, self.threshold)


def _rule(**fields: object) -> AlertRule:
    return AlertRule.model_validate(fields)


# Shipped once into an empty rule table; docs/alerts.md explains each.
DEFAULT_RULES: tuple[AlertRule, ...] = (
    # Microsoft's documented example, told rather than acted on: a shipped rule that paused production sync
    # would surprise; `pause: true` (and `resume_when_clear`) make it Microsoft's threshold behaviour.
    _rule(name="application-errors", metric="errors", category="application", threshold=10, op=">=",
          window_minutes=15, cooldown_minutes=60,
          description="10 application errors within 15 minutes in a map (set pause to stop the map as well)"),
    _rule(name="dead-letters", metric="dead_letters", threshold=0, op=">", window_minutes=5, cooldown_minutes=240,
          description="a map has changes in the error log"),
    _rule(name="lag", metric="lag_p95_s", threshold=300, op=">", window_minutes=15, cooldown_minutes=60,
          description="95% of the changes take more than 5 minutes to reach the other side"),
    _rule(name="backlog", metric="backlog_age_s", threshold=3600, op=">", window_minutes=15, cooldown_minutes=120,
          description="a change has waited more than an hour (parked, or on the queue)"),
    _rule(name="throttling", metric="throttled_per_min", threshold=30, op=">", window_minutes=15,
          cooldown_minutes=60, description="Dataverse or F&O answers 429 more than 30 times a minute"),
    _rule(name="deployment", metric="deployment_failed", threshold=0, op=">", window_minutes=60,
          cooldown_minutes=240, description="the last deployment (webhook steps, F&O events) failed"),
)
