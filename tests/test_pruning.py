from __future__ import annotations

import copy
import math

import pytest
import torch

import pai_bench
from pai_bench.errors import UserError
from pai_bench.masks import apply_masks, prunable_parameters
from pai_bench.method import ScoreMethod
from pai_bench.pruning import TIE_BREAK_WARNING_SHARE, integer_budgets, kept_count, prune, schedule, select, top_k, top_k_mask


def state_copy(model):
    return {name: value.clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("sparsity", [0.9, 0.99, 0.999, 0.9999])
@pytest.mark.parametrize("method, options", [("random", {}), ("random", {"scope": "layer"}), ("random", {"scope": "erk"}), ("magnitude", {})])
def test_exact_kept_count_on_resnet20(method, options, sparsity, cifar_batches):
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0)
    total = sum(p.numel() for p in prunable_parameters(model).values())
    result = pai_bench.prune(model, method, sparsity, cifar_batches, seed=0, **options)
    assert result.kept == round((1 - sparsity) * total)
    assert sum(int(mask.sum()) for mask in result.masks.values()) == result.kept
    assert result.total == total


def test_live_model_and_global_rng_untouched(cifar_batches):
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0)
    model.train()
    before = state_copy(model)
    rng_before = torch.get_rng_state()
    result = pai_bench.prune(model, "random", 0.99, cifar_batches, seed=3)
    assert torch.equal(torch.get_rng_state(), rng_before)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert model.training
    assert result.model is not model
    pruned = dict(result.model.named_parameters())
    for name, mask in result.masks.items():
        assert torch.all(pruned[name][~mask] == 0)
        assert torch.equal(pruned[name][mask], dict(model.named_parameters())[name][mask])


def test_same_seed_same_masks_other_seed_other_masks(cifar_batches):
    model = pai_bench.build_model("resnet20", num_classes=10, seed=0)
    first = pai_bench.prune(model, "random", 0.9, cifar_batches, seed=1).masks
    again = pai_bench.prune(model, "random", 0.9, cifar_batches, seed=1).masks
    other = pai_bench.prune(model, "random", 0.9, cifar_batches, seed=2).masks
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert any(not torch.equal(first[name], other[name]) for name in first)


def test_magnitude_keeps_largest_weights(tiny_net, batches):
    result = pai_bench.prune(tiny_net, "magnitude", 0.7, batches)
    params = prunable_parameters(tiny_net)
    kept = torch.cat([params[n].detach().abs()[m] for n, m in result.masks.items()])
    pruned = torch.cat([params[n].detach().abs()[~m] for n, m in result.masks.items()])
    assert kept.min() >= pruned.max()


def test_layer_scope_gives_each_layer_the_target_density(batches, tiny_net):
    result = pai_bench.prune(tiny_net, "random", 0.75, batches, scope="layer")
    for stat in result.layer_stats:
        assert abs(stat.kept - 0.25 * stat.total) <= 1


def test_erk_densities_follow_the_formula():
    from pai_bench.methods.random import erk_densities

    shapes = {"conv": torch.Size([64, 3, 3, 3]), "big": torch.Size([512, 512, 3, 3]), "fc": torch.Size([100, 512])}
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    densities = erk_densities(shapes, 0.05)
    kept = sum(densities[name] * sizes[name] for name in shapes)
    assert kept == pytest.approx(0.05 * sum(sizes.values()))
    assert densities["conv"] == 1.0  # the small first conv would exceed 1, so it is dense
    assert densities["fc"] < 1.0
    ratio = densities["big"] / densities["fc"]
    assert ratio == pytest.approx((sum(shapes["big"]) / sizes["big"]) / (sum(shapes["fc"]) / sizes["fc"]))


def test_top_k_without_a_generator_breaks_ties_by_lowest_index():
    scores = torch.tensor([1.0, 2.0, 2.0, 2.0, 0.5, float("nan")])
    assert top_k_mask(scores, 3).tolist() == [False, True, True, True, False, False]
    assert top_k_mask(scores, 2).tolist() == [False, True, True, False, False, False]
    assert top_k_mask(torch.zeros(5), 2).tolist() == [True, True, False, False, False]
    assert int(top_k_mask(torch.zeros(5), 0).sum()) == 0


