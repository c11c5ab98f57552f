"""What an architecture declares, in one class: `Arch`.

A subclass (one file per arch, registered with `rnngrad.archs.register`) gives, in one place:

- identity: `name` (the grid's `arch` value), `label`, `colour` and `linestyle` (a palette
  entry, rnngrad.archs.palette; None takes the palette's next free one), `family` (figure
  order and groups), `reference` (paper, code), `equation` (one line for the docs);
- its own hyperparameters, `hyperparameters` = {key: JSON schema of one value + `default`,
  `description`, optional `label` (figures) and `reference` (the value figures hold it at
  when a grid has several)}: grid keys that only this arch reads. A run path names one only when it
  differs from its default, so a hyperparameter added later (whose default is the arch as
  it was) renames and retrains nothing. `fixed`: shared grid keys the arch fixes
  (the IRNN's `init: identity`; NOT_APPLICABLE for keys it ignores);
- training: `recurrent()` builds the fused torch module (torch.nn's where one exists, so
  checkpoints load into it), `initialise()` its weights, `recurrent_weights()` the matrices
  whose largest singular value is Pascanu's lambda_1, `gates` their stacked blocks,
  `parameter_groups()` the optimizer's groups (a group's `lr_scale` scales its learning rate);
- the probe, in float64 on one layer's weights (`layer_weights`): the state layout `states`
  (named states, each of width `state_width()`: H unless the arch says otherwise;
  `complex_state`), and one step split in two so that the probe can perturb the recurrent
  pre-activation e_t: `recurrent_input(w, h_{t-1})` gives e_t,
  `update(w, x_proj_t, state_{t-1}, e_t, probe)` the new state tuple. An arch with several
  named states passes each through `probe(name, value)` when it computes it (so the
  probe's gradient is the total derivative); a single-state arch may ignore `probe`.
  `step_jacobian` is an optional closed form of d state_t / d state_{t-1} (dense, or its
  diagonal where the Jacobian is diagonal); without one the probe takes torch.func's.
  `diagonal`: e_t acts unit by unit (its temporal contribution is elementwise); `gamma`: the
  bound on the activation's derivative where Pascanu's bound applies, None where it does not;
- resource estimates: `square_matrices` and `vectors` (H x H matrices and H-vectors per
  layer), `jacobian_cost` and `jacobian_tensors` (rnngrad.resources).

The defaults below are those of a torch.nn-style RNN layer (weight_ih_l{k}, weight_hh_l{k},
bias_ih_l{k}, bias_hh_l{k}, the gate blocks stacked in W_hh).
"""

from __future__ import annotations

import math

import torch
from torch import nn

NOT_APPLICABLE = "na"
INITS = ("orthogonal", "identity", "uniform", "default")
WEIGHT_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
FAMILIES = ("vanilla", "gated", "remedy", "other")
# What every arch must give (register() checks).
REQUIRED = ("name", "label", "family", "reference")


class ArchError(ValueError):
    """An architecture (a user's file) that cannot be used; the message names the file and the problem."""


