"""Every registered architecture gets these tests with no test code of its own (rnngrad.archs).

The archs are the built-in ones and the example of a user's own (examples/leaky_rnn.py).
References are computed independently of the probe's unroll: a plain float64 loop over
the arch's step function with a perturbation added to one state (central differences),
and the arch's training module run in float64.
"""

from __future__ import annotations

import copy
import inspect
import math

import numpy as np
import pytest
import torch
from conftest import ROOT
from torch import nn

from rnngrad import archs, probe
from rnngrad.archs import palette
from rnngrad.archs.base import Arch, ArchError
from rnngrad.config import ConfigError, validate_config
from rnngrad.model import build_model, load_checkpoint, save_checkpoint

EXAMPLE = ROOT / "examples" / "leaky_rnn.py"
EXAMPLE_ARCH = "leaky_rnn"
ARCHS = [*archs.names(), EXAMPLE_ARCH]  # the example registers while this module's tests run (example_arch)
VOCAB, HIDDEN, LAYERS, BURN_IN, MAX_LAG = 11, 4, 2, 3, 5


@pytest.fixture(autouse=True, scope="module")
def example_arch():
    """The example's arch registered for this module only: the registry is one per process, and the
    other test modules compare it with a config that names no arch file."""
    archs.load_arch_files([EXAMPLE])
    yield
    archs.unregister(EXAMPLE_ARCH)


def tiny(arch: str, seed: int = 0):
    """A two-layer model of `arch` with weights large enough that every lag's gradient is far from rounding."""
    return build_model(arch, VOCAB, HIDDEN, LAYERS, init_scale=1.1, seed=seed, bptt=MAX_LAG + 1)


