"""The one check for file paths a user names: refuse what cannot work, create only in our folder."""

from __future__ import annotations

import pytest

from btccxt_cli.errors import ConfigError
from btccxt_cli.paths import check_output_file, data_dir


def test_existing_folder_is_fine(tmp_path):
    assert check_output_file(tmp_path / "x.jsonl", what="events file", option="--events") == tmp_path / "x.jsonl"


def test_missing_parent_outside_data_dir_is_refused_and_not_created(tmp_path):
    target = tmp_path / "nope" / "deeper" / "x.jsonl"
    with pytest.raises(ConfigError) as err:
        check_output_file(target, what="events file", option="--events")
    msg = str(err.value)
    assert "--events" in msg and "does not exist" in msg and "mkdir -p" in msg
    assert not (tmp_path / "nope").exists()


def test_folder_given_for_a_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="is a folder"):
        check_output_file(tmp_path, what="log file", option="logging.file", file="c.yaml", line=7)


def test_config_location_is_named(tmp_path):
    with pytest.raises(ConfigError) as err:
        check_output_file(tmp_path / "a" / "b.log", what="log file", option="logging.file",
                          file="c.yaml", line=7)
    assert str(err.value).startswith("c.yaml:7: logging.file: ")


def test_parent_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        check_output_file(tmp_path / "f" / "x.db", what="orders database", option="--db")


def test_missing_parent_inside_data_dir_is_created(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    target = data_dir() / "sub" / "ohlcv.sqlite"
    assert check_output_file(target, what="cache", option="feed.cache") == target
    assert target.parent.is_dir()


def test_explicit_create_in(tmp_path):
    target = tmp_path / "runs" / "a" / "x.jsonl"
    check_output_file(target, what="events file", option="--events", create_in=(tmp_path / "runs",))
    assert target.parent.is_dir()
