"""Publishing a page with its records, and regenerating it from them (`pai_bench.publish`)."""

from __future__ import annotations

import json

import pytest

from pai_bench.cli import main
from pai_bench.config import load_config
from pai_bench.runner import run_suite
from tests.test_cli import run_cli

PRUNE_ONLY = ["train.epochs=0", "methods=[dense,random,magnitude]", "sparsities=[0.5,0.9]", "seeds=2", "executor=local"]
CUT = "cuts=[{rows: [magnitude], sparsities: [0.9], seeds: 1, why: a test}]"


@pytest.fixture
def run_dir(tmp_path):
    out = tmp_path / "run"
    run_suite(load_config("quickstart", [*PRUNE_ONLY, CUT, f"out={out}"]), progress=False)
    # a record of an earlier protocol, outside the grid: not the page's, so not published
    stale = dict(json.loads(next((out / "trials").glob("*.json")).read_text()), key="0123456789abcdef")
    (out / "trials" / "0123456789abcdef.json").write_text(json.dumps(stale))
    return out


def test_a_page_regenerates_from_its_published_records(run_dir, tmp_path, capsys):
    page, archive = tmp_path / "published" / "init.md", tmp_path / "published" / "init.records.tar.xz"
    assert main(["leaderboard", str(run_dir), f"out={page}", f"records={archive}"]) == 0
    assert f"wrote {archive} (7 trial records and the grid)" in capsys.readouterr().out
    published = page.read_text()
    assert "Cut to fit: magnitude: only sparsity 90 % and seed 0 (a test)." in published
    assert "Trials ran on " in published and "logical CPUs" in published
    page.unlink()
    assert main(["leaderboard", str(archive)]) == 0  # NAME.md beside NAME.records.tar.xz
    assert page.read_text() == published


def test_packing_the_same_records_twice_gives_the_same_bytes(run_dir, tmp_path):
    first, second = tmp_path / "a.records.tar.xz", tmp_path / "b.records.tar.xz"
    assert main(["leaderboard", str(run_dir), f"out={tmp_path / 'a.md'}", f"records={first}"]) == 0
    assert main(["leaderboard", str(run_dir), f"out={tmp_path / 'b.md'}", f"records={second}"]) == 0
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("broken.records.tar.xz", b"not xz", "cannot read the records archive"),
        ("notes.txt", b"hello", "is neither a run folder nor a records archive (.tar.xz, .tar.gz, .tgz)"),
    ],
)
def test_a_file_that_is_not_a_records_archive_is_one_line_and_exit_2(tmp_path, name, content, fragment):
    path = tmp_path / name
    path.write_bytes(content)
    result = run_cli("leaderboard", str(path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert fragment in line


def test_records_must_be_packed_as_tar_xz(run_dir, tmp_path):
    result = run_cli("leaderboard", str(run_dir), f"out={tmp_path / 'p.md'}", f"records={tmp_path / 'p.zip'}")
    assert result.returncode == 2 and "must name a .tar.xz archive" in result.stderr
