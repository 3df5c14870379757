"""PHEW (Patil & Dovrolis, ICML 2021): paths with higher edge weights, data-free.

Random walks on the network's unit graph keep every weight they cross. As in the authors'
`Prune/phew_utils.py`, walks alternate forward (from the input channels, round robin) and
backward (from the output classes, round robin); each step picks the next unit with
probability ∝ the unit strength P[i, j] = Σ|W[i, j, :, :]| (normalised over the units it may
go to) and then a kernel position ∝ |W[i, j, :, :]|; a linear layer after a flatten goes to a
random spatial slot of the chosen channel (the authors' conv-to-linear rule; our models pool
globally first, so there is one slot and channel c is `fc` input c). At a residual block a walk
takes the 1x1 shortcut or the convolutions with probability 1/2 each (forward: from the
block's input; backward: from its output). The authors' forward walk makes that choice one
layer early (at the previous block's second convolution, which the shortcut branch then skips:
an indexing slip in `phew_masks`); here both directions follow the network. The authors' code
never takes identity shortcuts (their networks give them no weights); `identity_shortcuts=true`
lets walks take them too, with the same 1/2.

The graph is not hand-written per model: the copy is traced with torch.fx and every conv or
linear call becomes an edge between two "unit nodes", BatchNorm, activations, pooling and
flatten are transparent, and an addition merges its inputs (a branch that only feeds the
addition is folded into it, so what remains are the real shortcuts). Concatenation, grouped
convolutions and anything else raise a UserError naming the operation.

Fitting the driver: the walks are a sequence, and the score of a weight is minus the position
at which it was first crossed (never crossed: -inf), so the driver's exact top-k keeps the
first K distinct weights. K is `target_kept`, which the driver sets before `score`. The authors
stop after the walk that reaches K (overshooting by up to a walk); pai-bench keeps exactly K:
whole walks are kept while they fit, and the remaining r < (that walk's new weights) are drawn
∝ |W| without replacement among the weights whose both ends already lie on a kept walk, so each
of them lies on an input-to-output path of kept weights (`last_walk=close`, the default).
`last_walk=truncate` keeps the first r weights of the next walk instead (the plain "first K
visited"; they can dangle). When no closing weights exist (K smaller than one walk, say) the
remainder is truncated.

Walks are sampled in batches (64 forward and 64 backward, doubling up to 4096 each), all walks
of a batch stepping through the unit nodes together in topological order, on the CPU with a
generator seeded from the driver's. The batch sizes do not depend on K, so for one seed the
walk sequence is the same at every sparsity: the whole-walk part of the masks is nested.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from pai_bench.errors import UserError
from pai_bench.method import ScoreMethod, check_choice
from pai_bench.plugins import register_method

LAST_WALK = ("close", "truncate")

# Modules and functions that act on each channel separately (or only on the spatial dims):
# a walk passes through them on the same unit.
_TRANSPARENT_MODULES = (
    nn.modules.batchnorm._BatchNorm,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.GELU,
    nn.SiLU,
    nn.Sigmoid,
    nn.Tanh,
    nn.Identity,
    nn.Flatten,
)
_TRANSPARENT_CALLS = {
    "relu", "relu_", "relu6", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh",
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "dropout", "dropout2d", "flatten", "view", "reshape", "contiguous", "batch_norm",
}  # fmt: skip
_ADD_CALLS = {"add", "add_", "iadd", "__add__", "__iadd__"}
_NON_TENSOR_CALLS = {"size", "dim", "getattr", "getitem"}


@dataclass
class PhewOptions:
    identity_shortcuts: bool = False  # walks may also take identity shortcuts (not the authors')
    last_walk: str = "close"  # close | truncate: how the last, partly needed walk is cut to K

    def __post_init__(self) -> None:
        check_choice("phew.last_walk", self.last_walk, LAST_WALK)


@register_method("phew")
class Phew(ScoreMethod):
    """Score = minus the position at which the walks first cross a weight; one-shot."""

    Options = PhewOptions

    def score(self, model, masks, batches, generator):
        keep = int(getattr(self, "target_kept", 0) or 0)
        if keep <= 0:
            raise UserError("phew needs target_kept (the number of weights to keep), which the driver sets")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        cpu_generator = torch.Generator().manual_seed(seed)
        # Many small tensor ops: one thread is several times faster than contended ones.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            graph = build_graph(model, masks)
            if keep > graph.countable:
                raise UserError(f"phew: cannot keep {keep} weights, only {graph.countable} are unpruned")
            order = visit_order(graph, keep, cpu_generator, self.options.identity_shortcuts, self.options.last_walk)
            return graph.scores(order, masks)
        finally:
            torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# The unit graph


@dataclass
class Edge:
    """A prunable layer from unit node `src` to unit node `dst` (or an identity shortcut)."""

    src: int
    dst: int
    name: str | None = None  # parameter name; None for an identity shortcut
    offset: int = 0  # start of this weight in the flat index over all weights
    slots: int = 1  # inputs per source unit (a linear layer after a flatten of C x H x W)
    counted: torch.Tensor | None = None  # flat bool: unpruned and in `masks` (None: not scored)
    abs_weight: torch.Tensor | None = None  # |W| as (out, in, kernel), on the CPU
    # Sampling tables (see `_row_cdf`): next output unit given an input unit (rows of P^T),
    # next input unit given an output unit (rows of P), kernel position given the pair.
    forward_cdf: torch.Tensor | None = None
    backward_cdf: torch.Tensor | None = None
    kernel_cdf: torch.Tensor | None = None

    @property
    def identity(self) -> bool:
        return self.name is None

    @property
    def shape(self) -> tuple[int, int, int]:
        assert self.abs_weight is not None
        return tuple(self.abs_weight.shape)  # type: ignore[return-value]


@dataclass
class Graph:
    channels: dict[int, int]  # live unit node -> number of units
    edges: list[Edge]
    source: int
    sink: int
    total: int  # weights of all traced layers (flat index space)
    countable: int  # unpruned weights of layers in `masks`

    def __post_init__(self) -> None:
        self.nodes = sorted(self.channels)
        self.out_edges: dict[int, list[Edge]] = {n: [] for n in self.nodes}
        self.in_edges: dict[int, list[Edge]] = {n: [] for n in self.nodes}
        for edge in self.edges:
            self.out_edges[edge.src].append(edge)
            self.in_edges[edge.dst].append(edge)
        self.layers = [edge for edge in self.edges if not edge.identity]
        counted = torch.zeros(self.total, dtype=torch.bool)
        for edge in self.layers:
            if edge.counted is not None:
                counted[edge.offset : edge.offset + edge.counted.numel()] = edge.counted
        self.counted = counted

    def scores(self, order: torch.Tensor, masks) -> dict[str, torch.Tensor]:
        """-order for the weights in `order` (order = rank among kept weights), -inf elsewhere."""
        flat = torch.full((self.total,), -torch.inf, dtype=torch.float64)
        flat[order] = -torch.arange(order.numel(), dtype=torch.float64)
        out = {}
        for edge in self.layers:
            if edge.name in masks:
                size = masks[edge.name].numel()
                score = flat[edge.offset : edge.offset + size].view(masks[edge.name].shape)
                out[edge.name] = score.to(masks[edge.name].device)
        return out


def build_graph(model: nn.Module, masks) -> Graph:
    """Trace `model` and return its unit graph; UserError for what a walk cannot follow."""
    label = type(model).__name__
    try:
        traced = torch.fx.symbolic_trace(model)
    except Exception as error:  # noqa: BLE001 - any tracing failure is the model's
        raise UserError(f"phew cannot trace model {label} with torch.fx: {error}") from None
    modules = dict(traced.named_modules())
    node_of: dict[torch.fx.Node, int] = {}
    channels: dict[int, int | None] = {}
    edges: list[Edge] = []
    source = sink = None
    seen_layers: set[str] = set()

    def new_node(width: int | None) -> int:
        channels[len(channels)] = width
        return len(channels) - 1

    def tensor_args(node: torch.fx.Node) -> list[int]:
        found = []
        for arg in node.args:
            if isinstance(arg, torch.fx.Node) and arg in node_of:
                found.append(node_of[arg])
        return found

    def unsupported(node: torch.fx.Node, why: str = "") -> UserError:
        return UserError(
            f"phew cannot follow `{node.format_node()}` in model {label}{why}; it supports conv and "
            "linear layers, batch norm, activations, pooling, flatten and residual additions"
        )

    for node in traced.graph.nodes:
        if node.op == "placeholder":
            if source is not None:
                raise unsupported(node, " (a second input)")
            source = node_of[node] = new_node(None)
        elif node.op == "output":
            outs = tensor_args(node)
            if len(outs) != 1:
                raise unsupported(node, " (the model must return one tensor)")
            sink = outs[0]
        elif node.op == "get_attr":
            continue
        elif node.op == "call_module":
            module = modules[node.target]
            inputs = tensor_args(node)
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                name = f"{node.target}.weight"
                if isinstance(module, nn.modules.conv._ConvNd) and (module.groups != 1 or module.transposed):
                    raise unsupported(node, " (grouped or transposed convolution)")
                if name in seen_layers:
                    raise unsupported(node, " (a layer called twice)")
                if len(inputs) != 1:
                    raise unsupported(node)
                seen_layers.add(name)
                out = node_of[node] = new_node(module.weight.shape[0])
                edges.append(Edge(src=inputs[0], dst=out, name=name))
            elif isinstance(module, _TRANSPARENT_MODULES):
                if len(inputs) != 1:
                    raise unsupported(node)
                node_of[node] = inputs[0]
            else:
                raise unsupported(node)
        elif node.op in ("call_function", "call_method"):
            target = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
            inputs = tensor_args(node)
            if node.op == "call_function" and node.target in (operator.add, operator.iadd, torch.add):
                target = "add"
            if not inputs or target in _NON_TENSOR_CALLS:
                continue  # off the tensor path: sizes and arithmetic on them
            if target in _ADD_CALLS:
                if len(inputs) == 1:
                    node_of[node] = inputs[0]  # adding a constant
                    continue
                if len(inputs) != 2 or inputs[0] == inputs[1]:
                    raise unsupported(node)
                merged = node_of[node] = new_node(None)
                edges.extend(Edge(src=i, dst=merged) for i in inputs)
            elif target in _TRANSPARENT_CALLS or (target == "mean" and _spatial_mean(node)):
                if len(inputs) != 1:
                    raise unsupported(node)
                node_of[node] = inputs[0]
            else:
                raise unsupported(node)
        else:
            raise unsupported(node)
    if source is None or sink is None:
        raise UserError(f"phew: model {label} has no input or output")

    edges = _fold_branches(edges, source, sink)
    return _finish(model, masks, label, edges, channels, source, sink)


def _spatial_mean(node: torch.fx.Node) -> bool:
    dims = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    dims = (dims,) if isinstance(dims, int) else dims
    return isinstance(dims, (tuple, list)) and all(isinstance(d, int) and d >= 2 for d in dims)


def _fold_branches(edges: list[Edge], source: int, sink: int) -> list[Edge]:
    """Fold a node whose only use is an addition into the addition's node.

    `bn2(conv2(out)) + shortcut(x)`: the conv2 and 1x1-shortcut outputs only feed the sum, so
    the layers end at the sum's node; an input that is used elsewhere too (the block input `x`
    with an identity shortcut) keeps its identity edge: a real shortcut.
    """
    changed = True
    while changed:
        changed = False
        for edge in edges:
            if not edge.identity:
                continue
            uses = [e for e in edges if e.src == edge.src]
            if len(uses) == 1 and edge.src not in (source, sink):
                for other in edges:
                    if other.dst == edge.src:
                        other.dst = edge.dst
                edges = [e for e in edges if e is not edge]
                changed = True
                break
    return edges


def _finish(model, masks, label, edges, channels, source, sink) -> Graph:
    params = dict(model.named_parameters())
    live = {source, sink} | {e.src for e in edges} | {e.dst for e in edges}
    offset = 0
    countable = 0
    # Widths: a layer's output node has its out-channels (an addition's node gets them from the
    # layers folded into it or from its shortcut), the input node the first layer's inputs.
    for edge in edges:
        if not edge.identity:
            channels[edge.dst] = channels[edge.dst] or params[edge.name].shape[0]
            if channels[edge.dst] != params[edge.name].shape[0]:
                raise UserError(f"phew: model {label} adds {edge.name} to a tensor of other width")
            if edge.src == source and channels[source] is None:
                channels[source] = params[edge.name].shape[1]
    for _ in range(len(edges) + 1):
        for edge in edges:
            if edge.identity:
                for a, b in ((edge.src, edge.dst), (edge.dst, edge.src)):
                    if channels[a] is None and channels[b] is not None:
                        channels[a] = channels[b]
    for edge in sorted(edges, key=lambda e: (e.dst, e.src)):
        width_in = channels[edge.src]
        if edge.identity:
            if width_in != channels[edge.dst]:
                raise UserError(f"phew: model {label} adds tensors of {width_in} and {channels[edge.dst]} channels")
            continue
        weight = params[edge.name].detach()
        fan_in = weight.shape[1]
        if width_in is None or fan_in % width_in != 0:
            raise UserError(f"phew: layer {edge.name} of model {label} takes {fan_in} inputs from {width_in} channels")
        edge.slots = fan_in // width_in
        if weight.dim() > 2 and edge.slots != 1:
            raise UserError(f"phew: convolution {edge.name} of model {label} does not match its input")
        a = weight.to("cpu").abs().reshape(weight.shape[0], fan_in, -1)
        edge.abs_weight = a
        strength = a.sum(-1, dtype=torch.float64)  # P[i, j] = Σ_k |W[i, j, k]|
        edge.backward_cdf = _row_cdf(strength)
        edge.forward_cdf = _row_cdf(strength.t())
        edge.kernel_cdf = _row_cdf(a.reshape(-1, a.shape[-1])) if a.shape[-1] > 1 else None
        edge.offset = offset
        offset += a.numel()
        if edge.name in masks:
            edge.counted = masks[edge.name].detach().reshape(-1).to("cpu", torch.bool)
            countable += int(edge.counted.sum())
    edges.sort(key=lambda e: (e.src, e.dst))
    graph = Graph(
        channels={n: channels[n] for n in live}, edges=edges, source=source, sink=sink,
        total=offset, countable=countable,
    )  # fmt: skip
    for node in graph.nodes:
        if node != sink and not graph.out_edges[node]:
            raise UserError(f"phew: model {label} has a branch that never reaches the output")
        if node != source and not graph.in_edges[node]:
            raise UserError(f"phew: model {label} has a branch that does not start at the input")
    missing = set(masks) - {edge.name for edge in graph.layers}
    if missing:
        raise UserError(f"phew: the walks never reach {sorted(missing)[:3]} in model {label}")
    return graph


# ----------------------------------------------------------------------------------------------
# The walks


def _row_cdf(rows: torch.Tensor) -> torch.Tensor:
    """Sampling table for `_sample_rows`: row r's cumulative probabilities, shifted to (r, r+1],
    flattened into one sorted vector. A row of zeros is uniform (the authors' rule for a unit
    without weights)."""
    rows = rows.to(torch.float64)
    count, width = rows.shape
    total = rows.sum(1, keepdim=True)
    probs = torch.where(total > 0, rows / total.clamp(min=torch.finfo(torch.float64).tiny), 1.0 / width)
    cdf = probs.cumsum(1)
    cdf[:, -1] = 1.0
    return (cdf + torch.arange(count, dtype=torch.float64)[:, None]).reshape(-1)


def _sample_rows(cdf: torch.Tensor, width: int, rows: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One column per entry of `rows`, ∝ that row's weights (one binary search each)."""
    draw = rows.to(torch.float64) + torch.rand(rows.shape, generator=generator, dtype=torch.float64)
    picked = torch.searchsorted(cdf, draw, right=True) - rows * width
    return picked.clamp_(0, width - 1)


