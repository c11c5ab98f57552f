"""Training tokens/s of rnngrad's training loop against a bare PyTorch loop, per arch.

    python benchmarks/training_speed.py                 # PTB-small word size and char size
    python benchmarks/training_speed.py --threads 2 --repeats 5
    python benchmarks/training_speed.py --wall          # wall clock, 1 and 2 threads, job environment
    python benchmarks/training_speed.py --remedies      # every remedy against nn.RNN; the LRU's training step
    python benchmarks/training_speed.py --scans         # each linear recurrence's scan against its step loop
    python benchmarks/training_speed.py --tasks         # long-range task runs (adding, copy at T = 100)

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
Columns: `ours` with spectral stats every `--spectral-every` steps, `ours-nospec`
without them, so that the loop's own bookkeeping and the optional eigendecompositions
show separately; `spec/run` says how many spectral computations each run made.

`--tasks` compares a task run (rnngrad.training.TaskTrainer.run: a fresh seeded batch
per step, full BPTT from a zero state, the task's loss, clipping, Adam, per-step
metrics; test evaluations at checkpoints are outside the timed steps) with a bare loop
around the same input layer, fused recurrent module and head that draws the same
batches (rnngrad.tasks.training_batch) and takes the same steps, nothing recorded.
Tokens are sequence steps. Goal: ours/bare >= 0.9.

`--wall` measures what a user waits for: wall-clock tokens/s, each measurement in a
fresh process whose environment is set before torch loads: `job` is what a training
job of the workflow sets (rnngrad.threads.job_environment), `plain` nothing. For each
thread count it runs one job alone (a quiet machine or a cluster allocation) and then
as many concurrent jobs as `snakemake --cores 8` starts (8 // threads), oversubscribing
a smaller machine. The bare loop always runs in the plain environment (what a user's
own loop gets). Goal: ours(job)/bare(plain) >= 0.95 for a job alone; with concurrent
jobs, the summed tokens/s of every job. `--envs` adds environments to compare (e.g.
`passive` = OMP_WAIT_POLICY=PASSIVE for every multi-thread job, the old behaviour).

`--remedies` times our training loop (CPU time, as the default table) for every remedy
(archs.in_family("remedy"): orthogonal RNN, IndRNN, LRU, expRNN, antisymmetric RNN, LEM,
minGRU, S6) against the tanh nn.RNN of the same size, all in one run, alternating, median
over `--repeats`. Then a training step of the LRU with rnngrad.archs.lru.linear_recurrence
(what training uses: no autograd graph per step, the backward pass in closed form) against
the same step with autograd through a Python loop over time steps (linear_loop).

`--scans` times each recurrence that is linear in its state, alone (forward + backward,
batch 32, H = 64, CPU time, median of `--repeats`) at T = 100, 500, 1000: the LRU's
linear_recurrence, the minGRU's log-space parallel scan (mingru_scan) and the S6's
selective_scan (closed-form backward, states only kept), each against its own step loop
through autograd (linear_loop, mingru_loop, selective_scan_loop).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from rnngrad import archs, tasks
from rnngrad.archs.lru import linear_recurrence
from rnngrad.archs.mingru import mingru_loop, mingru_scan
from rnngrad.archs.s6 import selective_scan, selective_scan_loop
from rnngrad.config import validate_config
from rnngrad.grid import normalise_cell
from rnngrad.model import build_model
from rnngrad.threads import available_cpus, job_environment
from rnngrad.training import TaskTrainer, Trainer, batch_starts, batchify, detach, get_batch

SIZES = {
    # name: (vocab, hidden, layers, bptt, batch, measured steps)
    "ptb-small": (10000, 200, 2, 35, 20, 40),
    "char": (50, 128, 1, 35, 20, 300),
    "zaremba": (10000, 200, 2, 20, 20, 40),  # the Zaremba small LSTM's shape
}
ENVIRONMENTS = {
    "plain": lambda threads, cores: {},
    "job": job_environment,
    "passive": lambda threads, cores: {"OMP_WAIT_POLICY": "PASSIVE"} if threads > 1 else {},
}


def make_cell(arch, hidden, layers, bptt, batch):
    return normalise_cell(dict(arch=arch, hidden_size=hidden, num_layers=layers, init="orthogonal", init_scale=1.0,
                               forget_bias=1.0, indrnn_bound=2.0, lru_r_min=0.0, lru_r_max=0.99, lr=0.5,
                               optimizer="sgd", clip=5.0, bptt=bptt, batch_size=batch, epochs=1, seed=0))


def ours(cell, ids, vocab, steps, spectral_every, clock=time.process_time) -> tuple[float, int]:
    """(tokens per second of `clock`, spectral computations) of Trainer.run over `steps` steps."""
    settings = validate_config({"training": {
        "max_tokens": steps * cell["bptt"] * cell["batch_size"], "checkpoints": [1.0],
        "spectral_every": spectral_every, "lr_schedule": "constant"}})["training"]
    trainer = Trainer(cell, settings, ids, ids[:200], ids[:200], vocab, device="cpu", log=lambda line: None,
                      log_every_s=1e9)
    trainer.clock = clock
    trainer.run(partial=None)
    done = trainer.progress
    assert done.step == steps and done.status == "ok"
    spectral = sum(1 for row in done.metrics[1:] if "sigma_max_l0" in row)
    return done.tokens / done.train_s, spectral


def bare(cell, ids, vocab, steps, clock=time.process_time, *, recurrence=None) -> float:
    """Tokens per second of `clock` of a plain loop around the same modules and weights.

    `recurrence` replaces the LRU's (linear_recurrence or linear_loop).
    """
    model = build_model(**cell, vocab_size=vocab)
    if recurrence is not None:
        model.rnn.recurrence = recurrence
    embedding, rnn, decoder = model.embedding, model.rnn, model.decoder
    params = list(model.parameters())
    optimizer = torch.optim.SGD(params, lr=cell["lr"])
    data = batchify(ids, cell["batch_size"])
    starts = batch_starts(len(data), cell["bptt"])[:steps]
    hidden = model.init_hidden(cell["batch_size"])
    tokens = 0
    start = clock()
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
    return tokens / (clock() - start)


def corpus(size: str) -> tuple[np.ndarray, int, dict]:
    vocab, hidden, layers, bptt, batch, steps = SIZES[size]
    ids = np.random.default_rng(0).integers(0, vocab, size=(steps + 3) * bptt * batch + 1)
    return ids, vocab, {"hidden": hidden, "layers": layers, "bptt": bptt, "batch": batch, "steps": steps}


def worker(loop: str, size: str, arch: str, threads: int, spectral_every: int) -> None:
    """One wall-clock measurement in this (fresh) process; prints its tokens/s as JSON."""
    torch.set_num_threads(threads)
    ids, vocab, shape = corpus(size)
    cell = make_cell(arch, shape["hidden"], shape["layers"], shape["bptt"], shape["batch"])
    if loop == "ours":
        ours(cell, ids, vocab, 2, spectral_every, time.perf_counter)  # warm up
        speed, _ = ours(cell, ids, vocab, shape["steps"], spectral_every, time.perf_counter)
    else:
        bare(cell, ids, vocab, 2, time.perf_counter)
        speed = bare(cell, ids, vocab, shape["steps"], time.perf_counter)
    print(json.dumps({"tokens_per_s": speed}))


def concurrent(loop: str, size: str, arch: str, threads: int, jobs: int, env: dict, spectral_every: int) -> float:
    """Summed wall-clock tokens/s of `jobs` processes run at once, each in environment `env`."""
    command = [sys.executable, __file__, "--worker", loop, "--sizes", size, "--archs", arch,
               "--threads", str(threads), "--spectral-every", str(spectral_every)]
    environment = {**{k: v for k, v in os.environ.items() if k not in ENV_KEYS}, **env}
    processes = [subprocess.Popen(command, env=environment, stdout=subprocess.PIPE, text=True) for _ in range(jobs)]
    speeds = []
    for process in processes:
        out, _ = process.communicate()
        assert process.returncode == 0, out
        speeds.append(json.loads(out.strip().splitlines()[-1])["tokens_per_s"])
    return sum(speeds)


ENV_KEYS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
# Task runs: (task, T, hidden, batch, measured steps), as config/long_range.yaml trains them.
TASK_SIZES = {"adding": ("adding", 100, 64, 32, 60), "copy": ("copy", 100, 64, 32, 40)}


def task_setup(size: str, arch: str, steps: int, spectral_every: int):
    name, T, hidden, batch, _ = TASK_SIZES[size]
    config = validate_config({"task": {"name": [name], "T": [T], "steps": steps, "valid_size": 10, "test_size": 10},
                              "training": {"checkpoints": [1.0], "spectral_every": spectral_every},
                              "probe": {"windows": 10}})
    cell = {**make_cell(arch, hidden, 1, "na", batch), "task": name, "T": T, "optimizer": "adam", "lr": 1e-3,
            "clip": 1.0, "epochs": "na"}
    return cell, config


def ours_task(size, arch, steps, spectral_every, clock=time.process_time) -> float:
    """Tokens (sequence steps) per second of `clock` of TaskTrainer.run over `steps` steps."""
    cell, config = task_setup(size, arch, steps, spectral_every)
    trainer = TaskTrainer(cell, config["training"], config["task"], device="cpu", log=lambda line: None,
                          log_every_s=1e9)
    trainer.clock = clock
    trainer.run(partial=None)
    assert trainer.progress.step == steps and trainer.progress.status == "ok"
    return trainer.progress.tokens / trainer.progress.train_s


def bare_task(size, arch, steps, clock=time.process_time) -> float:
    """Tokens per second of `clock` of a plain loop: same batches, modules, loss, clipping and Adam."""
    cell, config = task_setup(size, arch, steps, 10 ** 9)
    name, T, shape = cell["task"], cell["T"], tasks.settings_for(cell["task"], config["task"])
    shape = {key: shape[key] for key in ("copy_length", "copy_symbols") if key in shape}
    model = build_model(**cell, **tasks.model_shape(name, **shape))
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=cell["lr"])
    tokens, start = 0, clock()
    for step in range(steps):
        inputs, targets = tasks.training_batch(name, T, cell["batch_size"], 0, 0, step, **shape)
        inputs = torch.from_numpy(inputs).transpose(0, 1).contiguous()
        output, _ = model.rnn(model.embedding(inputs))
        logits = model.decoder(output)
        if name == "adding":
            loss = F.mse_loss(logits[-1, :, 0], torch.from_numpy(targets))
        else:
            loss = F.cross_entropy(logits.flatten(0, 1), torch.from_numpy(targets).t().flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cell["clip"])
        optimizer.step()
        tokens += inputs.shape[0] * inputs.shape[1]
    return tokens / (clock() - start)


def task_speeds(args) -> None:
    """CPU-time table of task runs: ours against the bare loop, per task and arch."""
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, "
          f"spectral stats every {args.spectral_every} steps; tokens = sequence steps")
    print(f"{'task':<8} {'arch':<12} {'bare tok/s':>11} {'ours tok/s':>11} {'ratio':>6}")
    ratios = []
    for size in args.sizes:
        steps = TASK_SIZES[size][-1]
        for arch in args.archs:
            ours_task(size, arch, 2, args.spectral_every), bare_task(size, arch, 2)  # warm up
            runs = {"bare": [], "ours": []}
            for _ in range(args.repeats):
                runs["bare"].append(bare_task(size, arch, steps))
                runs["ours"].append(ours_task(size, arch, steps, args.spectral_every))
            speed = {name: statistics.median(values) for name, values in runs.items()}
            ratios.append(speed["ours"] / speed["bare"])
            print(f"{size:<8} {arch:<12} {speed['bare']:>11,.0f} {speed['ours']:>11,.0f} {ratios[-1]:>6.3f}",
                  flush=True)
    print(f"ours/bare: geometric mean {float(np.exp(np.mean(np.log(ratios)))):.3f}, min {min(ratios):.3f}")


def wall(args) -> None:
    """Wall-clock table: per thread count, one job alone and `--cores 8` worth of jobs."""
    cpus = available_cpus()
    print(f"torch {torch.__version__}, {cpus} CPUs available, wall-clock tokens/s (summed over concurrent jobs), "
          f"median of {args.repeats}; bare loop in the plain environment")
    envs = ["job", *[name for name in args.envs if name != "job"]]
    print(f"{'size':<10} {'arch':<6} {'thr':>3} {'jobs':>4} {'bare':>8}  ours in each environment (tokens/s, ratio)")
    for size in args.sizes:
        for arch in args.archs:
            for threads in args.threads_list:
                for jobs in sorted({1, max(1, args.cores // threads)}):
                    # Environments that set the same variables are measured once.
                    settings = {name: ENVIRONMENTS[name](threads, args.cores if jobs > 1 else threads) for name in envs}
                    unique = {}
                    for name, env in settings.items():
                        unique.setdefault(tuple(sorted(env.items())), []).append(name)
                    runs = {"bare": [], **{key: [] for key in unique}}
                    for _ in range(args.repeats):
                        runs["bare"].append(concurrent("bare", size, arch, threads, jobs, {}, args.spectral_every))
                        for key in unique:
                            runs[key].append(concurrent("ours", size, arch, threads, jobs, dict(key),
                                                        args.spectral_every))
                    speed = {key: statistics.median(values) for key, values in runs.items()}
                    cells = [f"{'=' .join(unique[key])} {speed[key]:,.0f} ({speed[key] / speed['bare']:.3f})"
                             for key in unique]
                    print(f"{size:<10} {arch:<6} {threads:>3} {jobs:>4} {speed['bare']:>8,.0f}  " + "  ".join(cells),
                          flush=True)


def linear_loop(lam: torch.Tensor, inputs: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """x_t = lam * x_{t-1} + inputs_t one step at a time through autograd: the bare reference."""
    x, outputs = h0, []
    for step in inputs:
        x = lam * x + step
        outputs.append(x)
    return torch.stack(outputs)


def lru_inputs(steps: int, batch: int, size: int, generator: torch.Generator) -> tuple:
    """lambda (N,), b_t (T, B, N) complex64, h0: the LRU's recurrence x_t = lambda x_{t-1} + b_t."""
    lam = torch.polar(torch.rand(size, generator=generator) * 0.99, torch.rand(size, generator=generator) * 6.28)
    inputs = torch.randn(steps, batch, size, dtype=torch.complex64, generator=generator)
    return lam, inputs, torch.zeros(batch, size, dtype=torch.complex64)


