"""Deterministic class-balanced and stratified subsets."""

from __future__ import annotations

import pytest
import torch

from pai_bench.data import ImageSet, class_balanced_indices, stratified_subset
from pai_bench.errors import UserError

# 3 classes, interleaved, 12 / 8 / 5 examples.
LABELS = torch.tensor([0, 1, 2, 0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 0, 1, 0, 0, 1, 2, 0, 1, 0, 2, 1, 0])


def test_class_balanced_picks_per_class_grouped() -> None:
    indices = class_balanced_indices(LABELS, per_class=4, seed=3)
    assert indices.dtype == torch.int64
    assert LABELS[indices].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert len(set(indices.tolist())) == 12


def test_class_balanced_is_seeded() -> None:
    same = class_balanced_indices(LABELS, 4, seed=3)
    assert torch.equal(same, class_balanced_indices(LABELS, 4, seed=3))
    assert not torch.equal(same, class_balanced_indices(LABELS, 4, seed=4))
    # Draw order: asking for fewer gives a prefix of every class's draw.
    fewer = class_balanced_indices(LABELS, 2, seed=3)
    assert fewer.tolist() == same.view(3, 4)[:, :2].flatten().tolist()


def test_class_balanced_draws_are_random_within_class() -> None:
    # Over many seeds every example of class 2 (5 of them) is sometimes picked for 1 slot.
    picked = {int(class_balanced_indices(LABELS, 1, seed=s)[2]) for s in range(60)}
    assert picked == set((LABELS == 2).nonzero().flatten().tolist())


def test_class_balanced_too_few_names_class_and_counts() -> None:
    with pytest.raises(UserError, match="need 6 examples of every class but class 2 has 5"):
        class_balanced_indices(LABELS, 6, seed=0)
    # A class index with no examples at all counts as too few.
    with pytest.raises(UserError, match="class 1 has 0"):
        class_balanced_indices(torch.tensor([0, 0, 2, 2]), 1, seed=0)


def test_stratified_keeps_proportions() -> None:
    shuffle = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)[shuffle]
    indices = stratified_subset(labels, 10, seed=1)
    assert torch.bincount(labels[indices]).tolist() == [6, 3, 1]
    assert indices.tolist() == sorted(set(indices.tolist()))
    assert torch.equal(indices, stratified_subset(labels, 10, seed=1))
    assert not torch.equal(indices, stratified_subset(labels, 10, seed=2))
    # Largest remainder: 12 * (.6, .3, .1) = 7.2, 3.6, 1.2 -> 7, 4, 1.
    assert torch.bincount(labels[stratified_subset(labels, 12, seed=1)]).tolist() == [7, 4, 1]


def test_stratified_gives_every_class_one() -> None:
    labels = torch.tensor([0] * 97 + [1] * 2 + [2])
    assert torch.bincount(labels[stratified_subset(labels, 5, seed=0)]).tolist() == [3, 1, 1]
    assert torch.bincount(labels[stratified_subset(labels, 3, seed=0)]).tolist() == [1, 1, 1]


def test_stratified_size_is_exact() -> None:
    generator = torch.Generator().manual_seed(0)
    for trial in range(50):
        labels = torch.randint(
            0, 7, (int(torch.randint(7, 300, (1,), generator=generator)),), generator=generator
        )
        size = int(torch.randint(len(labels.unique()), len(labels), (1,), generator=generator))
        indices = stratified_subset(labels, size, seed=trial)
        assert len(indices) == len(set(indices.tolist())) == size
        assert set(labels[indices].tolist()) == set(labels.tolist())


def test_stratified_edges() -> None:
    assert torch.equal(stratified_subset(LABELS, 25, seed=0), torch.arange(25))
    assert torch.equal(stratified_subset(LABELS, 1000, seed=0), torch.arange(25))
    with pytest.raises(UserError, match="cannot hold all 3 classes"):
        stratified_subset(LABELS, 2, seed=0)


def test_imageset_subset() -> None:
    images = torch.arange(5, dtype=torch.uint8).view(5, 1, 1, 1).expand(5, 3, 2, 2).contiguous()
    subset = ImageSet(images, torch.arange(5)).subset(torch.tensor([4, 1]))
    assert subset.labels.tolist() == [4, 1]
    assert subset.images[:, 0, 0, 0].tolist() == [4, 1]
    assert len(subset) == 2