def _step(edge: Edge, units: torch.Tensor, forward: bool, generator: torch.Generator):
    """Cross `edge` from `units`: (flat indices of the weights crossed, units reached)."""
    out_units, in_units, kernel = edge.shape
    if forward:
        j = units
        if edge.slots > 1:
            j = units * edge.slots + torch.randint(edge.slots, units.shape, generator=generator)
        i = _sample_rows(edge.forward_cdf, out_units, j, generator)
        reached = i
    else:
        i = units
        j = _sample_rows(edge.backward_cdf, in_units, i, generator)
        reached = torch.div(j, edge.slots, rounding_mode="floor")
    k = _sample_rows(edge.kernel_cdf, kernel, i * in_units + j, generator) if kernel > 1 else torch.zeros_like(i)
    return edge.offset + (i * in_units + j) * kernel + k, reached


def sample_walks(graph: Graph, starts: torch.Tensor, forward: bool, generator: torch.Generator, identity: bool):
    """Walks from `starts` (units of the input, or of the output when backward).

    Returns (walk, step, flat) for every weight crossed: walk number in `starts`, its step
    along that walk, the weight's flat index.
    """
    n = starts.numel()
    at = torch.full((n,), graph.source if forward else graph.sink, dtype=torch.long)
    units = starts.clone()
    steps = torch.zeros(n, dtype=torch.long)
    walks, step_list, flats = [], [], []
    end = graph.sink if forward else graph.source
    for node in graph.nodes if forward else reversed(graph.nodes):
        if node == end:
            continue
        here = torch.nonzero(at == node).squeeze(1)
        if here.numel() == 0:
            continue
        choices = graph.out_edges[node] if forward else graph.in_edges[node]
        if not identity and any(not e.identity for e in choices):
            choices = [e for e in choices if not e.identity]
        pick = torch.randint(len(choices), (here.numel(),), generator=generator) if len(choices) > 1 else None
        for c, edge in enumerate(choices):
            walkers = here if pick is None else here[pick == c]
            if walkers.numel() == 0:
                continue
            at[walkers] = edge.dst if forward else edge.src
            if edge.identity:
                continue
            flat, reached = _step(edge, units[walkers], forward, generator)
            walks.append(walkers)
            step_list.append(steps[walkers].clone())
            flats.append(flat)
            units[walkers] = reached
            steps[walkers] += 1
    if not walks:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, empty
    return torch.cat(walks), torch.cat(step_list), torch.cat(flats)


