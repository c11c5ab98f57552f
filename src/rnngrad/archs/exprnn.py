"""expRNN (Lezcano-Casado & Martinez-Rubio 2019): h_t = modReLU(W h_{t-1} + T x_t), W = expm(A) orthogonal.

Per layer: `weight_ih_l{k}` (H, in), T, no bias (the reference code's `input_kernel`);
`log_weight_hh_l{k}` (H, H), a free matrix whose strict upper triangle U defines the
skew-symmetric A = U - U^T (its diagonal and lower triangle get no gradient), so
W = expm(A) is exactly orthogonal whatever the optimizer does (the static trivialisation,
no re-basing); `modrelu_bias_l{k}` (H), b of modReLU(z)_i = sign(z_i) relu(|z_i| + b_i).
W is materialised once per forward pass (torch.linalg.matrix_exp in float64 and its autograd). The
paper trains A with a learning rate 10 times smaller than the rest's
(`exprnn_orthogonal_lr_scale`, through `parameter_groups`). Reference code:
github.com/Lezcano/expRNN (orthogonal.py: OrthogonalRNN, Orthogonal, modrelu;
initialization.py: henaff_init_, cayley_init_; 1_copying.py: the learning rates). That
code multiplies row vectors, h_t = modReLU(h_{t-1} B + x_t T^T), so its B is our W^T:
the same distribution, as A and -A = A^T are.
"""

import math

import torch
from torch import nn

from rnngrad.archs import register
from rnngrad.archs.base import NOT_APPLICABLE, Arch, time_loop

# modReLU's bias starts uniform in +-0.01 (orthogonal.py: modrelu.reset_parameters).
MODRELU_BIAS_RANGE = 0.01
INITS = ("henaff", "cayley")


