"""The unrolled windows: every step of every layer in float64, through the arch's step function
(rnngrad.archs), with a zero probe on every state, input and recurrent pre-activation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def layer_weights(model) -> list[dict[str, torch.Tensor]]:
    """float64 copies of each layer's weights as the arch's step function reads them (archs.Arch.layer_weights)."""
    spec = model.spec
    return [{name: value.detach().double().clone() for name, value in spec.layer_weights(model.rnn, layer).items()}
            for layer in range(model.num_layers)]


def embed(model, inputs: torch.Tensor) -> torch.Tensor:
    """The input layer in float64: embedding rows of tokens, or the linear layer of a task's real inputs."""
    layer = model.embedding
    if isinstance(layer, torch.nn.Embedding):
        return F.embedding(inputs, layer.weight.detach().double())
    return F.linear(inputs.double(), layer.weight.detach().double(), layer.bias.detach().double())


def task_loss_fn(model, name: str, targets: torch.Tensor):
    """The probe's loss of a task, per window: ONE output step's loss, so that every lag k of
    g(k) = ||dL/dh_{T-k}|| is a distance from that step (tasks.dependency_lags).

    Adding: the squared error of the last step's prediction (targets (W,)). Copy and
    selective copy: the cross-entropy of the last recall step, whose symbol was shown T +
    copy_length steps before it (copy) or at the sequence's own last symbol position
    (selective copy) (targets (W, steps)). From the top layer's outputs (steps, W, H); float64,
    weights detached.
    """
    weight, bias = model.decoder.weight.detach().double(), model.decoder.bias.detach().double()
    if name == "adding":
        return lambda outputs: (F.linear(outputs[-1], weight, bias)[:, 0] - targets.double()) ** 2
    last_symbol = targets[:, -1]
    return lambda outputs: F.cross_entropy(F.linear(outputs[-1], weight, bias), last_symbol, reduction="none")


@dataclass
class Unrolled:
    """The graph of one batch of windows (time index t = 0..K, lag k = K - t)."""

    loss: torch.Tensor               # (W,) cross-entropy per window
    hidden: list                     # [layer][t] h_t (probes added), t = 0..K (LRU: the complex state x_t)
    prev_hidden: list                # [layer] h before t = 0 (end of burn-in, no grad)
    prev_state: list                 # [layer] full state before t = 0 ((h, c) for LSTM)
    x_proj: list                     # [layer] (K+1, W, G*H) input projections, detached (LRU: complex)
    states: list                     # [layer][t] full states, detached (for Jacobians)
    probes: dict                     # 'h', 'c', 'e': [layer] (K+1, W, D) leaves; 'x': (K+1, W, H)


def unroll(model, tokens: torch.Tensor, burn_in: int, weights: list | None = None,
           probe_values: dict | None = None, loss_fn=None) -> Unrolled:
    """Run the windows cell by cell in float64 with zero probes on every state.

    tokens: (W, B + K + 2) int64, the last token of each window its target. `weights`
    defaults to layer_weights(model); pass tensors that require grad to differentiate with
    respect to them. `probe_values` (tests: finite differences) replaces chosen zero
    probes, {('h', layer, t): tensor}. With `loss_fn` (a task's, task_loss_fn), `tokens`
    are the inputs (W, steps[, features]) and loss_fn maps the top layer's outputs
    (steps - burn_in, W, H) to one loss per window.
    """
    spec = model.spec
    weights = layer_weights(model) if weights is None else weights
    probe_values = probe_values or {}
    if loss_fn is None:
        inputs, target = tokens[:, :-1].t(), tokens[:, -1]
        decoder = (model.decoder.weight.detach().double(), model.decoder.bias.detach().double())

        def loss_fn(outputs):  # the next token after the last step
            return F.cross_entropy(F.linear(outputs[-1], *decoder), target, reduction="none")
    else:
        inputs = tokens.transpose(0, 1)
    n_windows, steps = tokens.shape[0], inputs.shape[0] - burn_in
    x = embed(model, inputs)

    def zero_state():
        zeros = x.new_zeros(n_windows, model.state_width)
        if spec.complex_state:
            zeros = torch.complex(zeros, zeros)
        return tuple(zeros.clone() if i else zeros for i in range(len(spec.states)))

    def probe(kind, layer, width):
        """One zero leaf (K+1, W, width) per kind and layer; step t adds its slice t.

        A single leaf per kind (sliced by unbind) keeps the graph small: its gradient
        is every step's gradient at once. A complex state's probes (and e's) are complex.
        """
        dtype = torch.complex128 if spec.complex_state and kind != "x" else x.dtype
        value = x.new_zeros(steps, n_windows, width, dtype=dtype)
        for (which, where, t), given in probe_values.items():
            if (which, where) == (kind, layer):
                value[t] = given
        return value.requires_grad_(True)

    # Burn-in: no gradient, from a zero state.
    prev_state, layer_input = [], x[:burn_in]
    with torch.no_grad():
        for w in weights:
            state = zero_state()
            if burn_in:
                projected = spec.project_input(w, layer_input)
                outputs = []
                for t in range(burn_in):
                    state = spec.step(w, projected[t], state)
                    outputs.append(state[0])
                layer_input = spec.layer_output(w, layer_input, torch.stack(outputs))
            prev_state.append(state)

    width, kinds = model.state_width, spec.states + ("e",)
    probes = {"x": probe("x", 0, model.hidden_size), **{kind: [] for kind in kinds}}
    layer_input = x[burn_in:] + probes["x"]
    hidden, prev_hidden, x_proj, states = [], [], [], []
    for layer, w in enumerate(weights):
        projected = spec.project_input(w, layer_input)
        # unbind: one backward node for all steps (indexing projected[t] would make
        # every step's backward write a zero tensor the size of all steps).
        projected_steps = projected.unbind(0)
        state = prev_state[layer]
        layer_probes = {kind: probe(kind, layer, len(spec.gates) * width if kind == "e" else width)
                        for kind in kinds}
        steps_of = {kind: leaf.unbind(0) for kind, leaf in layer_probes.items()}
        outputs, layer_states = [], []
        for t in range(steps):
            probed = set()

            def add_probe(name, value, t=t):  # a state the arch perturbs where it computes it
                probed.add(name)
                return value + steps_of[name][t]

            e = spec.recurrent_input(w, state[0]) + steps_of["e"][t]
            state = spec.update(w, projected_steps[t], state, e, add_probe)
            state = tuple(value if name in probed else value + steps_of[name][t]
                          for name, value in zip(spec.states, state))
            outputs.append(state[0])
            layer_states.append(tuple(value.detach() for value in state))
        for kind, leaf in layer_probes.items():
            probes[kind].append(leaf)
        hidden.append(outputs)
        prev_hidden.append(prev_state[layer][0])
        x_proj.append(projected.detach())
        states.append(layer_states)
        layer_input = spec.layer_output(w, layer_input, torch.stack(outputs))
    loss = loss_fn(layer_input)
    return Unrolled(loss, hidden, prev_hidden, prev_state, x_proj, states, probes)
