"""Independently recurrent network (Li et al. 2018): h_t = relu(W_ih x_t + b_ih + u * h_{t-1}).

Per layer: `weight_ih_l{k}` (H, in), `bias_ih_l{k}` (H), `weight_hh_l{k}` (H): the
recurrent vector u. As in the paper, |u| is kept below `recurrent_max` =
bound^(1/steps), so that no unit's |u|^steps exceeds `indrnn_bound`: every forward pass
first projects u onto [-recurrent_max, recurrent_max] (projected gradient descent: the
optimizer's update, then the projection before the update is used), and the state_dict
holds the projected u, so a checkpoint is the model that ran. Reference code: the
authors' Theano/Lasagne `adding.py` (github.com/Sunnydreamrain/IndRNN_Theano_Lasagne).
"""

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, Arch, elementwise_derivative, uniform_parameters

INPUT_STD = 0.001  # Li et al.'s adding.py: W_in_to_hid = lasagne.init.Normal(0.001), a standard deviation


def recurrent_max(bound: float, steps: int) -> float:
    """The largest |u|: bound^(1/steps), so |u|^steps <= bound (Li et al. 2018)."""
    return float(bound) ** (1.0 / int(steps))


class IndRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, recurrent_max: float = 1.0):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.recurrent_max = float(recurrent_max)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            uniform_parameters(self, {f"weight_ih_l{layer}": (hidden_size, fan_in), f"bias_ih_l{layer}": (hidden_size,),
                                      f"weight_hh_l{layer}": (hidden_size,)}, hidden_size)
        self.register_state_dict_post_hook(_project_saved)

    def recurrent_vector(self, layer: int) -> torch.Tensor:
        """u of one layer, projected onto |u| <= recurrent_max."""
        return getattr(self, f"weight_hh_l{layer}").clamp(-self.recurrent_max, self.recurrent_max)

    def project(self) -> None:
        with torch.no_grad():
            for layer in range(self.num_layers):
                getattr(self, f"weight_hh_l{layer}").clamp_(-self.recurrent_max, self.recurrent_max)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        self.project()
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, b_ih, u = (getattr(self, f"{name}_l{layer}") for name in ("weight_ih", "bias_ih", "weight_hh"))
            projected = torch.addmm(b_ih, layer_input.flatten(0, 1), w_ih.t()).view(*layer_input.shape[:2], -1)
            h, outputs = hidden[layer], []
            for t in range(projected.shape[0]):
                h = torch.relu(torch.addcmul(projected[t], u, h))
                outputs.append(h)
            layer_input = torch.stack(outputs)
            final.append(h)
        return layer_input, torch.stack(final)


def _project_saved(module: IndRNN, state_dict: dict, prefix: str, local_metadata) -> None:
    for layer in range(module.num_layers):
        key = f"{prefix}weight_hh_l{layer}"
        state_dict[key] = state_dict[key].clamp(-module.recurrent_max, module.recurrent_max)


@register
class IndRNNArch(Arch):
    name, label, colour, family = "indrnn", "IndRNN", "#999999", "remedy"  # grey
    reference = "Li, Li, Cook, Zhu & Gao 2018, Independently recurrent neural network (IndRNN)"
    equation = "h_t = relu(W_ih x_t + b_ih + u * h_{t-1}), |u_i| <= indrnn_bound^(1/steps)"
    gamma = 1.0  # relu' <= 1; lambda_1 = max |u_i|
    diagonal = True
    hyperparameters = {
        "indrnn_bound": {"type": "number", "minimum": 0, "default": 2.0, "label": "IndRNN bound",
                         "description": "the recurrent weights are kept in |u| <= indrnn_bound^(1/bptt), so "
                                        "|u|^bptt never exceeds indrnn_bound (the paper's 2)"},
    }
    fixed = {"init": NOT_APPLICABLE, "init_scale": NOT_APPLICABLE}  # the paper's recurrent init
    square_matrices, vectors = 1, 2  # W_ih; b and u

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return IndRNN(input_size, hidden_size, num_layers, recurrent_max(options["indrnn_bound"], steps))

    def initialise(self, model, generator, cell, task_run):
        """Li et al. 2018, their code: on a long-range task run (the whole sequence unrolled)
        input weights N(0, 0.001^2) as their adding problem's `--in2hidW`; on a corpus torch's
        default uniform +-1/sqrt(H), since that recipe starves a language model of its input
        (docs/architectures.md); biases 0, u uniform in [0, recurrent_max], the top layer's in
        [(1/bound)^(1/steps), recurrent_max] when the bound exceeds 1, so that it keeps long memories."""
        rnn, bound = model.rnn, float(self.options(cell)["indrnn_bound"])
        for layer in range(model.num_layers):
            if task_run:
                getattr(rnn, f"weight_ih_l{layer}").normal_(0.0, INPUT_STD, generator=generator)
            getattr(rnn, f"bias_ih_l{layer}").zero_()
            high = rnn.recurrent_max
            low = 1.0 / high if layer == model.num_layers - 1 and bound > 1 else 0.0  # (1/bound)^(1/steps)
            getattr(rnn, f"weight_hh_l{layer}").copy_(low + (high - low) * torch.rand(model.hidden_size,
                                                                                      generator=generator))

    def recurrent_weights(self, rnn, num_layers):
        return [torch.diag(rnn.recurrent_vector(layer)) for layer in range(num_layers)]

    def layer_weights(self, rnn, layer):
        """weight_hh is the projected u."""
        return {"weight_ih": getattr(rnn, f"weight_ih_l{layer}"), "bias_ih": getattr(rnn, f"bias_ih_l{layer}"),
                "weight_hh": rnn.recurrent_vector(layer)}

    def recurrent_input(self, weights, h_prev):
        return h_prev * weights["weight_hh"]

    def update(self, weights, x_proj, state, e, probe):
        return (torch.relu(x_proj + e),)

    def step_jacobian(self, weights, prev_states, x_proj):
        """diag(relu'(a_t) u)."""
        u = weights["weight_hh"]
        return torch.diag_embed(elementwise_derivative(torch.relu, x_proj + prev_states * u) * u)
