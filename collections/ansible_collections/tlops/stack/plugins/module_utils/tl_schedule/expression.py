# Part of tl_schedule (plugins/modules/tl_schedule.py). Apache-2.0.
"""When a schedule runs: its expression and its time zone, checked before any call.

EventBridge Scheduler refuses a malformed expression or an unknown time zone with a
ValidationException; the local stand-in (moto 5.2.5) stores any text for both. So the module
checks them itself and says which option is wrong and what a good value looks like.

The three forms, from the User Guide's "Schedule types"
(https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html) and the
ScheduleExpression parameter of CreateSchedule
(https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html):

- `at(yyyy-mm-ddThh:mm:ss)`: once, at that wall-clock time in the schedule's time zone;
- `rate(value unit)`: a positive whole number, then minute(s), hour(s) or day(s);
- `cron(minutes hours day-of-month month day-of-week year)`: six fields, with the values
  and wildcards of `FIELDS`; one of day-of-month and day-of-week must be `?`.

Time zones are names of the IANA time zone database (the same page, "Time zones"), checked
against the database Python's zoneinfo reads on this host.
"""

from __future__ import annotations

import re
from collections import namedtuple
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ansible_collections.tlops.stack.plugins.module_utils.tl_aws import Failure

# ScheduleExpression is 1-256 characters, ScheduleExpressionTimezone 1-50 (API_CreateSchedule).
MAX_EXPRESSION = 256
MAX_TIMEZONE = 50

FORMS = "cron(0 8 ? * MON-FRI *), rate(15 minutes) or at(2030-01-31T08:00:00)"
ZONES = "Europe/Berlin, America/New_York or UTC"

_AT = re.compile(r"^at\((.*)\)$")
_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")

Field = namedtuple("Field", ["name", "low", "high", "names", "wildcards"])

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

# The cron fields in order, their values and wildcards: the table of "Cron-based schedules"
# (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html#cron-based),
# the same as EventBridge's (https://docs.aws.amazon.com/eventbridge/latest/userguide/
# eb-cron-expressions.html). Day 1 of the week is Sunday.
FIELDS = (
    Field("minutes", 0, 59, (), ",-*/"),
    Field("hours", 0, 23, (), ",-*/"),
    Field("day-of-month", 1, 31, (), ",-*?/LW"),
    Field("month", 1, 12, _MONTHS, ",-*/"),
    Field("day-of-week", 1, 7, _DAYS, ",-*?L#"),
    Field("year", 1970, 2199, (), ",-*/"),
)
_DAY_OF_MONTH, _DAY_OF_WEEK = 2, 4


def check_expression(expression):
    """Raise Failure unless `expression` is an at(), rate() or cron() that AWS would take."""
    if not 1 <= len(expression) <= MAX_EXPRESSION:
        _refuse(expression, f"it must be 1 to {MAX_EXPRESSION} characters")
    if expression.startswith("cron("):
        _check_cron(expression)
    elif expression.startswith("rate("):
        _check_rate(expression)
    elif expression.startswith("at("):
        _check_at(expression)
    else:
        _refuse(expression, "it must be a cron(), rate() or at() expression")


def check_timezone(zone):
    """Raise Failure unless `zone` names a time zone of the IANA database."""
    if zone and len(zone) <= MAX_TIMEZONE and _known_zone(zone):
        return
    raise Failure(
        f"schedule_expression_timezone {zone!r} is not a time zone name of the IANA database: "
        f"give one such as {ZONES} (the list: https://www.iana.org/time-zones; names are "
        "case-sensitive)"
    )


def _known_zone(zone):
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    # A host's zoneinfo directory also holds files that are no zone names (localtime,
    # posixrules); the database's own list leaves them out. Without a list, trust the load.
    known = available_timezones()
    return not known or zone in known


def _refuse(expression, why):
    raise Failure(f"schedule_expression {expression!r} is not valid: {why}; e.g. {FORMS}")


def _check_at(expression):
    match = _AT.match(expression)
    try:
        datetime.strptime(match.group(1) if match else "", "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        _refuse(
            expression,
            "a one-time schedule is at(yyyy-mm-ddThh:mm:ss), a real date and time in the "
            "schedule's time zone",
        )


def _check_rate(expression):
    match = _RATE.match(expression)
    if not match or int(match.group(1)) < 1:
        _refuse(
            expression,
            "a rate is rate(value unit): a positive whole number and minute(s), hour(s) or day(s)",
        )


def _check_cron(expression):
    match = _CRON.match(expression)
    if not match:
        _refuse(expression, "a cron expression is cron(...) around its fields, closed by ')'")
    fields = match.group(1).split()
    if len(fields) != len(FIELDS):
        _refuse(
            expression,
            f"a cron expression has six fields ({' '.join(f.name for f in FIELDS)}), "
            f"found {len(fields)}",
        )
    for field, text in zip(FIELDS, fields, strict=True):
        if not _field_ok(field, text):
            names = f" or {field.names[0]}-{field.names[-1]}" if field.names else ""
            _refuse(
                expression,
                f"its {field.name} field {text!r} is not one of {field.low}-{field.high}{names} "
                f"with the wildcards {' '.join(field.wildcards)}",
            )
    if (fields[_DAY_OF_MONTH] == "?") == (fields[_DAY_OF_WEEK] == "?"):
        _refuse(
            expression,
            "exactly one of day-of-month (the third field) and day-of-week (the fifth) must be "
            "? - cron(0 8 ? * MON-FRI *) runs on weekdays, cron(0 8 1 * ? *) on every 1st",
        )


def _field_ok(field, text):
    if text == "?":
        return "?" in field.wildcards
    return all(_item_ok(field, item) for item in text.split(","))


def _item_ok(field, item):
    """One comma-separated item of a field: *, a value, a range, a step or a day wildcard."""
    if item == "*":
        return True
    if "/" in item:
        start, _, step = item.partition("/")
        return (
            "/" in field.wildcards
            and step.isdigit()
            and int(step) > 0
            and (start == "*" or _span_ok(field, start))
        )
    if "L" in field.wildcards and item == "L":
        return True
    if "W" in field.wildcards and item.endswith("W"):  # LW, or the weekday nearest day n
        return item == "LW" or _value(field, item[:-1]) is not None
    if field.name == "day-of-week" and item.endswith("L"):  # the month's last such day
        return _value(field, item[:-1]) is not None
    if "#" in field.wildcards and "#" in item:  # the nth such day of the month
        day, _, nth = item.partition("#")
        return _value(field, day) is not None and nth in ("1", "2", "3", "4", "5")
    return _span_ok(field, item)


def _span_ok(field, text):
    first, dash, last = text.partition("-")
    if dash:
        return _value(field, first) is not None and _value(field, last) is not None
    return _value(field, text) is not None


def _value(field, text):
    """The number `text` stands for in `field`, or None when it is none of its values."""
    if text.isdigit():
        number = int(text)
        return number if field.low <= number <= field.high else None
    name = text.upper()
    return field.names.index(name) + field.low if name in field.names else None
