"""Feed cursors (the SSE event ids of /events) and ISO times on the wire."""

from __future__ import annotations

from datetime import datetime

import pytest

from runstream.feed import BadPosition, Cursor
from runstream_api.times import iso_times


def test_a_cursor_prints_one_entry_id_per_shard_and_parses_back() -> None:
    cursor = Cursor({1: "5-0", 0: "17-3"})
    assert cursor.text() == "17-3,5-0"
    assert Cursor.parse(cursor.text(), [0, 1]) == cursor
    assert Cursor.parse("0", [0, 1, 2]).text() == "0-0,0-0,0-0"
    assert cursor.moved(1, "6-0").text() == "17-3,6-0"


@pytest.mark.parametrize("text", ["", "1-0", "1-0,2", "a-b,1-1", "1-0,1-0,1-0", "-1-0,1-0"])
def test_a_malformed_position_is_refused_naming_what_is_wrong(text: str) -> None:
    with pytest.raises(BadPosition):
        Cursor.parse(text, [0, 1])


def test_times_go_out_as_iso_8601_with_zone_but_user_data_is_left_alone() -> None:
    out = iso_times(
        {
            "at": 1_700_000_000.5,
            "started_at": 0.0,
            "args": {"due_at": 5},
            "run": {"created_at": 1_700_000_000},
        }
    )
    assert datetime.fromisoformat(out["at"]).timestamp() == 1_700_000_000.5
    assert out["at"].endswith("Z")
    assert out["started_at"] is None
    assert out["args"] == {"due_at": 5}
    assert out["run"]["created_at"].startswith("2023-11-14T22:13:20")