def modrelu(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """sign(z) relu(|z| + b): the paper's real modReLU."""
    return torch.sign(z) * torch.relu(z.abs() + bias)


def modrelu_derivative(z: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """modReLU'(z) elementwise: 1 where |z| + b > 0 (and z != 0, where sign(z) = 0), else 0."""
    return (torch.sign(z) ** 2) * (z.abs() + bias > 0).to(z.dtype)


def skew_symmetric(free: torch.Tensor) -> torch.Tensor:
    """A = U - U^T from the strict upper triangle U of `free`."""
    upper = free.triu(diagonal=1)
    return upper - upper.t()


def orthogonal_matrix(free: torch.Tensor) -> torch.Tensor:
    """W = expm(A): orthogonal, since A is skew-symmetric."""
    return torch.linalg.matrix_exp(skew_symmetric(free))


def block_diagonal_skew(angles: torch.Tensor, size: int) -> torch.Tensor:
    """The skew-symmetric matrix with 2x2 blocks [[0, s], [-s, 0]] along the diagonal (initialization.py's
    create_diag_); expm turns each block into a rotation by -s, eigenvalues exp(+-i s). An odd size
    leaves the last unit a 1 x 1 zero block (eigenvalue 1)."""
    upper = torch.zeros(size - 1, dtype=angles.dtype)
    upper[::2] = angles
    matrix = torch.diag(upper, diagonal=1)
    return matrix - matrix.t()


def henaff_angles(blocks: int, generator: torch.Generator) -> torch.Tensor:
    """Henaff, Szlam & LeCun 2016 (initialization.py: henaff_init_): s uniform in [-pi, pi]."""
    return (torch.rand(blocks, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi


def cayley_angles(blocks: int, generator: torch.Generator) -> torch.Tensor:
    """Helfrich et al. 2018's init as initialization.py's cayley_init_ draws it: u uniform in [0, pi/2],
    s = -sqrt((1 - cos u) / (1 + cos u)) = -tan(u / 2), so s lies in [-1, 0]."""
    u = torch.rand(blocks, generator=generator, dtype=torch.float64) * (math.pi / 2)
    return -torch.sqrt((1 - torch.cos(u)) / (1 + torch.cos(u)))


ANGLES = {"henaff": henaff_angles, "cayley": cayley_angles}


class ExpRNN(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1):
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        for layer in range(num_layers):
            fan_in = input_size if layer == 0 else hidden_size
            # initialise() draws the paper's init; these placeholders only give the shapes
            self.register_parameter(f"weight_ih_l{layer}", nn.Parameter(torch.zeros(hidden_size, fan_in)))
            self.register_parameter(f"log_weight_hh_l{layer}", nn.Parameter(torch.zeros(hidden_size, hidden_size)))
            self.register_parameter(f"modrelu_bias_l{layer}", nn.Parameter(torch.zeros(hidden_size)))

    def orthogonal_parameters(self) -> list[nn.Parameter]:
        """The free matrices of A, one per layer (the paper's lower learning rate)."""
        return [getattr(self, f"log_weight_hh_l{layer}") for layer in range(self.num_layers)]

    def recurrent_matrix(self, layer: int, dtype: torch.dtype | None = None) -> torch.Tensor:
        """W = expm(A) of one layer, computed in float64 and returned in `dtype` (default: the parameters'):
        float32's matrix_exp leaves W W^T - I up to 2e-5 (H = 256), its rounding from float64 below 1e-7."""
        free = getattr(self, f"log_weight_hh_l{layer}")
        return orthogonal_matrix(free.double()).to(dtype or free.dtype)

    def forward(self, inputs: torch.Tensor, hidden: torch.Tensor):
        layer_input, final = inputs, []
        for layer in range(self.num_layers):
            w_ih, bias = getattr(self, f"weight_ih_l{layer}"), getattr(self, f"modrelu_bias_l{layer}")
            w_hh_t = self.recurrent_matrix(layer).t()
            projected = torch.matmul(layer_input, w_ih.t())
            layer_input, h = time_loop(projected, hidden[layer],
                                       lambda x_t, h: modrelu(torch.addmm(x_t, h, w_hh_t), bias))
            final.append(h)
        return layer_input, torch.stack(final)


@register
class ExpRNNArch(Arch):
    name, label, colour, linestyle, family = "exprnn", "expRNN", "#CC6677", "--", "remedy"  # Tol muted rose
    reference = ("Lezcano-Casado & Martinez-Rubio 2019, Cheap orthogonal constraints in neural networks: a simple "
                 "parametrization of the orthogonal and unitary group (ICML); code github.com/Lezcano/expRNN")
    equation = "h_t = modReLU(W h_{t-1} + T x_t), W = expm(A), A = -A^T: exactly orthogonal at every step"
    gamma = 1.0  # modReLU' is 0 or 1, and lambda_1 = 1: Pascanu's bound allows no growth
    hyperparameters = {
        "exprnn_init": {"type": "string", "enum": list(INITS), "default": "henaff", "label": "expRNN init",
                        "description": "initial A: 2x2 skew blocks of angle s, `henaff` s uniform in [-pi, pi] "
                                       "(the paper's copy task), `cayley` s = -tan(u/2), u uniform in [0, pi/2] "
                                       "(its MNIST)"},
        "exprnn_orthogonal_lr_scale": {"type": "number", "exclusiveMinimum": 0, "default": 0.1,
                                       "label": "expRNN lr(A) / lr",
                                       "description": "A's learning rate over the others' (the paper's "
                                                      "lr_orth / lr = 2e-5 / 2e-4 on the copy task)"},
    }
    fixed = {"init": NOT_APPLICABLE, "init_scale": NOT_APPLICABLE}  # the paper's own init; orthogonal: no scale
    square_matrices, vectors = 2, 1  # T and A's free matrix (W = expm(A) is computed once per forward); b

    def recurrent(self, input_size, hidden_size, num_layers, options, steps):
        return ExpRNN(input_size, hidden_size, num_layers)

    def initialise(self, model, generator, cell, task_run):
        """As the reference code: T kaiming normal (relu gain, std sqrt(2 / fan_in)), b uniform in
        +-0.01, A block-diagonal with angles per `exprnn_init`."""
        rnn, size = model.rnn, model.hidden_size
        draw_angles = ANGLES[self.options(cell)["exprnn_init"]]
        for layer in range(model.num_layers):
            weight_ih = getattr(rnn, f"weight_ih_l{layer}")
            nn.init.kaiming_normal_(weight_ih, nonlinearity="relu", generator=generator)
            getattr(rnn, f"modrelu_bias_l{layer}").uniform_(-MODRELU_BIAS_RANGE, MODRELU_BIAS_RANGE,
                                                            generator=generator)
            getattr(rnn, f"log_weight_hh_l{layer}").copy_(block_diagonal_skew(draw_angles(size // 2, generator), size))

    def parameter_groups(self, model, options):
        """A's free matrices at lr * exprnn_orthogonal_lr_scale, the rest at lr (the paper's two optimizers)."""
        orthogonal = model.rnn.orthogonal_parameters()
        others = [parameter for parameter in model.parameters() if all(parameter is not o for o in orthogonal)]
        return [{"params": others}, {"params": orthogonal, "lr_scale": float(options["exprnn_orthogonal_lr_scale"])}]

    def recurrent_weights(self, rnn, num_layers):
        """W = expm(A), in float64 (the matrix the probe reads): orthogonal to float64 precision."""
        return [rnn.recurrent_matrix(layer, torch.float64) for layer in range(num_layers)]

    def layer_weights(self, rnn, layer):
        """weight_hh is W = expm(A), computed in float64 from the free matrix, so that it is orthogonal to
        float64 precision and equals what the training module computes in float64."""
        return {"weight_ih": getattr(rnn, f"weight_ih_l{layer}"),
                "weight_hh": rnn.recurrent_matrix(layer, torch.float64),
                "bias": getattr(rnn, f"modrelu_bias_l{layer}")}

    def project_input(self, weights, layer_input):
        return torch.matmul(layer_input, weights["weight_ih"].t())

    def update(self, weights, x_proj, state, e, probe):
        return (modrelu(x_proj + e, weights["bias"]),)

    def step_jacobian(self, weights, prev_states, x_proj):
        """diag(modReLU'(a_t)) W, a_t = W h_{t-1} + T x_t."""
        pre = x_proj + prev_states @ weights["weight_hh"].t()
        return modrelu_derivative(pre, weights["bias"])[:, :, None] * weights["weight_hh"]
