"""How fast is the gradient probe? One run prints, on the same W windows:

1. the probe per checkpoint (float64, one forward + one backward for every lag, window
   and layer; with and without the Jacobian products),
2. one training step on the same batch (fused float32 module, loss at every position,
   backward, SGD update),
3. the per-lag autograd approach: one forward, then one backward pass per lag
   k = 0..K, which gives the same g(k) (checked): pruned to the steps T..T-k
   (torch.autograd.grad(L, h_{T-k})), or a whole backward pass each (as
   `loss.backward()` per lag).

Goals (issue 4): probe >= 20x faster than per-lag, and < 3x a training step.

    python benchmarks/probe_speed.py                      # LSTM, H=128, W=256, B=50, K=100
    python benchmarks/probe_speed.py --arch rnn_tanh --hidden-size 64
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from rnngrad import probe
from rnngrad.model import build_model


def best_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def training_step(model, optimizer, batch: torch.Tensor) -> None:
    """One truncated-BPTT step on a (T, W) batch, as the trainer does (float32, fused)."""
    optimizer.zero_grad()
    logits, _ = model(batch[:-1], model.init_hidden(batch.shape[1]))
    loss = F.cross_entropy(logits.flatten(0, 1), batch[1:].flatten())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()


def per_lag_norms(model, windows: np.ndarray, burn_in: int, whole_graph: bool = False) -> np.ndarray:
    """g(k) of every layer by one backward pass per lag (the approach the probe replaces).

    whole_graph=False: torch.autograd.grad(L, h_{T-k}) per lag; autograd prunes the
    pass to steps T..T-k (the strongest per-lag baseline). whole_graph=True: each pass
    also yields dL/dW (as `loss.backward()` per lag would), so it walks every step.
    """
    weights = probe.layer_weights(model)
    if whole_graph:
        for w in weights:
            for tensor in w.values():
                tensor.requires_grad_(True)
    extra = [t for w in weights for t in w.values()] if whole_graph else []
    unrolled = probe.unroll(model, torch.as_tensor(windows), burn_in, weights)
    total = unrolled.loss.sum()
    steps = len(unrolled.hidden[0])
    norms = np.zeros((model.num_layers, len(windows), steps))
    for k in range(steps):
        inputs = [layer[steps - 1 - k] for layer in unrolled.hidden]
        grads = torch.autograd.grad(total, inputs + extra, retain_graph=True)
        for layer, grad in enumerate(grads[:len(inputs)]):
            norms[layer, :, k] = grad.norm(dim=-1).numpy()
    return norms


def timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="lstm")
    parser.add_argument("--hidden-size", type=int, default=128)
    parser.add_argument("--num-layers", type=int, default=1)
    parser.add_argument("--vocab-size", type=int, default=10_000)
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--burn-in", type=int, default=50)
    parser.add_argument("--max-lag", type=int, default=100)
    parser.add_argument("--jacobian-windows", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    model = build_model(args.arch, vocab_size=args.vocab_size, hidden_size=args.hidden_size,
                        num_layers=args.num_layers, seed=0)
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, args.vocab_size, size=200_000)
    windows = probe.make_windows(tokens, args.windows, args.burn_in, args.max_lag, seed=1)
    batch = torch.as_tensor(windows).t().contiguous()  # (B + K + 2, W): the same tokens
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    result = probe.probe_model(model, windows, args.burn_in, args.jacobian_windows)  # warm-up
    t_probe = best_time(lambda: probe.probe_model(model, windows, args.burn_in, args.jacobian_windows), args.repeats)
    t_probe_grad = best_time(lambda: probe.probe_model(model, windows, args.burn_in, 0), args.repeats)
    t_train = best_time(lambda: training_step(model, optimizer, batch), args.repeats)
    # Training changed the weights: re-probe the same model for the equality check.
    result = probe.probe_model(model, windows, args.burn_in, 0)
    pruned, t_per_lag = timed(lambda: per_lag_norms(model, windows, args.burn_in))
    whole, t_whole = timed(lambda: per_lag_norms(model, windows, args.burn_in, whole_graph=True))
    for slow in (pruned, whole):
        np.testing.assert_allclose(slow, result["h"], rtol=1e-10, atol=1e-300)

    print(f"{args.arch}, hidden {args.hidden_size}, {args.num_layers} layer(s), vocab {args.vocab_size}, "
          f"W={args.windows} windows, B={args.burn_in}, K={args.max_lag}, "
          f"{args.jacobian_windows} Jacobian windows, {torch.get_num_threads()} thread(s)")
    print(f"  probe per checkpoint (all outputs)       {t_probe:8.3f} s")
    print(f"  probe per checkpoint (no Jacobians)      {t_probe_grad:8.3f} s")
    print(f"  one training step, same batch (fp32)     {t_train:8.3f} s")
    print(f"  per-lag, pruned autograd.grad(L, h_T-k)  {t_per_lag:8.3f} s  "
          f"({args.max_lag + 1} passes; same g(k): checked)")
    print(f"  per-lag, whole backward each (dL/dW too) {t_whole:8.3f} s")
    print(f"  per-lag pruned / probe (no Jacobians)    {t_per_lag / t_probe_grad:8.1f} x   (goal >= 20)")
    print(f"  per-lag whole / probe (no Jacobians)     {t_whole / t_probe_grad:8.1f} x   (goal >= 20)")
    print(f"  probe (no Jacobians) / training step     {t_probe_grad / t_train:8.2f} x   (goal < 3)")
    print(f"  probe (all outputs) / training step      {t_probe / t_train:8.2f} x")


if __name__ == "__main__":
    main()
