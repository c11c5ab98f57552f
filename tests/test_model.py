"""The model zoo: checkpoints load into plain torch.nn modules with identical outputs; inits do what they say."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rnngrad import archs
from rnngrad.model import build_model, load_checkpoint, save_checkpoint, spectral_stats

VOCAB, HIDDEN, LAYERS, T, B = 17, 8, 2, 7, 3
PLAIN = {
    "rnn_tanh": lambda: nn.RNN(HIDDEN, HIDDEN, LAYERS, nonlinearity="tanh"),
    "rnn_relu": lambda: nn.RNN(HIDDEN, HIDDEN, LAYERS, nonlinearity="relu"),
    "irnn": lambda: nn.RNN(HIDDEN, HIDDEN, LAYERS, nonlinearity="relu"),
    "lstm": lambda: nn.LSTM(HIDDEN, HIDDEN, LAYERS),
    "gru": lambda: nn.GRU(HIDDEN, HIDDEN, LAYERS),
    # No fused sigmoid RNN exists; its parameters have nn.RNN's names and shapes.
    "rnn_sigmoid": lambda: nn.RNN(HIDDEN, HIDDEN, LAYERS),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def model_of(arch, **kwargs):
    settings = dict(hidden_size=HIDDEN, num_layers=LAYERS, init="orthogonal", init_scale=1.0, forget_bias=1.0, seed=3)
    return build_model(arch, vocab_size=VOCAB, **{**settings, **kwargs})


def plain_modules(model):
    """Embedding, recurrent stack and decoder as plain torch.nn modules, loaded from the state_dict."""
    state = model.state_dict()
    embedding, rnn, decoder = nn.Embedding(VOCAB, HIDDEN), PLAIN[model.arch](), nn.Linear(HIDDEN, VOCAB)
    for prefix, module in (("embedding.", embedding), ("rnn.", rnn), ("decoder.", decoder)):
        module.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})
    return embedding, rnn, decoder


def sigmoid_rnn_reference(rnn: nn.RNN, inputs, hidden):
    """h_t = sigmoid(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), one step at a time, from nn.RNN's parameters."""
    layer_input, finals = inputs, []
    for layer in range(rnn.num_layers):
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        w_ih, w_hh, b_ih, b_hh = (getattr(rnn, f"{n}_l{layer}") for n in names)
        h, outputs = hidden[layer], []
        for x in layer_input:
            h = torch.sigmoid(x @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
            outputs.append(h)
        layer_input = torch.stack(outputs)
        finals.append(h)
    return layer_input, torch.stack(finals)


def random_inputs(arch, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, VOCAB, (T, B), generator=generator)
    h0 = torch.randn(LAYERS, B, HIDDEN, generator=generator) * 0.5
    hidden = (h0, torch.randn(LAYERS, B, HIDDEN, generator=generator) * 0.5) if arch == "lstm" else h0
    return tokens, hidden


@pytest.mark.parametrize("arch", sorted(PLAIN))
def test_state_dict_has_torch_names(arch):
    names = set(model_of(arch).state_dict())
    expected = {"embedding.weight", "decoder.weight", "decoder.bias"} | {f"rnn.{n}" for n in PLAIN[arch]().state_dict()}
    assert names == expected


@pytest.mark.parametrize("arch", sorted(PLAIN))
def test_plain_torch_modules_reproduce_the_model(arch):
    model = model_of(arch)
    embedding, rnn, decoder = plain_modules(model)
    tokens, hidden = random_inputs(arch)
    with torch.no_grad():
        logits, final = model(tokens, hidden)
        if arch == "rnn_sigmoid":
            output, plain_final = sigmoid_rnn_reference(rnn, embedding(tokens), hidden)
        else:
            output, plain_final = rnn(embedding(tokens), hidden)
        plain_logits = decoder(output)
    if arch == "rnn_sigmoid":  # a different summation order than the reference: equal to rounding
        torch.testing.assert_close(logits, plain_logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(final, plain_final, rtol=1e-5, atol=1e-6)
    else:
        assert torch.equal(logits, plain_logits)
        pairs = zip(final, plain_final) if arch == "lstm" else [(final, plain_final)]
        for ours, theirs in pairs:
            assert torch.equal(ours, theirs)


@pytest.mark.parametrize("arch", sorted(PLAIN))
def test_checkpoint_round_trip(arch, tmp_path):
    model = model_of(arch)
    hparams = {"arch": arch, "vocab_size": VOCAB, "hidden_size": HIDDEN, "num_layers": LAYERS}
    save_checkpoint(tmp_path / "c.pt", model, hparams, step=5, tokens_seen=100, progress=0.5)
    loaded, checkpoint = load_checkpoint(tmp_path / "c.pt")
    assert checkpoint["step"] == 5 and checkpoint["tokens_seen"] == 100 and checkpoint["progress"] == 0.5
    tokens, hidden = random_inputs(arch)
    with torch.no_grad():
        assert torch.equal(model(tokens, hidden)[0], loaded(tokens, hidden)[0])


@pytest.mark.parametrize("arch", ["rnn_tanh", "rnn_sigmoid", "lstm", "gru"])
@pytest.mark.parametrize("scale", [0.5, 1.0, 1.7])
def test_orthogonal_init_has_the_asked_spectral_radius(arch, scale):
    model = model_of(arch, init="orthogonal", init_scale=scale)
    for weight in model.recurrent_weights():
        for block in weight.detach().double().split(HIDDEN):
            assert torch.allclose(torch.linalg.svdvals(block), torch.full((HIDDEN,), scale, dtype=torch.float64),
                                  atol=1e-5)
            assert torch.linalg.eigvals(block).abs().max().item() == pytest.approx(scale, abs=1e-5)
        stats = spectral_stats(weight, arch)
        assert stats["sigma_max"] == pytest.approx(scale, abs=1e-5)
        assert stats["spectral_radius"] == pytest.approx(scale, abs=1e-5)


def test_blocks_of_gated_archs_differ():
    weight = model_of("lstm").recurrent_weights()[0].detach()
    blocks = weight.split(HIDDEN)
    assert not torch.equal(blocks[0], blocks[1])


@pytest.mark.parametrize("arch", ["rnn_tanh", "gru"])
def test_identity_init(arch):
    model = model_of(arch, init="identity", init_scale=0.9)
    for weight in model.recurrent_weights():
        for block in weight.detach().split(HIDDEN):
            assert torch.equal(block, torch.eye(HIDDEN) * 0.9)


def test_uniform_init_bounds():
    model = build_model("rnn_tanh", vocab_size=VOCAB, hidden_size=64, num_layers=1, init="uniform", init_scale=0.3)
    weight = model.recurrent_weights()[0].detach()
    assert weight.abs().max() <= 0.3
    assert weight.abs().max() > 0.29  # fills the interval, not a narrower one
    assert abs(weight.mean().item()) < 0.02


def test_init_range_applies_to_every_other_weight():
    model = model_of("lstm", init="uniform", init_scale=0.1, init_range=0.05, forget_bias=0.0)
    for name, param in model.named_parameters():
        bound = 0.1 if "weight_hh" in name else 0.05
        assert param.abs().max() <= bound, name


def test_default_init_keeps_torch_default():
    model = model_of("rnn_tanh", init="default")
    weight = model.recurrent_weights()[0]
    assert weight.abs().max() <= 1 / HIDDEN ** 0.5


@pytest.mark.parametrize("forget_bias", [0.0, 1.0, 2.5])
def test_lstm_forget_bias(forget_bias):
    model = model_of("lstm", forget_bias=forget_bias)
    gate = archs.get("lstm").gates.index("f")
    for layer in range(LAYERS):
        total = getattr(model.rnn, f"bias_ih_l{layer}") + getattr(model.rnn, f"bias_hh_l{layer}")
        forget = total[gate * HIDDEN:(gate + 1) * HIDDEN]
        assert torch.equal(forget, torch.full((HIDDEN,), forget_bias))
        assert not torch.equal(total[:HIDDEN], torch.full((HIDDEN,), forget_bias))  # only the forget gate


def test_irnn_identity_and_zero_bias():
    model = model_of("irnn", init="orthogonal", init_scale=1.0)
    for layer, weight in enumerate(model.recurrent_weights()):
        assert torch.equal(weight.detach(), torch.eye(HIDDEN))
        assert not getattr(model.rnn, f"bias_ih_l{layer}").any()
        assert not getattr(model.rnn, f"bias_hh_l{layer}").any()


def test_same_seed_same_weights_other_seed_other_weights():
    first, again, other = model_of("gru", seed=1), model_of("gru", seed=1), model_of("gru", seed=2)
    for name, param in first.state_dict().items():
        assert torch.equal(param, again.state_dict()[name])
    assert not torch.equal(first.recurrent_weights()[0], other.recurrent_weights()[0])


def test_spectral_stats_of_a_known_matrix():
    # Non-normal: largest singular value differs from the spectral radius.
    weight = torch.tensor([[0.5, 2.0], [0.0, 0.5]])
    stats = spectral_stats(weight, "rnn_tanh")
    assert stats["spectral_radius"] == pytest.approx(0.5)
    assert stats["sigma_max"] == pytest.approx(torch.linalg.matrix_norm(weight.double(), ord=2).item())
    assert stats["sigma_max"] > 2.0