def mingru_inputs(steps: int, batch: int, size: int, generator: torch.Generator) -> tuple:
    """Gate and candidate pre-activations (T, B, H), h0 (B, H)."""
    return (torch.randn(steps, batch, size, generator=generator),
            torch.randn(steps, batch, size, generator=generator), torch.rand(batch, size, generator=generator))


def s6_inputs(steps: int, batch: int, size: int, generator: torch.Generator, state_size: int = 16) -> tuple:
    """Delta (T, B, H) in Mamba's [0.001, 0.1], A = -(1..N) (H, N), B_t, C_t (T, B, N), x (T, B, H), h0 (B, H, N)."""
    delta = torch.exp(torch.empty(steps, batch, size).uniform_(math.log(1e-3), math.log(0.1), generator=generator))
    a = -torch.arange(1, state_size + 1, dtype=torch.float32).expand(size, state_size).clone()
    return (delta, a, torch.randn(steps, batch, state_size, generator=generator),
            torch.randn(steps, batch, state_size, generator=generator), torch.randn(steps, batch, size,
                                                                                     generator=generator),
            torch.zeros(batch, size, state_size))


# name: (training's recurrence, its step loop, the inputs both take)
SCANS = {"lru": (linear_recurrence, linear_loop, lru_inputs), "mingru": (mingru_scan, mingru_loop, mingru_inputs),
         "s6": (selective_scan, selective_scan_loop, s6_inputs)}


