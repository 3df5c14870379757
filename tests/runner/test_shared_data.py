"""Datasets go through Ray's object store as arrays a trial maps without copying."""

from __future__ import annotations

import pytest
import ray
import torch

from pai_bench.runner.shared_data import share, unshare


@pytest.fixture(scope="module")
def ray_session():
    ray.init(address="local", num_cpus=1, object_store_memory=100 * 2**20, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


@ray.remote
def seen_by_a_worker(shared):
    """What a trial process gets: the dataset, and whether its images were copied out of the
    object store (a mapped array is read-only; a private copy would be writable)."""
    dataset = unshare(shared)
    return dataset, shared.arrays["train_images"].flags.writeable


def test_a_worker_sees_the_same_dataset_mapped_not_copied(ray_session, quickstart):
    dataset, writable = ray.get(seen_by_a_worker.remote(ray.put(share(quickstart))))
    assert not writable
    for split in ("train", "test"):
        mine, theirs = getattr(quickstart, split), getattr(dataset, split)
        assert torch.equal(mine.images, theirs.images) and torch.equal(mine.labels, theirs.labels)
        assert theirs.images.dtype == torch.uint8 and theirs.labels.dtype == torch.int64
    assert (dataset.name, dataset.classes, dataset.mean, dataset.std) == (quickstart.name, quickstart.classes, quickstart.mean, quickstart.std)
    subset = dataset.train.subset(torch.arange(5))  # indexing copies: the trial's data is its own
    subset.images.add_(1)
    assert torch.equal(dataset.train.images[:5], quickstart.train.images[:5])
