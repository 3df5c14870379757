"""run_suite as a whole: what it does around the executor."""

from __future__ import annotations

from quick_trials import SMALL

from pai_bench.config import load_config
from pai_bench.runner import run_suite
from pai_bench.store import ResultStore


def test_a_run_deletes_what_a_killed_run_was_writing(tmp_path):
    killed = {tmp_path / "trials" / ".tmp-k1.json": "{\"key\": \"x\", \"sta", tmp_path / "checkpoints" / ".tmp-k2.pt": "\x80\x02"}
    for path, text in killed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    summary = run_suite(load_config("quickstart", [*SMALL[1:], f"out={tmp_path}"]), progress=False)
    assert summary.counts["done"] == 1
    assert not any(path.exists() for path in killed)
    assert [record["status"] for record in ResultStore(tmp_path).records()] == ["done"]
