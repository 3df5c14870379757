"""pai-bench: a benchmark harness for pruning-at-initialization methods.

The Python API: `prune`, `list_methods`, `export_masks`, `effective_masks`, `build_model`, `count_macs`,
`model_summary`, and `register_method` with the `Method` base classes for writing a plugin.
"""

from pai_bench.effective import effective_masks
from pai_bench.flops import count_macs, model_summary
from pai_bench.masks import export_masks
from pai_bench.method import ArchitectureMethod, Method, ScoreMethod
from pai_bench.models import build_model, list_models
from pai_bench.plugins import list_methods, register_method
from pai_bench.pruning import PruneResult, prune
from pai_bench.version import __version__

__all__ = [
    "ArchitectureMethod",
    "Method",
    "PruneResult",
    "ScoreMethod",
    "__version__",
    "build_model",
    "count_macs",
    "effective_masks",
    "export_masks",
    "list_methods",
    "list_models",
    "model_summary",
    "prune",
    "register_method",
]
