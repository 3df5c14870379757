from __future__ import annotations

import json

from pai_bench.store import ResultStore


def test_write_read_and_final_statuses(tmp_path):
    store = ResultStore(tmp_path)
    store.write({"key": "a", "status": "done", "test_acc": 91.5})
    store.write({"key": "b", "status": "failed", "error": "boom"})
    store.write({"key": "c", "status": "diverged"})
    assert store.read("a")["test_acc"] == 91.5
    assert [store.is_final(k) for k in "abcd"] == [True, False, True, False]
    assert sorted(r["key"] for r in store.records()) == ["a", "b", "c"]
    assert not list(store.trials.glob(".tmp-*"))


def test_overwrite_is_atomic_replacement(tmp_path):
    store = ResultStore(tmp_path)
    store.write({"key": "a", "status": "running"})
    store.write({"key": "a", "status": "done"})
    assert json.loads(store.path("a").read_text())["status"] == "done"
    assert len(list(store.trials.iterdir())) == 1


def test_corrupt_record_is_reported_and_not_final(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.write({"key": "good", "status": "done"})
    store.path("bad").write_text('{"key": "bad", "status": "do')
    store.path("odd").write_text("[1, 2]")
    assert not store.is_final("bad")
    assert [r["key"] for r in store.records()] == ["good"]
    assert "corrupt record" in capsys.readouterr().err


def test_a_corrupt_record_is_reported_once_until_it_changes(tmp_path, capsys):
    store = ResultStore(tmp_path)
    store.path("bad").parent.mkdir(parents=True)
    store.path("bad").write_text("{not json")
    for _ in range(3):  # what to run, the progress, the reports: one warning
        store.read("bad")
        store.records()
    assert capsys.readouterr().err.count("corrupt record") == 1
    store.path("bad").write_text("{still not json, longer")
    store.read("bad")
    assert capsys.readouterr().err.count("corrupt record") == 1


def test_a_killed_write_is_not_a_record(tmp_path):
    store = ResultStore(tmp_path)
    store.write({"key": "a", "status": "done"})
    (store.trials / ".tmp-killed.json").write_text('{"key": "b", "status": "done"}')  # never renamed
    assert [r["key"] for r in store.records()] == ["a"] and store.read("b") is None
