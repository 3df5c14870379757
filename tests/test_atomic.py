"""Files written whole or not at all."""

from __future__ import annotations

import os
import stat

import pytest

from pai_bench.atomic import atomic_write, current_umask, is_partial_write, remove_partial_writes


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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_the_file_is_as_readable_as_the_umask_allows(tmp_path, umask, mode):
    """mkstemp's private 0600 would hide records from a team on shared storage."""
    previous = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_write(tmp_path / "record.json") as stream:
            stream.write("{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "record.json").stat().st_mode) == mode

