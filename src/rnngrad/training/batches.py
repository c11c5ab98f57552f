"""The corpus as training and evaluation read it: columns of the token stream (word_language_model's
batchify), bptt windows, the evaluation loss, perplexity.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnngrad.model import RNNModel

EVAL_BATCH_SIZE = 10


def batchify(ids: np.ndarray, batch_size: int) -> torch.Tensor:
    """1-D token ids -> (rows, batch_size): column j is the j-th contiguous slice of the text."""
    rows = len(ids) // batch_size
    if rows < 2:
        raise ValueError(f"{len(ids)} tokens are too few for batch size {batch_size}")
    data = torch.from_numpy(np.ascontiguousarray(ids[: rows * batch_size], dtype=np.int64))
    return data.view(batch_size, rows).t().contiguous()


def batch_starts(rows: int, bptt: int) -> list[int]:
    """Start row of every (input, target) window of one pass over `rows` rows."""
    return list(range(0, rows - 1, bptt))


def get_batch(source: torch.Tensor, start: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    length = min(bptt, len(source) - 1 - start)
    return source[start:start + length], source[start + 1:start + 1 + length]


def steps_per_epoch(rows: int, bptt: int, batch_size: int, max_tokens: int | None) -> int:
    """Windows per epoch: the whole split, or as many as `max_tokens` needs."""
    full = len(batch_starts(rows, bptt))
    if max_tokens is None:
        return full
    return min(full, math.ceil(max_tokens / (bptt * batch_size)))


def detach(hidden):
    return tuple(h.detach() for h in hidden) if isinstance(hidden, tuple) else hidden.detach()


@torch.no_grad()
def evaluate(model: RNNModel, data: torch.Tensor, bptt: int) -> float:
    """Mean cross-entropy (nats per token) over `data` (rows, batch)."""
    model.eval()
    hidden = model.init_hidden(data.shape[1])
    total, count = 0.0, 0
    for start in batch_starts(len(data), bptt):
        inputs, targets = get_batch(data, start, bptt)
        logits, hidden = model(inputs, hidden)
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    model.train()
    return total / count


def perplexity(loss: float | None) -> float | None:
    if loss is None or not math.isfinite(loss):
        return None
    return math.exp(loss) if loss < 700 else math.inf


def load_split(token_dir: Path, split: str, limit: int | None = None) -> np.ndarray:
    ids = np.load(Path(token_dir) / f"{split}.npy")
    return ids if limit is None else ids[: limit + 1]


def evaluated_tokens(data: torch.Tensor) -> int:
    """Tokens whose loss `evaluate` averages: every row but the last is an input, times the columns."""
    return (len(data) - 1) * data.shape[1]