def test_top_k_draws_tied_entries_with_the_generator():
    scores = torch.cat([torch.full((3,), 5.0), torch.zeros(1000)])

    def kept(seed: int) -> torch.Tensor:
        return top_k_mask(scores, 53, torch.Generator().manual_seed(seed))

    first = kept(0)
    assert int(first.sum()) == 53 and first[:3].all()  # the three above the tie always
    assert torch.equal(first, kept(0)) and not torch.equal(first, kept(1))
    drawn = torch.nonzero(first[3:]).flatten()
    assert drawn.max() > 500  # not the lowest indices: spread over the tie
    assert torch.equal(top_k_mask(scores, 53)[3:53], torch.ones(50, dtype=torch.bool))  # no generator: lowest


def test_top_k_counts_the_picks_the_tie_break_made():
    scores = torch.tensor([3.0, 2.0, 2.0, 2.0, 0.5])
    straddling = top_k(scores, 2)  # 3.0 by its score, then one of the three 2.0s
    assert (straddling.arbitrary, straddling.tied) == (1, 3)
    inside = top_k(scores, 4)  # all three 2.0s fit: the scores decided
    assert (inside.arbitrary, inside.tied) == (0, 0)
    assert top_k(torch.zeros(10), 4).arbitrary == 4


class ConstantMethod(ScoreMethod):
    """Scores every weight alike from the second round on, as a method whose signal vanished."""

    name = "constant-later"

    def rounds(self) -> int:
        return 4

    def score(self, model, masks, batches, generator):
        self.calls = getattr(self, "calls", 0) + 1
        params = dict(model.named_parameters())
        if self.calls == 1:
            return {name: params[name].detach().abs() for name in masks}
        return {name: torch.zeros(mask.shape) for name, mask in masks.items()}


def test_rounds_decided_by_the_tie_break_are_reported_and_warned(tiny_net, batches):
    with pytest.warns(RuntimeWarning, match=r"constant-later: in round \d of 4, .* weights of equal score"):
        result = pai_bench.prune(tiny_net, ConstantMethod(), 0.9, batches)
    ties = result.tie_break
    assert ties is not None and ties.rounds_affected == 3
    # In rounds 2-4 every kept weight is a pick among the survivors of round 1, all scored 0.
    counts = schedule(result.total, 0.9, 4)
    assert ties.arbitrary == ties.kept == counts[ties.round - 1]
    assert ties.tied == counts[ties.round - 2]
    assert ties.share == 1.0 > TIE_BREAK_WARNING_SHARE