def visit_order(graph: Graph, keep: int, generator: torch.Generator, identity: bool, last_walk: str) -> torch.Tensor:
    """Flat indices of exactly `keep` counted weights, in the order they are kept."""
    never = torch.iinfo(torch.long).max
    length = len(graph.layers)  # no walk crosses more weights
    first = torch.full((graph.total,), never, dtype=torch.long)  # key of the first crossing
    kept = 0
    walks_done = 0
    batch = 64
    in_units = graph.channels[graph.source]
    out_units = graph.channels[graph.sink]
    while True:
        # Walk g = walks_done + w: even w forward from input unit (g // 2) mod C_in, odd w
        # backward from class (g // 2) mod classes: the authors' alternation and round robin.
        half = torch.arange(batch) + walks_done // 2
        fw, fs, ff = sample_walks(graph, half % in_units, True, generator, identity)
        bw, bs, bf = sample_walks(graph, half % out_units, False, generator, identity)
        walk = torch.cat([2 * fw, 2 * bw + 1]) + walks_done
        flat = torch.cat([ff, bf])
        key = walk * length + torch.cat([fs, bs])
        counted = graph.counted[flat]
        flat, key = flat[counted], key[counted]
        batch_first = torch.full((graph.total,), never, dtype=torch.long)
        batch_first.scatter_reduce_(0, flat, key, reduce="amin")
        new = torch.nonzero((first == never) & (batch_first != never)).squeeze(1)
        new_walk = batch_first[new] // length - walks_done
        per_walk = torch.bincount(new_walk, minlength=2 * batch)
        total_after = kept + per_walk.cumsum(0)
        over = torch.nonzero(total_after > keep).squeeze(1)
        if over.numel() == 0:
            first[new] = batch_first[new]
            kept = int(total_after[-1])
            walks_done += 2 * batch
            if kept == keep:
                return _ordered(first, never)
            batch = min(2 * batch, 4096)  # the sequence of walks does not depend on K
            continue
        stop = int(over[0])  # the walk that does not fit
        accepted = new_walk < stop
        first[new[accepted]] = batch_first[new[accepted]]
        kept = int(total_after[stop - 1]) if stop > 0 else kept
        rest = keep - kept
        order = _ordered(first, never)
        partial = new[new_walk == stop]
        partial = partial[torch.argsort(batch_first[partial])]  # the walk's new weights in step order
        if last_walk == "close":
            closing = _closing_weights(graph, first != never, rest, generator)
        else:
            closing = torch.zeros(0, dtype=torch.long)
        if closing.numel() < rest:
            partial = partial[~torch.isin(partial, closing)]
            closing = torch.cat([closing, partial[: rest - closing.numel()]])
        return torch.cat([order, closing])


