"""Measure vanishing and exploding gradients in recurrent networks.

Modules, one concept each: `config` (validated settings), `grid` (hyperparameter
cells), `corpus` (download, verify, tokenise), `model` (the recurrent language
models), `training` (truncated BPTT), `probe` (gradient-vs-distance curves),
`tables` and `figures` (the paper), both selecting runs through `selection`.
"""

__version__ = "0.1.0"