def test_a_round_of_equal_scores_keeps_a_random_mask_not_the_first_layers(tiny_net, batches):
    """Parameter order would keep the first layers whole and empty the last ones; the seeded
    draw spreads the kept weights over every layer, and the same seed repeats it."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = pai_bench.prune(tiny_net, ConstantMethod(), 0.9, batches, seed=3)
        again = pai_bench.prune(tiny_net, ConstantMethod(), 0.9, batches, seed=3)
    assert all(stat.kept > 0 for stat in result.layer_stats), [(s.name, s.kept) for s in result.layer_stats]
    assert all(torch.equal(result.masks[name], again.masks[name]) for name in result.masks)


def test_masks_chosen_by_distinct_scores_have_no_tie_break(tiny_net, batches):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        result = pai_bench.prune(tiny_net, "magnitude", 0.9, batches)
    assert result.tie_break is None


def test_schedule_is_exponential_and_ends_exact():
    counts = schedule(1000, 0.99, 4)
    assert counts == [round(1000 * 0.01 ** (r / 4)) for r in (1, 2, 3)] + [10]
    assert schedule(1001, 0.5, 1) == [kept_count(1001, 0.5)] == [500]


def test_integer_budgets_sum_exactly_and_respect_sizes():
    sizes = {"a": 7, "b": 100, "c": 3}
    budgets = integer_budgets(sizes, {"a": 0.33, "b": 0.33, "c": 1.0}, 39)
    assert sum(budgets.values()) == 39
    assert budgets["c"] == 3
    assert all(0 <= budgets[n] <= sizes[n] for n in sizes)


class ReviveMethod(ScoreMethod):
    """Scores pruned (zeroed) weights highest: the driver must still never revive them."""

    name = "revive"

    def rounds(self) -> int:
        return 3

    def score(self, model, masks, batches, generator):
        params = dict(model.named_parameters())
        return {name: -params[name].detach().abs() + torch.rand(mask.shape, generator=generator) * 1e-3 for name, mask in masks.items()}


def test_pruned_weights_stay_pruned_across_rounds(tiny_net, batches):
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in prunable_parameters(tiny_net).items()}
    scores = {n: torch.arange(m.numel(), dtype=torch.float).view_as(m) for n, m in masks.items()}
    first = select(scores, masks, 50).masks
    reversed_scores = {n: -s for n, s in scores.items()}
    second = select(reversed_scores, first, 20).masks
    assert all(torch.all(second[n] <= first[n]) for n in masks)
    result = pai_bench.prune(tiny_net, ReviveMethod(), 0.9, batches)
    assert result.rounds == 3
    assert result.kept == kept_count(result.total, 0.9)


@pytest.mark.parametrize("sparsity", [-0.1, 1.0, 1.5])
def test_sparsity_outside_range_is_a_user_error(sparsity, tiny_net, batches):
    with pytest.raises(UserError, match=str(sparsity)):
        pai_bench.prune(tiny_net, "random", sparsity, batches)


def test_unknown_method_and_option_name_the_choices(tiny_net, batches):
    with pytest.raises(UserError, match="valid choices: .*magnitude"):
        pai_bench.prune(tiny_net, "nope", 0.5, batches)
    with pytest.raises(UserError, match="random.rounds.*valid options of random: scope"):
        pai_bench.prune(tiny_net, "random", 0.5, batches, rounds=3)
    with pytest.raises(UserError, match="'everywhere'.*global, layer, erk"):
        pai_bench.prune(tiny_net, "random", 0.5, batches, scope="everywhere")


def test_a_suite_s_variant_by_name_is_its_base_method_with_its_options(tiny_net, batches):
    from pai_bench.config import load_config

    variants = load_config("quickstart").variants  # snip-train: {method: snip, bn_mode: train}
    by_name = pai_bench.prune(tiny_net, "snip-train", 0.5, batches, variants=variants)
    by_options = pai_bench.prune(tiny_net, "snip", 0.5, batches, bn_mode="train")
    eval_mode = pai_bench.prune(tiny_net, "snip", 0.5, batches)
    assert (by_name.method, by_name.options["bn_mode"]) == ("snip", "train")
    assert all(torch.equal(by_name.masks[n], by_options.masks[n]) for n in by_name.masks)
    assert any(not torch.equal(by_name.masks[n], eval_mode.masks[n]) for n in by_name.masks)  # BatchNorm's mode matters here
    # Keywords win over the variant's options.
    overridden = pai_bench.prune(tiny_net, "snip-train", 0.5, batches, variants=variants, bn_mode="eval")
    assert all(torch.equal(overridden.masks[n], eval_mode.masks[n]) for n in eval_mode.masks)
    with pytest.raises(UserError, match="unknown method 'snip-trian'; valid choices: .*snip-train"):
        pai_bench.prune(tiny_net, "snip-trian", 0.5, batches, variants=variants)


def test_dense_only_at_zero_sparsity(tiny_net, batches):
    assert pai_bench.prune(tiny_net, "dense", 0.0, batches).kept == sum(p.numel() for p in prunable_parameters(tiny_net).values())
    with pytest.raises(UserError, match="dense"):
        pai_bench.prune(tiny_net, "dense", 0.5, batches)


def test_excluded_layers_stay_dense(tiny_net, batches):
    result = pai_bench.prune(tiny_net, "magnitude", 0.9, batches, exclude=["fc.weight"])
    assert "fc.weight" not in result.masks
    assert torch.equal(result.model.fc.weight, tiny_net.fc.weight)


@pytest.mark.parametrize("data", [None, 3, "batches"])
def test_pruning_data_that_is_not_batches_is_a_user_error(tiny_net, data):
    with pytest.raises(UserError, match=r"prune\('snip'\) got data=.*: pass the pruning data, an iterable of \(inputs, targets\) batches"):
        prune(tiny_net, "snip", 0.9, data)


def test_a_sparsity_that_keeps_no_weight_is_a_user_error(tiny_net, batches):
    total = sum(p.numel() for name, p in tiny_net.named_parameters() if name.endswith("weight") and "bn" not in name)
    prune(tiny_net, "magnitude", 1 - 1 / total, batches)  # one weight: a (tiny) network still
    with pytest.raises(UserError, match=rf"keeps round\(\(1 - s\) \* N\) = 0 of the N = {total:,} prunable weights"):
        prune(tiny_net, "magnitude", 1 - 0.4 / total, batches)



class HandedRecorder(ScoreMethod):
    """A method of `ROUNDS` rounds that keeps, in `seen`, what each round was handed."""

    ROUNDS = 1

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def rounds(self) -> int:
        return self.ROUNDS


class ScribblingMethod(HandedRecorder):
    """A `reuses_copy` method that changes its copy as far as the contract allows (values,
    dtype, requires_grad, mode) and records what each round was handed."""

    name = "scribbling"
    reuses_copy = True
    ROUNDS = 4

    def score(self, model, masks, batches, generator):
        params = dict(model.named_parameters())
        self.seen.append(
            (
                {name: params[name].detach().clone() for name in masks},
                {name: buffer.clone() for name, buffer in model.named_buffers()},
                [module.training for module in model.modules()],
                {name: param.requires_grad for name, param in params.items()},
                id(model),
            )
        )
        scores = {name: params[name].detach().abs().float() + 1e-6 * torch.arange(mask.numel()).view_as(mask) for name, mask in masks.items()}
        model.double().eval()
        with torch.no_grad():
            for tensor in model.state_dict(keep_vars=True).values():
                tensor.add_(1)
        for param in model.parameters():
            param.requires_grad_(False)
        return scores


def test_a_method_that_reuses_its_copy_sees_the_network_masked_each_round(tiny_net, batches):
    """One deep copy for all rounds, yet each round starts from the network's values (masked
    by the masks so far), buffers, requires_grad and mode, whatever the last round did."""
    with torch.no_grad():
        for module in tiny_net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    tiny_net.train()
    next(tiny_net.parameters()).requires_grad_(False)
    method = ScribblingMethod()
    result = prune(tiny_net, method, 0.9, batches)
    params, buffers = dict(tiny_net.named_parameters()), dict(tiny_net.named_buffers())
    assert len(method.seen) == 4 and len({seen[4] for seen in method.seen}) == 1
    masks = {name: torch.ones_like(params[name], dtype=torch.bool) for name in result.masks}
    fresh = ScribblingMethod()
    for index, (weights, seen_buffers, modes, requires_grad, _) in enumerate(method.seen):
        assert all(torch.equal(weights[name], (params[name] * masks[name]).to(weights[name].dtype)) for name in masks)
        assert all(torch.equal(seen_buffers[name], buffers[name].to(seen_buffers[name].dtype)) for name in buffers)
        assert modes == [module.training for module in tiny_net.modules()]
        assert requires_grad == {name: param.requires_grad for name, param in params.items()}
        masks = select(fresh.score(_masked_copy(tiny_net, masks), masks, batches, None), masks, schedule(result.total, 0.9, 4)[index]).masks
    assert all(torch.equal(masks[name], result.masks[name]) for name in masks)


def _masked_copy(model, masks):
    working = copy.deepcopy(model)
    apply_masks(working, masks)
    return working


def test_global_selection_ranks_only_the_weights_still_kept():
    """A pruned weight with the highest score stays pruned, NaN ranks below every number, and
    a round cannot ask for more weights than are still kept."""
    masks = {"a": torch.tensor([True, False, True, True]), "b": torch.tensor([False, True, True])}
    scores = {"a": torch.tensor([1.0, 9.0, float("nan"), 3.0]), "b": torch.tensor([8.0, 2.0, 0.5])}
    chosen = select(scores, masks, 3).masks
    assert chosen["a"].tolist() == [True, False, False, True] and chosen["b"].tolist() == [False, True, False]
    with pytest.raises(ValueError, match="keep 6 weights but only 5"):
        select(scores, masks, 6)


class ReadingMethod(HandedRecorder):
    """A `reads_only` method that records the network each round is handed."""

    name = "reading"
    reads_only = True
    ROUNDS = 2

    def score(self, model, masks, batches, generator):
        params = dict(model.named_parameters())
        self.seen.append((model, {name: params[name].detach().clone() for name in masks}))
        return {name: params[name].detach().abs() for name in masks}


def test_a_read_only_method_scores_the_network_itself_only_while_every_weight_is_kept(tiny_net, batches):
    method = ReadingMethod()
    result = prune(tiny_net, method, 0.5, batches)
    (first, _), (second, seen) = method.seen
    assert first is tiny_net and second is not tiny_net
    halfway = schedule(result.total, 0.5, 2)[0]
    params = dict(tiny_net.named_parameters())
    assert sum(int((weights != 0).sum()) for weights in seen.values()) == halfway
    assert all(torch.equal(seen[name], params[name] * (seen[name] != 0)) for name in seen)
