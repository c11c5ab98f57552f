"""Gradient-vs-distance probe: how dL_T/dh_{T-k} decays (or grows) with the lag k.

Definition (docs/probe.md and the report repeat it):

- Windows: W windows of B + K + 2 tokens at random positions of a split, drawn with a
  fixed seed, so every run sees the same positions. The model reads B + K + 1 tokens:
  B burn-in steps without gradient from a zero state (realistic states), then K + 1
  steps t = T-K..T unrolled with gradient; L_T is the cross-entropy of predicting the
  token after step T, one loss per window.
- Everything runs in float64, cell by cell, with the weights read by their torch.nn
  names (`weight_ih_l0`, `weight_hh_l0`, ...): the unrolled cells give exactly the
  fused module's outputs (tests/test_probe.py).
- One forward and ONE backward pass give every lag of every window and layer: a zero
  "probe" tensor is added to every h_t (and to c_t before h_t is computed from it) of
  every layer, to every embedding output x_t and to every recurrent pre-activation
  W_hh h_{t-1}; the gradients of the
  summed loss with respect to the probes are the total derivatives dL_T/dh_{T-k}
  (windows are independent, so summing their losses does not mix them).
- Records per window, layer and lag k = 0..K: g(k) = ||dL_T/dh_{T-k}||_2 (state `h`),
  ||dL_T/dc_{T-k}||_2 for the LSTM (`c`: the total derivative, c_t perturbed before
  h_t = o_t tanh(c_t) is computed, so delta_c_t = delta_h_t o_t (1 - tanh(c_t)^2)
  + delta_c_{t+1} f_{t+1}; at lag 0 only the first term), ||dL_T/dx_{T-k}||_2 for the embedding
  vector (`x`, layer 0), and the temporal contributions of Pascanu et al. (2013,
  eq. 4-5): the part of dL_T/dW_hh that comes from step T-k is the rank-one matrix
  (dL_T/de_{T-k}) h_{T-k-1}^T, whose Frobenius norm is ||dL_T/de_{T-k}|| ||h_{T-k-1}||.
- Loss-free Jacobian products on the first `jacobian_windows` windows, per layer:
  ||dh_T/dh_{T-k}||_2 (spectral norm; for the LSTM the state is (h, c)) as state
  `jacobian`, and the per-step norms ||dh_t/dh_{t-1}||_2. Per-step Jacobians come from
  closed forms (tests check them against torch.func's vmap of jacrev); the product is
  accumulated backward from T and rescaled every step, so it never under- or overflows.
- Theory beside it: sigma_max and spectral radius of each W_hh, gamma (bound on the
  activation's derivative) and Pascanu's bound g(k) <= g(0) (gamma sigma_max)^k. It
  holds window by window for a single-layer vanilla RNN and for the TOP layer of a
  stack (`bound_rate` only there, and on every layer's Jacobian product); a lower layer's
  h_{T-k} also reaches L_T through the layers above at later steps, so the bound does not
  apply to it. Its premise is one loss at one output step, which every probe loss is.
- The remedies (docs/architectures.md). orthogonal_rnn: a tanh RNN, its
  materialised W_hh read as weight_hh. indrnn: the recurrent pre-activation is u * h_{t-1}
  (elementwise; `e` probes it), the per-step Jacobian diag(relu'(a_t) u). lru: the state
  `h` is the complex recurrent state x_t, a real 2N vector (Re, Im) for every norm;
  complex128 inside the cell; `e` is added to lambda * x_{t-1}; the per-step Jacobian of
  the state, diag(lambda) as a real 2N x 2N matrix, does not depend on the input, so a
  one-layer LRU's dL_T/dx_{T-k} is exactly conj(lambda)^k dL_T/dx_T per unit. s6: the state
  `h` is the SSM state s_t (H x N, flattened; Arch.state_width), `e` is s_{t-1} itself (the
  transition exp(Delta_t A) depends on the input), and the per-step Jacobian diag(exp(Delta_t A))
  is given as its diagonal, its products taken unit by unit in log space. For the
  diagonal recurrences (indrnn, lru) the part of dL_T/du (dL_T/dlambda) from step T-k is
  the elementwise product (dL_T/de_{T-k}) * h_{T-k-1}: its norm is the contribution; for
  the s6 that product is dL_T/d(Delta_{T-k} A), the part of the gradient with respect to the
  log of step T-k's transition.
- Task runs (rnngrad.tasks): the windows are the first `windows` sequences of the task's
  fixed test set, read from a zero state without burn-in. The loss is ONE output step's,
  as for a corpus, so that lag k is a distance from the step whose loss it is: adding, the
  squared error of the last step's prediction; copy, the cross-entropy of the last recall
  step (a sum over recall steps would mix losses whose dependencies lie at different
  distances). The information lies at each window's own lags (tasks.dependency_lags):
  adding, its first and second markers, T - 1 - position; copy, the last symbol,
  T + copy_length. The summary reads each window's g(lag_w)/g(0) at its own lag and
  reports the median over windows with censored and underflowed counts (dependency_stats:
  `dep_*` for the first marker / last symbol, `second_marker_*` for the adding problem's
  second).
- Censoring: a norm that underflows float64 (== 0) has log10 = -inf; an overflow or a
  NaN has log10 = +inf. Both are censored: counted in `n_censored`, left out of means;
  quantiles sort them as -inf / +inf, and a quantile that falls on a censored value is
  reported as NaN, never as log10(0).

Where each part lives: windows.py (what is read), unroll.py (the float64 unrolled steps with
their probes), gradients.py (every lag from one backward pass), jacobians.py (the loss-free
products), statistics.py (censored statistics), summary.py (the tidy tables), job.py (the
probe_gradients job).
"""

from rnngrad.probe.gradients import probe_model
from rnngrad.probe.jacobians import (
    diagonal_jacobian_products,
    flatten_state,
    jacobian_products,
    layer_jacobians,
    step_jacobians,
    step_jacobians_autograd,
)
from rnngrad.probe.job import probe_run
from rnngrad.probe.statistics import (
    CURVE_STATS,
    censored_log10,
    censored_quantile,
    curve_stats,
    dependency_stats,
    fit_slope,
    gradient_horizon,
    log10_mean,
    normalise,
)
from rnngrad.probe.summary import TABLES, summarise_probe
from rnngrad.probe.unroll import Unrolled, embed, layer_weights, task_loss_fn, unroll
from rnngrad.probe.windows import make_windows, task_windows

__all__ = ["CURVE_STATS", "TABLES", "Unrolled", "censored_log10", "censored_quantile", "curve_stats",
           "dependency_stats", "diagonal_jacobian_products", "embed", "fit_slope", "flatten_state", "gradient_horizon",
           "jacobian_products", "layer_jacobians", "layer_weights", "log10_mean", "make_windows", "normalise",
           "probe_model", "probe_run", "step_jacobians", "step_jacobians_autograd", "summarise_probe", "task_loss_fn",
           "task_windows", "unroll"]