def windows(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.as_tensor(np.random.default_rng(seed).integers(0, VOCAB, size=(n, BURN_IN + MAX_LAG + 2)))


def plain_loss(model, tokens: torch.Tensor, perturb: dict | None = None) -> torch.Tensor:
    """The probe's loss by a plain loop over the arch's step function, float64, no probe machinery:
    `perturb` = {(state name, layer, t): tensor (W, H)} is added to that state where step t makes it
    (through the step's `probe` callback for a state the arch passes through it, so that the LSTM's
    c is perturbed before h_t = o_t tanh(c_t) reads it: the total derivative), else after the step."""
    spec, perturb = model.spec, perturb or {}
    weights = probe.layer_weights(model)
    inputs = tokens[:, :-1].t()
    x = torch.nn.functional.embedding(inputs, model.embedding.weight.detach().double())
    layer_input = x
    for layer, w in enumerate(weights):
        zeros = x.new_zeros(tokens.shape[0], model.state_width)
        zeros = torch.complex(zeros, zeros) if spec.complex_state else zeros
        state = tuple(zeros.clone() for _ in spec.states)
        projected, outputs = spec.project_input(w, layer_input), []
        for step in range(inputs.shape[0]):
            deltas = {name: perturb.get((name, layer, step - BURN_IN)) for name in spec.states}
            inside = set()

            def add(name, value):
                inside.add(name)
                return value if deltas[name] is None else value + deltas[name]

            state = spec.step(w, projected[step], state, add)
            state = tuple(value if name in inside or deltas[name] is None else value + deltas[name]
                          for name, value in zip(spec.states, state))
            outputs.append(state[0])
        layer_input = spec.layer_output(w, layer_input, torch.stack(outputs))
    logits = torch.nn.functional.linear(layer_input[-1], model.decoder.weight.detach().double(),
                                        model.decoder.bias.detach().double())
    return torch.nn.functional.cross_entropy(logits, tokens[:, -1], reduction="none")


def central_difference_norms(model, tokens, name: str, layer: int, eps: float = 1e-6) -> np.ndarray:
    """||dL_w/d state_{T-k}|| for every window w and lag k = 0..K, by central differences coordinate by
    coordinate (a complex state's real and imaginary parts both)."""
    parts = (1.0, 1j) if model.spec.complex_state else (1.0,)
    norms = np.zeros((tokens.shape[0], MAX_LAG + 1))
    for t in range(MAX_LAG + 1):
        squares = np.zeros(tokens.shape[0])
        for unit in range(model.state_width):
            for part in parts:
                delta = torch.zeros(tokens.shape[0], model.state_width, dtype=torch.complex128 if part == 1j
                                    else torch.float64)
                delta[:, unit] = eps * part
                up = plain_loss(model, tokens, {(name, layer, t): delta})
                down = plain_loss(model, tokens, {(name, layer, t): -delta})
                squares += ((up - down) / (2 * eps)).numpy() ** 2
        norms[:, MAX_LAG - t] = np.sqrt(squares)
    return norms


# ---------------------------------------------------------------- the declaration


@pytest.mark.parametrize("arch", ARCHS)
def test_every_arch_declares_what_the_pipeline_asks(arch):
    spec = archs.get(arch)
    assert spec.name == arch and spec.label and spec.reference and spec.family in ("vanilla", "gated", "remedy",
                                                                                     "other")
    assert spec.states[0] == "h" and len(set(spec.states)) == len(spec.states)
    assert (spec.colour, spec.linestyle) in palette.PALETTE
    assert archs.arch_file(arch).is_file()
    for key, hyperparameter in spec.hyperparameters.items():
        assert {"default", "description"} <= set(hyperparameter), key
    assert spec.gamma is None or 0 < spec.gamma <= 1


def test_the_palette_has_16_distinct_styles_and_every_arch_its_own():
    assert len(set(palette.PALETTE)) == len(palette.PALETTE) >= 16
    styles = [(spec.colour, spec.linestyle) for spec in archs.all_archs()]
    assert len(set(styles)) == len(styles)
    assert len({colour for colour, _ in palette.PALETTE}) == len(palette.PALETTE), "no hue twice"


# ---------------------------------------------------------------- the step function


@pytest.mark.parametrize("arch", ARCHS)
def test_probe_gradients_equal_central_differences_of_a_plain_loop_at_every_lag(arch):
    """g(k) of every named state of both layers, window by window, against central differences of plain_loss."""
    torch.set_num_threads(1)
    model = tiny(arch)
    tokens = windows()
    result = probe.probe_model(model, tokens.numpy(), BURN_IN)
    np.testing.assert_allclose(result["loss"], plain_loss(model, tokens).numpy(), rtol=1e-12)
    for name in model.spec.states:
        for layer in range(LAYERS):
            expected = central_difference_norms(model, tokens, name, layer)
            assert np.all(expected[:, 0] > 1e-8), "lag 0 must carry a gradient for the comparison to mean anything"
            np.testing.assert_allclose(result[name][layer], expected, rtol=1e-6, atol=1e-9,
                                       err_msg=f"{arch} state {name} layer {layer}")


@pytest.mark.parametrize("arch", ARCHS)
def test_the_training_module_computes_what_the_step_function_does(arch):
    """The fused training module in float64 against the plain loop over the step function, all layers."""
    model = tiny(arch, seed=3)
    tokens = windows(3, seed=1)
    fused = copy.deepcopy(model).double()
    with torch.no_grad():
        output, final = fused.rnn(fused.embedding(tokens[:, :-1].t()), fused.init_hidden(3))
        expected = nn.functional.cross_entropy(fused.decoder(output[-1]), tokens[:, -1], reduction="none")
    np.testing.assert_allclose(plain_loss(model, tokens).numpy(), expected.numpy(), rtol=1e-11)
    unrolled = probe.unroll(model, tokens, BURN_IN)
    finals = final if isinstance(final, tuple) else (final,)
    for layer in range(LAYERS):
        for ours, theirs in zip(unrolled.states[layer][-1], finals):
            assert torch.allclose(ours, theirs[layer].to(ours.dtype), rtol=0, atol=1e-12), (arch, layer)


@pytest.mark.parametrize("arch", ARCHS)
def test_step_jacobians_equal_torch_func_and_their_products_the_loss_free_chain(arch):
    """The closed form (where the arch gives one) against torch.func's; the probe's Jacobian product
    norms against the product of torch.func Jacobians, by SVD."""
    model = tiny(arch, seed=2)
    unrolled = probe.unroll(model, windows(3, seed=4), BURN_IN)
    flat = probe.flatten_state
    for layer, weights in enumerate(probe.layer_weights(model)):
        prev = torch.cat([flat(unrolled.prev_state[layer])] + [flat(s) for s in unrolled.states[layer][:-1]])
        x_proj = unrolled.x_proj[layer].flatten(0, 1)
        reference = probe.step_jacobians_autograd(arch, weights, prev, x_proj)
        closed = model.spec.step_jacobian(weights, prev, x_proj)
        if closed is not None:
            closed = torch.diag_embed(closed) if closed.dim() == 2 else closed  # a diagonal Jacobian's diagonal
            assert torch.allclose(closed, reference, rtol=1e-12, atol=1e-14), (arch, layer)
    result = probe.probe_model(model, windows(3, seed=4).numpy(), BURN_IN, jacobian_windows=3)
    for layer, weights in enumerate(probe.layer_weights(model)):
        for window in range(3):
            states = [unrolled.prev_state[layer]] + unrolled.states[layer][:-1]
            prev = torch.stack([flat(tuple(s[window] for s in state)) for state in states])
            jac = probe.step_jacobians_autograd(arch, weights, prev, unrolled.x_proj[layer][:, window])
            product = torch.eye(jac.shape[1], dtype=jac.dtype)
            for k in range(MAX_LAG + 1):
                norm = torch.linalg.matrix_norm(product, ord=2).item()
                expected = math.log10(norm) if norm > 0 else -math.inf  # ReLU units all off: censored
                assert result["jacobian"][layer, window, k] == pytest.approx(expected, abs=1e-9), (layer, window, k)
                product = product @ jac[MAX_LAG - k]


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("arch", ARCHS)
def test_checkpoint_round_trip_and_plain_pytorch_load(arch, tmp_path):
    model = tiny(arch, seed=5)
    path = tmp_path / "step.pt"
    save_checkpoint(path, model, {"arch": arch, "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_layers": LAYERS,
                                  "bptt": MAX_LAG + 1, **model.spec.options({})}, step=0, tokens_seen=0)
    loaded, _ = load_checkpoint(path)
    tokens = windows(2, seed=6)[:, :-1].t()
    with torch.no_grad():
        ours = model(tokens, model.init_hidden(2))[0]
        again = loaded(tokens, loaded.init_hidden(2))[0]
    assert torch.equal(ours, again)
    if model.spec.torch_module is None:
        return
    state = torch.load(path, weights_only=True)["state_dict"]
    kind = getattr(nn, model.spec.torch_module.removeprefix("nn."))
    options = {"nonlinearity": "relu" if model.spec.activation is torch.relu else "tanh"} if kind is nn.RNN else {}
    plain = kind(HIDDEN, HIDDEN, LAYERS, **options)
    plain.load_state_dict({key.removeprefix("rnn."): value for key, value in state.items() if key.startswith("rnn.")})
    embedded = nn.functional.embedding(tokens, state["embedding.weight"])
    with torch.no_grad():
        output = plain(embedded, model.init_hidden(2))[0]
        logits = nn.functional.linear(output, state["decoder.weight"], state["decoder.bias"])
    assert torch.allclose(logits, ours, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- training


@pytest.mark.parametrize("arch", ARCHS)
def test_divergence_is_recorded(arch, tmp_path):
    from test_training import make_cell, make_training, read_outputs, train, write_tokens

    tokens = write_tokens(tmp_path)
    # weights near float32's largest: the first forward pass overflows, whatever the recurrence
    cell = make_cell(arch=arch, num_layers=1, clip=None)
    summary = train(cell, make_training(init_range=1e37), tokens, tmp_path / "run")
    assert summary["status"] == read_outputs(tmp_path / "run")[0]["status"] == "diverged", arch


@pytest.mark.slow
@pytest.mark.parametrize("arch", ARCHS)
def test_sigkill_and_resume_is_bitwise(arch, tmp_path, monkeypatch):
    from conftest import kill_and_resume
    from test_training import assert_same_numbers, make_cell, make_training, read_outputs, write_tokens

    monkeypatch.setenv(archs.ARCH_FILES_ENV, str(EXAMPLE))  # the child processes register the example
    tokens = write_tokens(tmp_path)
    cell = make_cell(arch=arch, num_layers=1, hidden_size=8, epochs=2)
    settings = make_training(max_tokens=None, checkpoints=[0.0, 0.5, 1.0])
    _, run_dir, resumed_from = kill_and_resume(cell, settings, tokens, tmp_path, 20)
    assert resumed_from >= 20
    assert_same_numbers(read_outputs(tmp_path / "reference"), read_outputs(run_dir))


# ---------------------------------------------------------------- a user's own file


def write(tmp_path, text: str, name: str = "my_arch.py"):
    path = tmp_path / name
    path.write_text(inspect.cleandoc(text) + "\n")
    return str(path)


GOOD = '''
    import torch
    from rnngrad.archs import register
    from rnngrad.archs.base import VanillaRNN

    @register
    class Softsign(VanillaRNN):
        name, label, reference = "{name}", "softsign RNN", "a test"
        activation = staticmethod(torch.nn.functional.softsign)
        def recurrent(self, input_size, hidden_size, num_layers, options, steps):
            raise NotImplementedError
'''


@pytest.mark.parametrize("text,expected", [
    (None, "does not exist"),
    ("def broken(:\n    pass", "line 1: syntax error"),
    ("raise RuntimeError('boom')", "failed while loading: RuntimeError: boom"),
    ("x = 1", "registers no arch"),
    (GOOD.replace(', reference = "{name}", "softsign RNN", "a test"', ' = "no_reference", "softsign RNN"'),
     "lacks ['reference']"),
    (GOOD.format(name="lstm"), "arch name 'lstm' is already registered by"),
    (GOOD.format(name="clash") + "        hyperparameters = {'forget_bias': {'default': 1.0, 'description': 'x'}}",
     "already declare"),
])
def test_a_bad_arch_file_fails_before_any_job_naming_the_file_and_the_problem(tmp_path, text, expected):
    path = str(tmp_path / "missing.py") if text is None else write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        validate_config({"arch_files": [path]})
    assert expected in str(error.value) and path.split("/")[-1] in str(error.value)


def test_an_arch_without_its_step_is_refused():
    class NoStep(Arch):
        name, label, reference = "no_step", "no step", "a test"

    with pytest.raises(ArchError, match="lacks update"):
        archs.register(NoStep)


def test_a_users_arch_becomes_a_grid_value_with_its_own_hyperparameters():
    config = validate_config({"arch_files": [str(EXAMPLE)], "grid": {"arch": ["rnn_tanh", "leaky_rnn"],
                                                                     "leaky_rnn_rate": [0.5, 0.25]}})
    assert config["grid"]["leaky_rnn_rate"] == [0.5, 0.25]
    with pytest.raises(ConfigError, match="leaky_rnn_rate.0: 2 is out of range"):
        validate_config({"arch_files": [str(EXAMPLE)], "grid": {"leaky_rnn_rate": [2]}})


# ---------------------------------------------------------------- figures


def test_every_comparison_figure_names_every_arch_in_its_colour(tmp_path):
    """Synthetic tables of a grid with every registered arch (the example too): each figure that
    compares archs names each one, and a legend entry that names one has its colour."""
    import matplotlib.pyplot as plt
    import pandas as pd
    from synthetic_tables import make_tables, write_tables
    from test_remedies import SINGLE_FAMILY_FIGURES, assert_names_the_remedies_in_their_colours

    from rnngrad import figures
    from rnngrad.figures import style

    paths = write_tables(make_tables({"arch": ARCHS, "hidden_size": [32], "seed": [0]}, steps=40, max_lag=20),
                         tmp_path)
    frames = {name: pd.read_csv(path, low_memory=False) for name, path in paths.items()}
    for name in figures.figures_for("corpus"):
        if name in SINGLE_FAMILY_FIGURES:
            continue
        spec = figures.FIGURES[name]
        with plt.rc_context(style.RC):
            fig = spec.function(**{table: frames[table] for table in spec.tables})
        # Pascanu's bound against the fitted slopes: the archs that have one (the others are named in a note)
        shown = archs.bounded() if name == "theory_vs_measurement" else ARCHS
        assert_names_the_remedies_in_their_colours(fig, name, remedies=shown)
        plt.close(fig)


# ---------------------------------------------------------------- a user's arch end to end


@pytest.mark.slow
@pytest.mark.parametrize("name", ["test_user_arch.yaml", "test_user_arch_task.yaml"])
def test_a_users_arch_from_its_own_file_runs_end_to_end(tmp_path, name):
    """examples/leaky_rnn.py named in a config: trained, probed, in the tables, drawn in its colour, in the report."""
    import shutil

    import matplotlib.pyplot as plt
    import pandas as pd
    import yaml
    from conftest import run_snakemake
    from test_remedies import assert_names_the_remedies_in_their_colours

    from rnngrad import figures
    from rnngrad.figures import style
    from rnngrad.grid import expand_grid

    (tmp_path / "examples").mkdir()
    shutil.copy2(EXAMPLE, tmp_path / "examples" / EXAMPLE.name)  # arch_files are relative to the work dir
    config = yaml.safe_load((ROOT / "config" / name).read_text())
    config["data_dir"] = str(ROOT / "data")  # the tests' shared tokens
    configfile = tmp_path / name
    configfile.write_text(yaml.safe_dump(config))
    run_snakemake(tmp_path, "--configfile", str(configfile))
    config = validate_config(config)
    tables = tmp_path / config["results_dir"] / "tables"
    runs = pd.read_csv(tables / "runs.csv")
    cells = expand_grid(config["grid"], config["exclude"], config.get("task"))
    assert len(runs) == len(cells) and (runs["status"] == "ok").all() and "leaky_rnn" in set(runs["arch"])
    summary = pd.read_csv(tables / "gradient_summary.csv")
    leaky = summary[(summary["arch"] == "leaky_rnn") & (summary["state"] == "h")]
    assert len(leaky) and np.isfinite(leaky["slope"]).all()
    kind = "task" if "task" in config else "corpus"
    for figure_name in figures.figures_for(kind):
        spec = figures.FIGURES[figure_name]
        assert (tables.parent / "figures" / f"{figure_name}.png").stat().st_size > 5_000
        if figure_name in ("lstm_cell_state", "init_scale_effect", "theory_vs_measurement"):
            continue  # one family each (the LSTM; the vanilla RNNs; the archs with Pascanu's bound)
        frames = {table: pd.read_csv(tables / f"{table}.csv", low_memory=False) for table in spec.tables}
        with plt.rc_context(style.RC):
            fig = spec.function(**frames)
        assert_names_the_remedies_in_their_colours(fig, figure_name, remedies=("rnn_tanh", "leaky_rnn"))
        plt.close(fig)
    report = tmp_path / "report.html"
    run_snakemake(tmp_path, "--report", str(report), "--configfile", str(configfile))
    assert "leaky_rnn" in report.read_text()
