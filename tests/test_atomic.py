"""Files written whole or not at all."""

from __future__ import annotations

import pytest

from pai_bench.atomic import atomic_write, is_partial_write, remove_partial_writes


def test_the_file_appears_whole_when_the_block_ends(tmp_path):
    path = tmp_path / "deep" / "record.json"
    with atomic_write(path) as stream:
        stream.write("{}")
        assert not path.exists()
        [partial] = path.parent.iterdir()
        assert is_partial_write(partial) and partial.suffix == ".json"
    assert path.read_text() == "{}" and list(path.parent.iterdir()) == [path]


def test_an_error_mid_write_keeps_the_previous_file_and_leaves_nothing(tmp_path):
    path = tmp_path / "state.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_write(path, "wb") as stream:
        stream.write(b"ne")
        raise RuntimeError("disk full")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]


def test_remove_partial_writes_deletes_only_what_killed_writes_left(tmp_path):
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / ".tmp-x1.json").write_text('{"key"')  # a write SIGKILL cut short
    (tmp_path / ".tmp-x2.pt").write_bytes(b"\x80")
    remove_partial_writes(tmp_path)
    assert [path.name for path in tmp_path.iterdir()] == ["a.json"]
    remove_partial_writes(tmp_path / "absent")  # a run's first start: no folder yet
