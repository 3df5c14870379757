"""imp's options and its place among the methods: a trajectory method, not a pruner at init."""

from __future__ import annotations

import pytest

from pai_bench import prune
from pai_bench.errors import UserError
from pai_bench.plugins import create_method, resolve_options


def test_rewind_reads_init_or_a_number_of_epochs():
    assert resolve_options("imp").rewind == "init"
    assert resolve_options("imp", {"rewind": 3}).rewind == "3"
    assert resolve_options("imp", {"rewind": "2ep"}).rewind == "2"
    assert resolve_options("imp", {"rewind": 0}).rewind == "init"  # the same run, the same key
    assert create_method("imp", {"rewind": 5}).rewind_epoch() == 5
    assert create_method("imp").rewind_epoch() == 0


@pytest.mark.parametrize("options, message", [({"rewind": "late"}, "imp.rewind='late'"), ({"fraction": 1.0}, "imp.fraction=1.0")])
def test_bad_options_are_one_line_user_errors(options, message):
    with pytest.raises(UserError, match=message) as caught:
        resolve_options("imp", options)
    assert "\n" not in str(caught.value)


def test_the_plan_follows_the_fraction():
    assert create_method("imp", {"fraction": 0.5}).plan([0.75]) == {0.75: [0.5, 0.25]}


def test_imp_is_not_a_pruner_at_initialisation(tiny_net, batches):
    with pytest.raises(UserError, match="imp trains inside pruning"):
        prune(tiny_net, "imp", 0.5, batches)
