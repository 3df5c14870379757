"""Two Ray nodes on one machine (`ray.cluster_utils.Cluster`): a suite joins the running
cluster through `ray.address`, as `ray.address=auto` joins one that `ray start` began, and its
trials land on both nodes."""

from __future__ import annotations

import pytest
import ray
from quick_trials import SMALL
from ray.cluster_utils import Cluster

from pai_bench.config import load_config
from pai_bench.runner import run_suite
from pai_bench.store import ResultStore


@pytest.fixture(scope="module")
def two_nodes():
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": 100 * 2**20})
    cluster.add_node(num_cpus=1, object_store_memory=100 * 2**20)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def test_trials_land_on_both_nodes_of_a_joined_cluster(two_nodes, tmp_path):
    # One CPU per node and one per trial: two trials at a time, necessarily one on each node.
    # Three epochs each: long enough that the first node cannot finish all four trials while
    # the second node's worker is still starting on a busy machine.
    overrides = [*SMALL[1:], "methods=[random,magnitude]", "sparsities=[0.5,0.9]", "train.epochs=3", "executor=tune", "resources.cpu=1"]
    config = load_config("quickstart", [*overrides, f"ray.address={two_nodes.address}", f"out={tmp_path}"])
    summary = run_suite(config, progress=False)
    assert summary.counts == {"done": 4}
    records = ResultStore(tmp_path).records()
    nodes = {node.node_id for node in two_nodes.list_all_nodes()}
    assert {record["runner"]["node"] for record in records} == nodes and len(nodes) == 2
    assert not ray.is_initialized()  # the run disconnected; the cluster runs on
