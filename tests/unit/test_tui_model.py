"""The dashboard's pure rules: order, filter, columns, cells, when to announce, paths."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from clauderon.tui import model
from clauderon.tui.widgets.path_input import complete_path

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def session(name: str, agent: str = "working", minutes: int = 5, **extra) -> dict:
    return {
        "name": name,
        "status": "running",
        "state": "running",
        "agent_status": agent,
        "repo": "/home/dev/shop",
        "subdirectory": "",
        "created_at": (NOW - timedelta(minutes=minutes)).isoformat(),
        **extra,
    }


def test_waiting_sessions_sort_first_then_errors_then_newest():
    sessions = [
        session("old-working", minutes=90),
        session("new-working", minutes=1),
        session("input", "waiting_input", minutes=300),
        session("broken", "error"),
        session("approval", "waiting_approval", minutes=400),
        session("idle", "idle"),
    ]
    names = [s["name"] for s in model.visible(sessions)]
    assert names == ["approval", "input", "broken", "new-working", "old-working", "idle"]


def test_archived_only_on_the_toggle_and_filter_words():
    sessions = [
        session("fix-login"),
        session("spike", "exited", status="archived", state="archived"),
        session("csv-export", minutes=10, repo="/home/dev/api"),
    ]
    assert [s["name"] for s in model.visible(sessions)] == ["fix-login", "csv-export"]
    assert len(model.visible(sessions, archived=True)) == 3
    assert [s["name"] for s in model.visible(sessions, text="API csv")] == ["csv-export"]
    assert model.visible(sessions, text="api login") == []
    assert [s["name"] for s in model.visible(sessions, text="  ")] == ["fix-login", "csv-export"]


def test_review_columns_appear_when_the_api_gives_them():
    plain = [session("a")]
    assert [c.key for c in model.columns_for(plain)] == [
        "mark", "name", "repo", "state", "agent_status", "age",
    ]  # fmt: skip
    reviewed = [session("a", ahead=3, changed_files=7)]
    columns = model.columns_for(reviewed)
    assert [c.key for c in columns][-3:] == ["ahead", "changed_files", "age"]
    assert model.cells(reviewed[0], columns, NOW) == [
        "", "a", "shop", "running", "working", "3", "7", "5m",
    ]  # fmt: skip


def test_cells_mark_waiting_and_errors():
    columns = model.columns_for([session("a")])
    waiting = session("w", "waiting_approval", subdirectory="pkg", minutes=60 * 25)
    assert model.cells(waiting, columns, NOW) == [
        "!", "w", "shop/pkg", "running", "waiting approval", "1d",
    ]  # fmt: skip
    exited = session("e", "exited", state="exited", exit_code=2, error="boom")
    assert model.cells(exited, columns, NOW)[:4] == ["x", "e", "shop", "exited (2)"]


def test_age():
    assert model.age((NOW - timedelta(seconds=5)).isoformat(), NOW) == "5s"
    assert model.age((NOW - timedelta(hours=3)).isoformat(), NOW) == "3h"
    assert model.age("2026-01-15T11:00:00", NOW) == "1h"  # naive means UTC
    assert model.age(None, NOW) == "-"


def test_announce_only_when_it_starts_waiting():
    working, waiting = session("a"), session("a", "waiting_input")
    approval = session("a", "waiting_approval")
    assert model.became_waiting(working, waiting)
    assert model.became_waiting(waiting, approval)
    assert not model.became_waiting(waiting, waiting)
    assert not model.became_waiting(waiting, working)
    assert model.became_waiting(None, waiting)


def test_path_completion(tmp_path, monkeypatch):
    (tmp_path / "project").mkdir()
    (tmp_path / "projects-old").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "profile.txt").write_text("")
    assert complete_path(f"{tmp_path}/pro") == f"{tmp_path}/project/"
    assert complete_path(f"{tmp_path}/projects") == f"{tmp_path}/projects-old/"
    assert complete_path(f"{tmp_path}/.h") == f"{tmp_path}/.hidden/"
    assert complete_path(f"{tmp_path}/x") is None
    assert complete_path("") is None
    monkeypatch.setenv("HOME", str(tmp_path))
    assert complete_path("~/proj") == "~/project/"
    monkeypatch.chdir(tmp_path)
    assert complete_path("pro") == "project/"


def test_console_drops_the_blank_rows_below_what_the_agent_drew():
    import pyte

    from clauderon.tui.widgets.console_view import screen_text

    screen = pyte.Screen(20, 10)
    stream = pyte.ByteStream(screen)
    stream.feed(b"\x1b[1;31mhello\x1b[0m\r\n> ")
    text = screen_text(screen)
    assert text.plain.splitlines() == ["hello", ">"]
    assert any("red" in str(span.style) for span in text.spans)
    stream.feed(b"\x1b[8;1Hstatus line")
    assert len(screen_text(screen).plain.splitlines()) == 8