def recurrence_seconds(recurrence, make_inputs, steps: int, repeats: int, batch: int = 32, size: int = 64) -> float:
    """Median CPU seconds of forward + backward of `recurrence` over `steps` steps (every input requires grad)."""
    inputs = [value.requires_grad_(True) for value in make_inputs(steps, batch, size, torch.Generator().manual_seed(0))]
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        start = time.process_time()
        output = recurrence(*inputs)
        output = output[0] if isinstance(output, tuple) else output
        output.abs().sum().backward()
        times.append(time.process_time() - start)
    return statistics.median(times[1:])


def scans(args) -> None:
    """Each linear recurrence's training path against its step loop, alone, at T = 100, 500, 1000."""
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, CPU ms of forward + "
          "backward, batch 32, H = 64")
    print(f"{'arch':<8} {'steps':>6} {'scan ms':>9} {'loop ms':>9} {'loop/scan':>9}")
    for name, (scan, loop, make_inputs) in SCANS.items():
        for steps in (100, 500, 1000):
            fast = recurrence_seconds(scan, make_inputs, steps, args.repeats)
            slow = recurrence_seconds(loop, make_inputs, steps, args.repeats)
            print(f"{name:<8} {steps:>6} {1e3 * fast:>9.1f} {1e3 * slow:>9.1f} {slow / fast:>9.2f}", flush=True)


