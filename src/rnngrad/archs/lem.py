"""Long Expressive Memory (Rusch, Mishra, Erichson & Mahoney 2022): two states on two learned time scales.

Layer k, input u_t, states y_t (h: what the layer passes up) and z_t, time step Delta t (`lem_dt`):
    dt_t    = Delta t * sigmoid(W_1 y_{t-1} + V_1 u_t + b_1)
    dtbar_t = Delta t * sigmoid(W_2 y_{t-1} + V_2 u_t + b_2)
    z_t = (1 - dt_t) * z_{t-1} + dt_t * tanh(W_z y_{t-1} + V_z u_t + b_z)
    y_t = (1 - dtbar_t) * y_{t-1} + dtbar_t * tanh(W_y z_t + V_y u_t + b_y)
Parameters `<name>_l{k}`: `weight_ih` (4H, in) = (V_1; V_2; V_z; V_y) and `bias_ih` (4H);
`weight_hh` (3H, H) = (W_1; W_2; W_z) and `bias_hh` (3H), the three blocks that read y_{t-1}
(e_t, Pascanu's lambda_1 and the gates); `weight_zh` (H, H) = W_y and `bias_zh` (H), which
read z_t of the same step. Each bias is the sum of the authors' two (nn.Linear's on each
side), kept apart as torch.nn's RNNs keep b_ih and b_hh. The probe reports y as `h` and z
as `z` (the total derivative: z_t is perturbed before y_t reads it). The hidden state
passed between batches is (y, z), each (num_layers, batch, H). Reference code: the
authors' `src/adding/network.py` (github.com/tk-rusch/LEM), whose LEMCell this follows.
"""

import math

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, Arch, layer_tensors, uniform_parameters

ADDING_DT = 0.0242  # the authors' adding_task.py default --dt
PARAMETERS = ("weight_ih", "bias_ih", "weight_hh", "bias_hh", "weight_zh", "bias_zh")
RECURRENT = ("weight_hh", "weight_zh")  # the matrices that read the states: the paper's init after init_range


