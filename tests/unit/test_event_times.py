"""`shared.events.event_times` reads ingest's timestamps in one NumPy pass (`utc_times`); it must
give exactly the floats `event_time` (datetime's own parsing) gives, and fall back to it, with its
errors, for anything else: other forms of RFC 3339, offsets, impossible dates, years whose
microseconds are not exact as a float, non-ASCII text.
"""

from __future__ import annotations

from datetime import datetime, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import event_time, event_times, utc_times

instants = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999_999))
canonical = instants.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0"))


@st.composite
def mangled(draw) -> str:
    """A canonical timestamp with a character or two changed (digits, separators, anything)."""
    s = list(draw(canonical))
    for _ in range(draw(st.integers(1, 2))):
        s[draw(st.integers(0, 26))] = draw(st.one_of(st.sampled_from("0123456789-T:.Z+ t"), st.characters()))
    return "".join(s)


def each(values: list[str]) -> list[float] | type:
    try:
        return [event_time(v) for v in values]
    except (ValueError, TypeError) as exc:
        return type(exc)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(canonical, canonical, mangled(), st.text(max_size=27)), min_size=1, max_size=8))
def test_the_one_pass_reading_equals_datetimes_own_or_stands_aside(values):
    fast = utc_times(values)
    if fast is not None:
        assert fast == each(values)
    try:
        got = event_times(values)
    except (ValueError, TypeError) as exc:
        got = type(exc)
    assert got == each(values)


@settings(max_examples=300, deadline=None)
@given(st.lists(instants.filter(lambda d: 1700 <= d.year <= 2200), min_size=1, max_size=8))
def test_ingests_form_of_present_day_times_is_read_in_one_pass(moments):
    values = [d.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for d in moments]
    assert utc_times(values) == [d.replace(tzinfo=timezone.utc).timestamp() for d in moments]