def remedies(args) -> None:
    """The remedies against nn.RNN of the same size, and the LRU's recurrence against a step loop."""
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, CPU time; "
          f"ours = rnngrad's training loop, spectral stats every {args.spectral_every} steps")
    print(f"{'size':<10} {'arch':<18} {'tok/s':>9} {'/ nn.RNN':>8}")
    for size in args.sizes:
        ids, vocab, shape = corpus(size)
        cells = {arch: make_cell(arch, shape["hidden"], shape["layers"], shape["bptt"], shape["batch"])
                 for arch in ("rnn_tanh", *archs.in_family("remedy"))}
        runs = {arch: [] for arch in cells}
        for cell in cells.values():
            ours(cell, ids, vocab, 2, args.spectral_every)  # warm up
        for _ in range(args.repeats):  # alternate, so that a busy moment hits every arch alike
            for arch, cell in cells.items():
                runs[arch].append(ours(cell, ids, vocab, shape["steps"], args.spectral_every)[0])
        speed = {arch: statistics.median(values) for arch, values in runs.items()}
        for arch in cells:
            label = "nn.RNN (tanh)" if arch == "rnn_tanh" else arch
            print(f"{size:<10} {label:<18} {speed[arch]:>9,.0f} {speed[arch] / speed['rnn_tanh']:>8.3f}", flush=True)
    print("\nLRU training step (plain loop, same modules): linear_recurrence against autograd through a step loop")
    print(f"{'size':<10} {'ours tok/s':>10} {'loop tok/s':>10} {'ours/loop':>9}")
    for size in args.sizes:
        ids, vocab, shape = corpus(size)
        cell = make_cell("lru", shape["hidden"], shape["layers"], shape["bptt"], shape["batch"])
        runs = {"ours": [], "loop": []}
        for recurrence in (linear_recurrence, linear_loop):  # warm up
            bare(cell, ids, vocab, 2, recurrence=recurrence)
        for _ in range(args.repeats):
            runs["ours"].append(bare(cell, ids, vocab, shape["steps"], recurrence=linear_recurrence))
            runs["loop"].append(bare(cell, ids, vocab, shape["steps"], recurrence=linear_loop))
        fast, loop = statistics.median(runs["ours"]), statistics.median(runs["loop"])
        print(f"{size:<10} {fast:>10,.0f} {loop:>10,.0f} {fast / loop:>9.2f}", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=None, help="default: 1 (CPU time), 1 2 (--wall)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--spectral-every", type=int, default=20, help="as training.spectral_every")
    parser.add_argument("--archs", nargs="+", default=None, help="default: every arch (CPU time), lstm (--wall)")
    parser.add_argument("--sizes", nargs="+", default=None, choices=list(SIZES) + list(TASK_SIZES))
    parser.add_argument("--tasks", action="store_true", help="long-range task runs (sizes: adding, copy)")
    parser.add_argument("--wall", action="store_true", help="wall clock, in the job's environment")
    parser.add_argument("--remedies", action="store_true",
                        help="every remedy against nn.RNN of the same size; the LRU's training step")
    parser.add_argument("--scans", action="store_true", help="each linear recurrence's scan against its step loop")
    parser.add_argument("--cores", type=int, default=8, help="--wall: the `snakemake --cores` to emulate")
    parser.add_argument("--envs", nargs="+", default=["plain"], help=f"any of {list(ENVIRONMENTS)} or NAME:VAR=VALUE")
    parser.add_argument("--worker", choices=["ours", "bare"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.sizes[0], args.archs[0], args.threads[0], args.spectral_every)
    if args.wall:
        for spec in args.envs:  # NAME:VAR=VALUE, an environment to try beside the presets
            if ":" in spec:
                name, assignment = spec.split(":", 1)
                variable, value = assignment.split("=", 1)
                ENVIRONMENTS[name] = lambda threads, cores, pair={variable: value}: dict(pair)
        args.envs = [spec.split(":", 1)[0] for spec in args.envs]
        args.threads_list = args.threads or [1, 2]
        args.archs, args.sizes = args.archs or ["lstm"], args.sizes or ["zaremba"]
        return wall(args)
    args.threads = (args.threads or [1])[0]
    torch.set_num_threads(args.threads)
    if args.remedies:
        args.sizes = args.sizes or ["ptb-small", "char"]
        return remedies(args)
    if args.scans:
        return scans(args)
    if args.tasks:
        args.archs, args.sizes = args.archs or ["rnn_tanh", "irnn", "lstm", "gru"], args.sizes or list(TASK_SIZES)
        return task_speeds(args)
    args.archs, args.sizes = args.archs or archs.names(), args.sizes or ["ptb-small", "char"]
    print(f"torch {torch.__version__}, {args.threads} thread(s), median of {args.repeats}, "
          f"spectral stats every {args.spectral_every} steps")
    print(f"{'size':<10} {'arch':<12} {'bare tok/s':>11} {'ours tok/s':>11} {'ratio':>6} "
          f"{'ours-nospec':>11} {'ratio':>6} {'spec/run':>8}")
    ratios = {"ours": [], "nospec": []}
    for size in args.sizes:
        ids, vocab, shape = corpus(size)
        steps = shape["steps"]
        for arch in args.archs:
            cell = make_cell(arch, shape["hidden"], shape["layers"], shape["bptt"], shape["batch"])
            ours(cell, ids, vocab, 2, args.spectral_every), bare(cell, ids, vocab, 2)  # warm up
            runs = {"bare": [], "ours": [], "nospec": []}
            for _ in range(args.repeats):
                runs["bare"].append(bare(cell, ids, vocab, steps))
                speed, spectral = ours(cell, ids, vocab, steps, args.spectral_every)
                runs["ours"].append(speed)
                runs["nospec"].append(ours(cell, ids, vocab, steps, 10 ** 9)[0])
            speed = {name: statistics.median(values) for name, values in runs.items()}
            for name in ratios:
                ratios[name].append(speed[name] / speed["bare"])
            print(f"{size:<10} {arch:<12} {speed['bare']:>11,.0f} {speed['ours']:>11,.0f} "
                  f"{speed['ours'] / speed['bare']:>6.3f} {speed['nospec']:>11,.0f} "
                  f"{speed['nospec'] / speed['bare']:>6.3f} {spectral:>8}", flush=True)
    for name, values in ratios.items():
        label = "ours" if name == "ours" else "ours-nospec"
        print(f"{label}/bare: geometric mean {float(np.exp(np.mean(np.log(values)))):.3f}, min {min(values):.3f}")


if __name__ == "__main__":
    main()