class LEM(nn.Module):
    """The training module: one loop over time per layer, every input projection of a layer in one matmul."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dt: float):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers, self.dt = input_size, hidden_size, num_layers, float(dt)
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            # the authors' reset_parameters: every weight and bias uniform in +-1/sqrt(H)
            uniform_parameters(self, {f"weight_ih_l{layer}": (4 * hidden_size, fan_in),
                                      f"bias_ih_l{layer}": (4 * hidden_size,),
                                      f"weight_hh_l{layer}": (3 * hidden_size, hidden_size),
                                      f"bias_hh_l{layer}": (3 * hidden_size,),
                                      f"weight_zh_l{layer}": (hidden_size, hidden_size),
                                      f"bias_zh_l{layer}": (hidden_size,)}, hidden_size)

    def forward(self, inputs: torch.Tensor, hidden: tuple):
        size, layer_input, final_y, final_z = self.hidden_size, inputs, [], []
        for layer in range(self.num_layers):
            w_ih, b_ih, w_hh, b_hh, w_zh, b_zh = (getattr(self, f"{name}_l{layer}") for name in PARAMETERS)
            # every bias joins the input side once: b_hh to the y-side blocks, b_zh to the z-side one
            bias = b_ih + torch.cat([b_hh, b_zh])
            projected = torch.addmm(bias, layer_input.flatten(0, 1), w_ih.t()).view(*layer_input.shape[:2], -1)
            y, z, outputs = hidden[0][layer], hidden[1][layer], []
            for step in projected:
                gates = torch.addmm(step[:, :3 * size], y, w_hh.t())  # the three y-side blocks at once
                rates = self.dt * torch.sigmoid(gates[:, :2 * size])
                z = torch.lerp(z, torch.tanh(gates[:, 2 * size:]), rates[:, :size])
                y = torch.lerp(y, torch.tanh(torch.addmm(step[:, 3 * size:], z, w_zh.t())), rates[:, size:])
                outputs.append(y)
            layer_input = torch.stack(outputs)
            final_y.append(y)
            final_z.append(z)
        return layer_input, (torch.stack(final_y), torch.stack(final_z))


def rates_and_targets(weights: dict, x_proj: torch.Tensor, e: torch.Tensor):
    """dt_t, dtbar_t and tanh(W_z y_{t-1} + V_z u_t + b_z) from x_proj_t and e_t (the three y-side blocks)."""
    a_dt, a_dtbar, a_z = (x_proj[..., :e.shape[-1]] + (e + weights["bias_hh"])).chunk(3, dim=-1)
    dt = weights["dt"]
    return dt * torch.sigmoid(a_dt), dt * torch.sigmoid(a_dtbar), torch.tanh(a_z)


def y_target(weights: dict, x_proj: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """tanh(W_y z_t + V_y u_t + b_y)."""
    hidden_size = z.shape[-1]
    return torch.tanh(x_proj[..., 3 * hidden_size:] + (z @ weights["weight_zh"].t() + weights["bias_zh"]))


@register
class LEMArch(Arch):
    name, label, colour, linestyle, family = "lem", "LEM", "#117733", "--", "remedy"  # Tol's green, dashed
    reference = ("Rusch, Mishra, Erichson & Mahoney 2022, Long expressive memory for sequence modeling (ICLR); "
                 "code: github.com/tk-rusch/LEM, src/adding/network.py")
    equation = ("z_t = (1 - dt_t) z_{t-1} + dt_t tanh(W_z y_{t-1} + V_z u_t), "
                "y_t = (1 - dtbar_t) y_{t-1} + dtbar_t tanh(W_y z_t + V_y u_t), "
                "dt_t, dtbar_t = Delta t sigmoid(W_{1,2} y_{t-1} + V_{1,2} u_t)")
    gates = ("dt", "dtbar", "z")
    states = ("h", "z")
    hyperparameters = {
        "lem_dt": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": ADDING_DT,
                   "reference": ADDING_DT, "label": "LEM Delta t",
                   "description": "Delta t, the largest step of both learned time scales: dt_t and dtbar_t lie "
                                  "in (0, Delta t) (the authors' adding-task 0.0242; at most 1 keeps every state "
                                  "in [-1, 1])"},
    }
    # the paper's init (torch's uniform +-1/sqrt(H) for every weight), not an orthogonal W_hh
    fixed = {"init": NOT_APPLICABLE, "init_scale": NOT_APPLICABLE}
    square_matrices, vectors = 8, 8  # V (4 blocks), W_hh (3), W_y; b_ih (4), b_hh (3), b_y
    jacobian_cost, jacobian_tensors = 1.3, 3.8  # 1.08x the LSTM's time and 1.1x its memory at H = 128 (both 2H)

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return LEM(input_size, hidden_size, num_layers, options["lem_dt"])

    def init_hidden(self, zeros):
        return zeros, zeros.clone()

    def initialise(self, model, generator, cell, task_run):
        """The authors' init of the matrices that read the states, W_hh and W_y: uniform in +-1/sqrt(H),
        drawn from `generator` (so that init_range, which sets every other weight, leaves them so)."""
        bound = 1.0 / math.sqrt(model.hidden_size)
        for layer in range(model.num_layers):
            for name in RECURRENT:
                weight = getattr(model.rnn, f"{name}_l{layer}")
                weight.copy_((torch.rand(weight.shape, generator=generator) * 2 - 1) * bound)

    def layer_weights(self, rnn, layer):
        # Delta t rides along with the weights, so the step function reads it (float64: 0.0242 exactly as training)
        return {**layer_tensors(rnn, PARAMETERS, layer),
                "dt": torch.tensor(rnn.dt, dtype=torch.float64)}

    def update(self, weights, x_proj, state, e, probe):
        y_prev, z_prev = state
        dt, dtbar, z_target = rates_and_targets(weights, x_proj, e)
        z = probe("z", (1 - dt) * z_prev + dt * z_target)
        return (1 - dtbar) * y_prev + dtbar * y_target(weights, x_proj, z), z

    def step_jacobian(self, weights, prev_states, x_proj):
        """d(y_t, z_t)/d(y_{t-1}, z_{t-1}) (N, 2H, 2H); y_t reads z_t, so its rows hold z_t's through W_y."""
        w_hh, w_zh = weights["weight_hh"], weights["weight_zh"]
        hidden_size = w_hh.shape[1]
        blocks = w_hh.view(3, hidden_size, hidden_size)
        y, z_prev = prev_states[:, :hidden_size], prev_states[:, hidden_size:]
        dt, dtbar, z_target = rates_and_targets(weights, x_proj, y @ w_hh.t())
        z = (1 - dt) * z_prev + dt * z_target
        target = y_target(weights, x_proj, z)
        rows = lambda d, matrix: d[:, :, None] * matrix  # noqa: E731 (diag(d) matrix)
        # sigmoid' = s (1 - s) with s = rate / Delta t
        dz_dy = rows((z_target - z_prev) * dt * (1 - dt / weights["dt"]), blocks[0]) \
            + rows(dt * (1 - z_target * z_target), blocks[2])
        dy_dz_new = rows(dtbar * (1 - target * target), w_zh)
        dy_dy = torch.diag_embed(1 - dtbar) + rows((target - y) * dtbar * (1 - dtbar / weights["dt"]), blocks[1]) \
            + dy_dz_new @ dz_dy
        top = torch.cat([dy_dy, dy_dz_new * (1 - dt)[:, None, :]], dim=2)
        bottom = torch.cat([dz_dy, torch.diag_embed(1 - dt)], dim=2)
        return torch.cat([top, bottom], dim=1)