class Arch:
    name: str = ""
    label: str = ""
    colour: str | None = None
    linestyle: str = "-"
    family: str = "other"
    reference: str = ""
    equation: str = ""  # one line, for docs/architectures.md
    hyperparameters: dict[str, dict] = {}
    fixed: dict = {}
    gates: tuple[str, ...] = ("h",)
    states: tuple[str, ...] = ("h",)
    complex_state: bool = False
    diagonal: bool = False
    gamma: float | None = None
    torch_module: str | None = None  # the torch.nn class its checkpoints load into, if any
    square_matrices: int | None = None  # default: W_ih and W_hh per gate
    vectors: int | None = None          # default: b_ih and b_hh per gate
    jacobian_cost: float = 1.0
    jacobian_tensors: float = 2.5

    # ------------------------------------------------------------ declaration checks

    def check(self) -> None:
        """Fail on an inconsistent declaration (register() calls it)."""
        where = f"arch {self.name!r}"
        if self.family not in FAMILIES:
            raise ArchError(f"{where}: family {self.family!r} is not one of {list(FAMILIES)}")
        if not self.states or self.states[0] != "h":
            raise ArchError(f"{where}: states {self.states!r} must start with 'h' (what a layer passes on)")
        for key, spec in self.hyperparameters.items():
            if "default" not in spec or "description" not in spec:
                raise ArchError(f"{where}: hyperparameter {key!r} needs a default and a description")
        if type(self).update is Arch.update:
            raise ArchError(f"{where}: lacks update() (one recurrent step)")

    def options(self, values: dict) -> dict:
        """This arch's hyperparameters from a cell (or keyword arguments), defaults where absent."""
        return {key: values.get(key, spec["default"]) for key, spec in self.hyperparameters.items()}

    def validate(self, cell: dict) -> str | None:
        """A message when a grid cell's values do not make a valid run of this arch (config check)."""
        return None

    # ------------------------------------------------------------ training

    def recurrent(self, input_size: int, hidden_size: int, num_layers: int, options: dict, steps: int) -> nn.Module:
        """The training module: (inputs (T, B, in), hidden) -> (outputs (T, B, H), hidden).
        `steps`: what backpropagation unrolls (bptt, or a task's whole sequence)."""
        raise NotImplementedError

    def state_width(self, hidden_size: int, options: dict) -> int:
        """The width of each named state (and of the hidden state between batches) at hidden size H
        and this arch's `options` (defaults filled in): H, unless the state is wider than what a
        layer passes up (the S6's H x N SSM state)."""
        return hidden_size

    def init_hidden(self, zeros: torch.Tensor):
        """The training module's initial hidden state from zeros (layers, batch, state_width)."""
        return zeros

    def initialise(self, model, generator: torch.Generator, cell: dict, task_run: bool) -> None:
        """Initialise model.rnn under no_grad: every gate block of W_hh as `init` prescribes
        (`orthogonal` with spectral radius `init_scale`), then initialise_layer."""
        init, scale, size = cell.get("init", "orthogonal"), cell.get("init_scale", 1.0), model.hidden_size
        for layer, weight in enumerate(self.recurrent_weights(model.rnn, model.num_layers)):
            for block in range(len(self.gates)):
                values = recurrent_block(init, scale, size, generator)
                if values is not None:
                    weight[block * size:(block + 1) * size] = values
            self.initialise_layer(model.rnn, layer, cell)

    def initialise_layer(self, rnn: nn.Module, layer: int, cell: dict) -> None:
        """Arch-specific init of one layer after its W_hh blocks (biases)."""

    def parameter_groups(self, model, options: dict) -> list[dict]:
        """The optimizer's parameter groups of `model` (options: this arch's hyperparameters). A group
        may carry `lr_scale`: it trains at lr * lr_scale (expRNN's slower A). Default: one group of all."""
        return [{"params": list(model.parameters())}]

    def recurrent_weights(self, rnn: nn.Module, num_layers: int) -> list[torch.Tensor]:
        """Each layer's recurrent matrix (gate blocks stacked), whose largest singular value is lambda_1."""
        return [getattr(rnn, f"weight_hh_l{layer}") for layer in range(num_layers)]

    def plain_state_dict(self, model) -> dict:
        """The state_dict a checkpoint keeps (loads into `torch_module` where there is one)."""
        return model.state_dict()

    def load_plain_state_dict(self, model, state: dict) -> None:
        model.load_state_dict(state)

    # ------------------------------------------------------------ the probe (float64)

    def layer_weights(self, rnn: nn.Module, layer: int) -> dict[str, torch.Tensor]:
        """One layer's weights as the step function reads them, by their module names without `_l{k}`."""
        return layer_tensors(rnn, WEIGHT_NAMES, layer)

    def project_input(self, weights: dict, layer_input: torch.Tensor) -> torch.Tensor:
        """The input side of every step at once: W_ih x_t + b_ih (all gates)."""
        return torch.matmul(layer_input, weights["weight_ih"].t()) + weights["bias_ih"]

    def recurrent_input(self, weights: dict, h_prev: torch.Tensor) -> torch.Tensor:
        """e_t, the recurrent pre-activation the probe perturbs: W_hh h_{t-1} (all gate blocks, no bias)."""
        return torch.matmul(h_prev, weights["weight_hh"].t())

    def update(self, weights: dict, x_proj: torch.Tensor, state: tuple, e: torch.Tensor, probe) -> tuple:
        """The new state tuple from x_proj_t, the previous state tuple and e_t."""
        raise NotImplementedError

    def layer_output(self, weights: dict, layer_input: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """What a layer passes up from its h_t (T, W, H): h itself, unless the arch adds a block around it."""
        return hidden

    def step_jacobian(self, weights: dict, prev_states: torch.Tensor, x_proj: torch.Tensor) -> torch.Tensor | None:
        """Closed-form d s_t / d s_{t-1} (N, S, S) of flattened states, or its diagonal (N, S) where the
        Jacobian is exactly diagonal, or None: the probe takes torch.func's."""
        return None

    def step(self, weights: dict, x_proj: torch.Tensor, state: tuple, probe=None) -> tuple:
        """One whole step (no probe on e_t)."""
        return self.update(weights, x_proj, state, self.recurrent_input(weights, state[0]), probe or _no_probe)


def _no_probe(name, value):
    return value


def recurrent_block(init: str, scale: float, size: int, generator: torch.Generator) -> torch.Tensor | None:
    """One H x H block of W_hh as `init` prescribes (None: keep torch's default)."""
    if init == "orthogonal":
        return scaled_orthogonal(size, scale, generator)
    if init == "identity":
        return torch.eye(size) * scale
    if init == "uniform":
        return (torch.rand(size, size, generator=generator) * 2 - 1) * scale
    if init == "default":
        return None
    raise ValueError(f"unknown init {init!r}; expected one of {list(INITS)}")


def scaled_orthogonal(size: int, scale: float, generator: torch.Generator) -> torch.Tensor:
    """A random orthogonal matrix times `scale`: all singular values and eigenvalue moduli equal scale."""
    q, r = torch.linalg.qr(torch.randn(size, size, generator=generator, dtype=torch.float64))
    return (q * torch.sign(torch.diagonal(r))).float() * scale


def elementwise_derivative(activation, pre: torch.Tensor) -> torch.Tensor:
    """activation'(pre), elementwise: the gradient of the activation's sum."""
    pre = pre.detach().requires_grad_(True)
    with torch.enable_grad():
        (derivative,) = torch.autograd.grad(activation(pre).sum(), pre)
    return derivative


class VanillaRNN(Arch):
    """h_t = activation(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), laid out like nn.RNN."""

    family = "vanilla"
    activation = staticmethod(torch.tanh)
    torch_module = "nn.RNN"

    def update(self, weights, x_proj, state, e, probe):
        return (self.activation(x_proj + (e + weights["bias_hh"])),)

    def step_jacobian(self, weights, prev_states, x_proj):
        """diag(activation'(a_t)) W_hh."""
        pre = x_proj + prev_states @ weights["weight_hh"].t() + weights["bias_hh"]
        return elementwise_derivative(self.activation, pre)[:, :, None] * weights["weight_hh"]


def layer_tensors(module: nn.Module, names, layer: int) -> dict[str, torch.Tensor]:
    """{name: module.<name>_l<layer>}: one layer's tensors by their names without the layer suffix."""
    return {name: getattr(module, f"{name}_l{layer}") for name in names}


def time_loop(projected: torch.Tensor, h: torch.Tensor, step) -> tuple[torch.Tensor, torch.Tensor]:
    """h_t = step(projected_t, h_{t-1}) for every step of `projected` (T, B, .): the outputs (T, B, H)
    and the last h. (unbind: one backward node for all steps, where indexing [t] would write a
    (T, B, .) zero tensor per step.)"""
    outputs = []
    for projected_t in projected.unbind(0):
        h = step(projected_t, h)
        outputs.append(h)
    return torch.stack(outputs), h


def rnn_layer_parameters(module: nn.Module, input_size: int, hidden_size: int, num_layers: int) -> None:
    """nn.RNN's parameters (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}) and init, for a
    module that loops over time itself."""
    for layer in range(num_layers):
        fan_in = input_size if layer == 0 else hidden_size
        uniform_parameters(module, {f"weight_ih_l{layer}": (hidden_size, fan_in),
                                    f"weight_hh_l{layer}": (hidden_size, hidden_size),
                                    f"bias_ih_l{layer}": (hidden_size,), f"bias_hh_l{layer}": (hidden_size,)},
                           hidden_size)


def uniform_parameters(module: nn.Module, shapes: dict, hidden_size: int) -> None:
    """Register `shapes` ({name: shape}) as parameters uniform in +-1/sqrt(H), torch.nn's RNN init."""
    bound = 1.0 / math.sqrt(hidden_size)
    for name, shape in shapes.items():
        module.register_parameter(name, nn.Parameter(torch.empty(shape).uniform_(-bound, bound)))