def _ordered(first: torch.Tensor, never: int) -> torch.Tensor:
    visited = torch.nonzero(first != never).squeeze(1)
    return visited[torch.argsort(first[visited])]


def _closing_weights(graph: Graph, kept: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Up to `count` unkept weights, drawn ∝ |W| without replacement, whose input unit is
    reachable from the network's input and whose output unit reaches its output through kept
    weights: the units at either end of a kept weight (every kept weight lies on a whole walk),
    and the input and output units themselves."""
    live: dict[int, torch.Tensor] = {
        node: torch.full((width,), node in (graph.source, graph.sink)) for node, width in graph.channels.items()
    }
    for edge in graph.layers:
        out_units, in_units, kernel = edge.shape
        here = torch.nonzero(kept[edge.offset : edge.offset + out_units * in_units * kernel]).squeeze(1)
        live[edge.dst][here // (in_units * kernel)] = True
        live[edge.src][(here // kernel) % in_units // edge.slots] = True
    weights = torch.zeros(graph.total, dtype=torch.float64)
    for edge in graph.layers:
        out_units, in_units, kernel = edge.shape
        ends = live[edge.dst][:, None, None] & live[edge.src].repeat_interleave(edge.slots)[None, :, None]
        weights[edge.offset : edge.offset + out_units * in_units * kernel] = (edge.abs_weight * ends).view(-1)
    weights *= graph.counted & ~kept
    available = int((weights > 0).sum())
    if available == 0 or count == 0:
        return torch.zeros(0, dtype=torch.long)
    # Exponential race: the smallest Exp(1) / w come in the order of sampling without replacement.
    exponential = -torch.log1p(-torch.rand(graph.total, generator=generator, dtype=torch.float64))
    race = torch.where(weights > 0, exponential / weights, torch.inf)
    return torch.topk(race, min(count, available), largest=False).indices
