"""Orthogonal RNN: a tanh nn.RNN whose every W_hh is exactly orthogonal during training.

torch's orthogonal parametrization: W_hh = B expm(A - A^T), the optimizer moves A, and B
is the initial (Haar) draw, never re-based during training: the *static* trivialisation
of Lezcano-Casado & Martinez-Rubio 2019 (their dynamic one, expRNN's dtriv, re-bases B
every K steps; static is its K = infinity). `rnn.weight_hh_l{k}` reads the materialised
matrix, and checkpoints hold it under nn.RNN's names, so they load into a plain nn.RNN.
"""

import torch
from torch import nn
from torch.nn.utils.parametrizations import orthogonal

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, VanillaRNN, scaled_orthogonal


@register
class OrthogonalRNN(VanillaRNN):
    name, label, colour, family = "orthogonal_rnn", "orthogonal RNN", "#56B4E9", "remedy"  # sky blue
    reference = ("Arjovsky, Shah & Bengio 2016; Lezcano-Casado & Martinez-Rubio 2019 (static trivialisation); "
                 "torch.nn.utils.parametrizations.orthogonal")
    equation = "tanh RNN with W_hh = B expm(A - A^T), exactly orthogonal at every step"
    gamma = 1.0
    fixed = {"init": "orthogonal", "init_scale": NOT_APPLICABLE}  # orthogonal at every step: no scale

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        rnn = nn.RNN(input_size, hidden_size, num_layers, nonlinearity="tanh")
        for layer in range(num_layers):
            orthogonal(rnn, f"weight_hh_l{layer}")
        return rnn

    def initialise(self, model, generator, cell, task_run):
        """W_hh a random orthogonal matrix (Haar), assigned through the parametrization."""
        for layer in range(model.num_layers):
            setattr(model.rnn, f"weight_hh_l{layer}", scaled_orthogonal(model.hidden_size, 1.0, generator))

    def plain_state_dict(self, model):
        """W_hh materialised under nn.RNN's names (`rnn.weight_hh_l{k}`), so it loads into a plain nn.RNN.

        (Resuming a run uses state_dict(), which keeps the parametrization's own tensors, so
        a resumed run continues bitwise as if never stopped.)
        """
        state = model.state_dict()
        plain = {key: value for key, value in state.items() if ".parametrizations." not in key}
        for layer in range(model.num_layers):
            plain[f"rnn.weight_hh_l{layer}"] = getattr(model.rnn, f"weight_hh_l{layer}").detach().clone()
        # nn.RNN's own order inside `rnn.`; every other tensor (a task run's input layer has a bias) as is.
        rnn_order = [f"rnn.{name}" for name in nn.RNN(1, 1, model.num_layers).state_dict()]
        inputs = [key for key in plain if key.startswith("embedding.")]
        rest = [key for key in plain if key not in inputs and key not in rnn_order]
        return {key: plain[key] for key in [*inputs, *rnn_order, *rest]}

    def load_plain_state_dict(self, model, state):
        """The materialised W_hh becomes the base of the parametrization (kept as is when
        orthogonal to float precision)."""
        state = dict(state)
        matrices = {layer: state.pop(f"rnn.weight_hh_l{layer}") for layer in range(model.num_layers)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(".parametrizations." not in key for key in missing):
            raise KeyError(f"orthogonal_rnn checkpoint: unexpected keys {unexpected}, missing {missing}")
        with torch.no_grad():
            for layer, matrix in matrices.items():
                setattr(model.rnn, f"weight_hh_l{layer}", matrix)
