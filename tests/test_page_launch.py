"""The Launch page under AppTest (issue 16, items 3 and 4): the Name field follows the form until the user types
one; a number below its minimum disables Launch, says why and is never replaced by an older value; a garbage
CSV upload gets a message in the user's words and is not kept; a delay that does not fit in the sequence
names what the user can change. FLOSS_NO_WORKER=1 keeps the page from starting a worker."""
import math
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the pages import dashboard.py from the repository root

from floss_core import options  # noqa: E402
from floss_core.cli import main  # noqa: E402
from floss_core.store import Store  # noqa: E402

TIMEOUT = 120


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOSS_NO_WORKER", "1")
    path = tmp_path / "store" / "floss.db"
    monkeypatch.setenv("FLOSS_STORE", str(path))
    return path


def launch_page(**query) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    at.switch_page("pages/1_Launch.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def launch_button(at: AppTest):
    return next(b for b in at.button if b.label == "Launch")


def names_queued(path) -> list[str]:
    if not path.exists():
        return []
    with Store(path) as s:
        return list(s.experiments()["name"])


def text_of(at: AppTest) -> str:
    return " ".join(m.value for m in at.markdown)


def series_rows(n: int = 400) -> bytes:
    return ("a,b\n" + "\n".join(f"{math.sin(i / 5):.4f},{math.cos(i / 7):.4f}" for i in range(n))).encode()


# ------------------------------------------------------------------------------------ the Name field
def test_name_follows_the_form_until_typed(store):
    at = launch_page()
    name = at.text_input(key="launch:name")
    assert name.value == "xor quick: none vs pre"
    at.multiselect(key="quick:schedules").set_value(["none", "pre", "adaptive"]).run()
    assert at.text_input(key="launch:name").value == "xor quick: none vs pre vs adaptive"   # not the first default
    at.selectbox(key="quick:arch").set_value("gru")
    at.text_input(key="quick:delays").set_value("10, 40").run()
    assert at.text_input(key="launch:name").value == "xor quick, gru, d = 10, 40: none vs pre vs adaptive"
    at.radio[0].set_value("tiny").run()                       # a new size: its defaults, and its name
    assert at.text_input(key="launch:name").value == "xor tiny: none vs pre"
    launch_button(at).click().run()
    assert names_queued(store) == ["xor tiny: none vs pre"]   # the name shown is the name queued


def test_a_typed_name_stays_whatever_else_changes(store):
    at = launch_page()
    at.text_input(key="launch:name").set_value("my sweep").run()
    at.multiselect(key="quick:schedules").set_value(["none", "adaptive"])
    at.number_input(key="quick:hidden").set_value(16).run()
    assert at.text_input(key="launch:name").value == "my sweep"
    at.radio[0].set_value("tiny").run()
    assert at.text_input(key="launch:name").value == "my sweep"
    launch_button(at).click().run()
    assert names_queued(store) == ["my sweep"]
    at.text_input(key="launch:name").set_value("").run()      # emptied: the form's name again
    assert at.text_input(key="launch:name").value == "xor tiny: none vs pre"


def test_a_csv_task_is_named_after_its_file(store):
    at = launch_page(size="tiny")
    at.selectbox(key="tiny:task").set_value("csv").run()
    at.file_uploader[0].set_value(("sales 2024.csv", series_rows(), "text/csv")).run()
    assert not at.error, [e.value for e in at.error]
    assert at.text_input(key="launch:name").value == "csv tiny, sales_2024.csv: none vs pre"
    launch_button(at).click().run()
    assert names_queued(store) == ["csv tiny, sales_2024.csv: none vs pre"]


# ------------------------------------------------------------------------------------ numbers below their minimum
def test_numbers_below_their_minimum_disable_launch_and_say_why(store):
    at = launch_page()
    at.number_input(key="quick:seeds").set_value(0)
    at.number_input(key="quick:steps").set_value(0).run()
    assert [e.value for e in at.error] == ["'Seeds (networks per schedule)' must be at least 1, got 0",
                                           "'Training steps' must be at least 1, got 0"]
    assert at.number_input(key="quick:seeds").value == 0          # the field keeps what was typed
    assert launch_button(at).disabled
    assert "networks" not in text_of(at)                          # no summary of other values than the fields'
    assert names_queued(store) == []                              # nothing queued (a disabled button: no click)
    at.number_input(key="quick:seeds").set_value(3).run()
    assert [e.value for e in at.error] == ["'Training steps' must be at least 1, got 0"]
    at.number_input(key="quick:steps").set_value(100).run()
    assert not at.error and not launch_button(at).disabled
    assert "× 3 seeds × 1 delay, 100 training steps each" in text_of(at)   # the summary shows the fields' values
    launch_button(at).click().run()
    with Store(store) as s:
        config = s.experiments()["config"][0]
    assert len(config["seeds"]) == 3 and config["train"]["steps"] == 100


def test_every_page_number_is_checked_against_its_options_low(store):
    at = launch_page(size="tiny")
    checked = [o for o in options.PAGE if o.low is not None and o.kind in ("int", "float")
               and o.page in ("network", "flossing", "details")]
    assert {"seeds", "steps", "hidden", "k", "threshold", "weight"} <= {o.name for o in checked}
    for o in checked:
        widget = at.number_input(key="tiny:" + (o.key or o.name))
        before = widget.value
        widget.set_value(o.low - 1).run()
        assert any(e.value.startswith(f"'{o.label}' must be at least {o.low:g}") for e in at.error), o.name
        assert launch_button(at).disabled, o.name
        at.number_input(key="tiny:" + (o.key or o.name)).set_value(before).run()
    assert not at.error


# ------------------------------------------------------------------------------------ garbage uploads
GARBAGE = [  # (file name, bytes, words the message holds)
    ("data.csv", bytes(range(256)) * 8, "this file is not a CSV table: it holds binary data, not text"),
    ("photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200), "binary data (a PNG image), not text"),
    ("book.csv", b"PK\x03\x04" + bytes(100), "an Excel .xlsx workbook"),
    ("utf16.csv", "a,b\n1,2\n3,4\n".encode("utf-16"), "this file is UTF-16 text, not UTF-8; save it as UTF-8 CSV"),
    ("latin.csv", "café,b\n1,2\n3,4\n".encode("latin-1"), "this file is not UTF-8 text"),
    ("numbers.csv", b"1,2\n3,4\n5,6\n", "CSV has no header row"),
    ("empty.csv", b"", "CSV file is empty"),
    ("semi.csv", b"a;b\n1;2\n3;4\n", "separated by semicolons, not commas"),
    ("notes.csv", b"shopping list\nmilk\neggs\n", "this file has no column of numbers to forecast"),
    ("ragged.csv", b"a,b\n1,2\n3,4,5\n", "line 3 has 3 cells where the first line has 2"),
]


@pytest.mark.parametrize("filename, data, words", GARBAGE, ids=[g[0] for g in GARBAGE])
def test_a_garbage_upload_is_refused_in_the_users_words_and_not_kept(store, filename, data, words):
    at = launch_page(size="tiny")
    at.selectbox(key="tiny:task").set_value("csv").run()
    at.file_uploader[0].set_value((filename, data, "text/csv")).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert any(words in e for e in errors), errors
    for e in errors:            # never the server's path, never a codec's or parser's own words
        assert str(store.parent) not in e and "codec" not in e and "C error" not in e and "Errno" not in e, e
    assert launch_button(at).disabled
    uploads = store.parent / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())      # nothing refused is kept, no temporary file
    # the same name, now a good file: kept as before
    at.file_uploader[0].set_value((filename, series_rows(), "text/csv")).run()
    assert not at.error, [e.value for e in at.error]
    assert sorted(p.name for p in uploads.iterdir()) == [filename]


def test_a_refused_upload_leaves_an_earlier_good_file_of_that_name(store):
    at = launch_page(size="tiny")
    at.selectbox(key="tiny:task").set_value("csv").run()
    at.file_uploader[0].set_value(("s.csv", series_rows(), "text/csv")).run()
    launch_button(at).click().run()                            # queued: its file must stay
    at.file_uploader[0].set_value(("s.csv", b"\x89PNG\r\n\x1a\n" + bytes(50), "text/csv")).run()
    assert "binary data (a PNG image)" in at.error[0].value
    assert (store.parent / "uploads" / "s.csv").read_bytes() == series_rows()


# ------------------------------------------------------------------------------------ a delay beyond the sequence
def test_a_delay_beyond_the_sequence_names_what_the_page_can_change(store):
    at = launch_page()
    at.text_input(key="quick:delays").set_value("20, 60").run()
    errors = [e.value for e in at.error]
    assert errors == ["delay 60 does not fit: the quick size's sequences are 60 steps long; choose delays below 60, "
                      "or size paper (300 steps)"]
    assert launch_button(at).disabled and "seq_len" not in errors[0]
    at.text_input(key="quick:delays").set_value("0, 20").run()
    assert at.error[0].value == "'Delays d (comma-separated)' must be at least 1, got 0"
    at.radio[0].set_value("paper").run()
    at.text_input(key="paper:delays").set_value("20, 60").run()
    assert not at.error and not launch_button(at).disabled


def test_a_delay_beyond_the_sequence_names_the_command_lines_flags(capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare", "--delay", "20,60"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].endswith(
        "delay 60 does not fit in a sequence of 60 steps: choose delays below 60 (--delay), or a longer sequence "
        "(--seq-len above 60)")
    assert options.parse_command(["--delay", "60", "--seq-len", "61"]).task.seq_len == 61   # the flag it names
