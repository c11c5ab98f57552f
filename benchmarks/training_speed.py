"""Training tokens/s of rnngrad's training loop against a bare PyTorch loop, per arch.

    python benchmarks/training_speed.py                 # PTB-small word size and char size
    python benchmarks/training_speed.py --threads 2 --repeats 5

"ours" is rnngrad.training.Trainer.run (forward, backward, clipping, SGD, per-step
metrics, divergence check, spectral stats of W_hh every `--spectral-every` steps);
"bare" is the same embedding, recurrent module and decoder with the same weights in a
plain truncated-BPTT loop: forward, cross-entropy, backward, clip_grad_norm_, SGD
step, nothing recorded. Both read the same random tokens.

Speeds are tokens per second of this process's CPU time (time.process_time), so that
other processes sharing the machine distort them less. Ours is timed by the trainer
itself, from fetching a batch to the end of the step's bookkeeping (what its runs
report as tokens_per_s; initialisation, validation and saving excluded). The two
alternate, and each reports its median over `--repeats`. Goal: ours/bare >= 0.95.
Columns: `ours` with spectral stats every `--spectral-every` steps (the config
default), `ours-nospec` without them, so that the loop's own bookkeeping and the
optional eigendecompositions show separately.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from rnngrad.config import validate_config
from rnngrad.grid import ALL_ARCHS, normalise_cell
from rnngrad.model import build_model
from rnngrad.training import Trainer, batch_starts, batchify, detach, get_batch

SIZES = {
    # name: (vocab, hidden, layers, bptt, batch, measured steps)
    "ptb-small": (10000, 200, 2, 35, 20, 20),
    "char": (50, 128, 1, 35, 20, 300),
}


def make_cell(arch, hidden, layers, bptt, batch):
    return normalise_cell(dict(arch=arch, hidden_size=hidden, num_layers=layers, init="orthogonal", init_scale=1.0,
                               forget_bias=1.0, lr=0.5, optimizer="sgd", clip=5.0, bptt=bptt, batch_size=batch,
                               epochs=1, seed=0))


def ours(cell, ids, vocab, steps, spectral_every) -> float:
    """Tokens per CPU second of Trainer.run over `steps` steps."""
    settings = validate_config({"training": {
        "max_tokens": steps * cell["bptt"] * cell["batch_size"], "checkpoints": [1.0],
        "spectral_every": spectral_every, "lr_schedule": "constant"}})["training"]
    trainer = Trainer(cell, settings, ids, ids[:200], ids[:200], vocab, device="cpu", log=lambda line: None,
                      log_every_s=1e9)
    trainer.clock = time.process_time
    trainer.run(partial=None)
    done = trainer.progress
    assert done.step == steps and done.status == "ok"
    return done.tokens / done.train_s


def bare(cell, ids, vocab, steps) -> float:
    """Tokens per CPU second of a plain loop around the same modules and weights."""
    model = build_model(**cell, vocab_size=vocab)
    embedding, rnn, decoder = model.embedding, model.rnn, model.decoder
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=cell["lr"])
    data = batchify(ids, cell["batch_size"])
    starts = batch_starts(len(data), cell["bptt"])[:steps]
    hidden = model.init_hidden(cell["batch_size"])
    tokens = 0
    start = time.process_time()
    for row in starts:
        inputs, targets = get_batch(data, row, cell["bptt"])
        hidden = detach(hidden)
        output, hidden = rnn(embedding(inputs), hidden)
        loss = F.cross_entropy(decoder(output).flatten(0, 1), targets.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cell["clip"])
        optimizer.step()
        tokens += targets.numel()
    return tokens / (time.process_time() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spectral-every", type=int, default=50, help="as training.spectral_every")
    parser.add_argument("--archs", nargs="+", default=list(ALL_ARCHS))
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, "
          f"spectral stats every {args.spectral_every} steps")
    print(f"{'size':<10} {'arch':<12} {'bare tok/s':>11} {'ours tok/s':>11} {'ratio':>6} "
          f"{'ours-nospec':>11} {'ratio':>6}")
    ratios = {"ours": [], "nospec": []}
    for size in args.sizes:
        vocab, hidden, layers, bptt, batch, steps = SIZES[size]
        ids = np.random.default_rng(0).integers(0, vocab, size=(steps + 3) * bptt * batch + 1)
        for arch in args.archs:
            cell = make_cell(arch, hidden, layers, bptt, batch)
            ours(cell, ids, vocab, 2, args.spectral_every), bare(cell, ids, vocab, 2)  # warm up
            runs = {"bare": [], "ours": [], "nospec": []}
            for _ in range(args.repeats):
                runs["bare"].append(bare(cell, ids, vocab, steps))
                runs["ours"].append(ours(cell, ids, vocab, steps, args.spectral_every))
                runs["nospec"].append(ours(cell, ids, vocab, steps, 10 ** 9))
            speed = {name: statistics.median(values) for name, values in runs.items()}
            for name in ratios:
                ratios[name].append(speed[name] / speed["bare"])
            print(f"{size:<10} {arch:<12} {speed['bare']:>11,.0f} {speed['ours']:>11,.0f} "
                  f"{speed['ours'] / speed['bare']:>6.3f} {speed['nospec']:>11,.0f} "
                  f"{speed['nospec'] / speed['bare']:>6.3f}", flush=True)
    for name, values in ratios.items():
        label = "ours" if name == "ours" else "ours-nospec"
        print(f"{label}/bare: geometric mean {float(np.exp(np.mean(np.log(values)))):.3f}, min {min(values):.3f}")

if __name__ == "__main__":
    main()
