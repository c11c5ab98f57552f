"""The documentation: the README is a short front door, every link and #anchor resolves, the
generated parts (config/README.md, the architecture table) match the code, and the code the
docs point to (examples/) runs."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch
from conftest import ROOT
from example_files import load_example
from torch import nn

from rnngrad import archs
from rnngrad.figures import FIGURES
from rnngrad.model import build_model, save_checkpoint

README = ROOT / "README.md"
PAGES = [README, ROOT / "config" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
QUICK_START = ['pip install -e . && snakemake --cores 8', 'pip install -e ".[test]" && pytest']


def generator():
    spec = importlib.util.spec_from_file_location("rnngrad_docs_generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------- links and anchors


def prose(text: str) -> str:
    """Markdown without fenced code blocks and inline code, where a link is not a link."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lowercase, punctuation removed, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (repeats get -1, -2, ... as on GitHub)."""
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.DOTALL | re.MULTILINE)
    seen, found = {}, set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, flags=re.MULTILINE):
        name = anchor(heading)
        count = seen.get(name, 0)
        found.add(name if count == 0 else f"{name}-{count}")
        seen[name] = count + 1
    return found


def links(path: Path) -> list[str]:
    return re.findall(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(path.read_text()))


def test_the_anchor_rule_is_githubs():
    assert anchor("Measured: `config/remedies.yaml`, the remedies on the long-range tasks") == \
        "measured-configremediesyaml-the-remedies-on-the-long-range-tasks"
    assert anchor("Reproducing Zaremba et al. (2014)") == "reproducing-zaremba-et-al-2014"
    assert anchor("gradient_summary.csv") == "gradient_summarycsv"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file, _, fragment = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif fragment and (resolved.suffix != ".md" or fragment not in anchors(resolved)):
            broken.append(f"{target}: no heading #{fragment} in {resolved.relative_to(ROOT)}")
    assert not broken, "\n".join(broken)


# ---------------------------------------------------------------- the front door


def test_the_readme_is_a_front_door():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= 250
    start = lines.index("## Quick start")
    assert start < 25, "the quick start near the top"
    block = "\n".join(lines[start:start + 8])
    assert all(command in block for command in QUICK_START)
    for page in ("docs/cluster.md", "docs/adding-an-architecture.md", "config/README.md", "docs/probe.md"):
        assert f"]({page}" in text, page
    assert "](docs/gradient_vs_distance.png)" in text
    assert "## What a run leaves" in text and "@software{" in text
    missing = [name for name in FIGURES if f"`{name}`" not in text]
    assert not missing, f"figures not named in the README: {missing}"


def test_ci_runs_the_readmes_test_command():
    assert QUICK_START[1] in (ROOT / ".ci" / "run").read_text()


def test_the_docs_say_what_is_not_what_was():
    for page in PAGES:
        text = page.read_text()
        for pattern in (r"\bissue \d+", r"\bthis session\b", r"\(was \d", r"\bbefore this\b"):
            assert not re.search(pattern, text, flags=re.IGNORECASE), (page.name, pattern)


# ---------------------------------------------------------------- generated parts


def test_config_readme_is_generated_from_the_schema():
    assert (ROOT / "config" / "README.md").read_text() == generator().config_readme(), \
        "config/README.md is out of date: python docs/generate.py"


def test_every_config_key_is_documented_once():
    gen = generator()
    keys = gen.schema_keys()
    undescribed = [entry["key"] for entry in keys if not gen.description(entry)]
    assert not undescribed, f"schema keys without a description: {undescribed}"
    for entry in keys:  # an unquoted comma in a flow mapping cuts a description short, leaving null keys
        nulls = [name for name, value in entry["node"].items() if value is None and name != "default"]
        assert not nulls, f"{entry['key']}: quote its description in the schema (null keys {nulls})"
    readme = (ROOT / "config" / "README.md").read_text()
    for entry in keys:  # a section has a heading, every other key a row
        section = "." not in entry["key"] and entry["node"].get("type") == "object"
        assert (f"\n## {entry['key']}\n" if section else f"| `{entry['key']}` |") in readme, entry["key"]


def test_the_architecture_table_is_generated_from_the_code():
    gen = generator()
    schema_archs = gen.load_schema()["properties"]["grid"]["properties"]["arch"]["items"]["enum"]
    assert schema_archs == archs.names() and all(archs.get(arch).equation for arch in schema_archs)
    assert (ROOT / "docs" / "architectures.md").read_text() == gen.architectures_page(), \
        "docs/architectures.md is out of date: python docs/generate.py"


def test_the_generator_reads_which_keys_an_arch_uses():
    gen = generator()
    assert gen.arch_keys("lstm")[0][:5] == ["hidden_size", "num_layers", "init", "init_scale", "lr"]
    assert "forget_bias" in gen.arch_keys("lstm")[0] and "forget_bias" not in gen.arch_keys("gru")[0]
    reads, fixed = gen.arch_keys("irnn")
    assert "init" not in reads and fixed == {"init": "identity"} and "init_scale" in reads
    assert "indrnn_bound" in gen.arch_keys("indrnn")[0] and "init" not in gen.arch_keys("indrnn")[0]
    assert gen.checkpoint_tensors("indrnn") == ["`rnn.weight_ih_l{k}` (H, H)", "`rnn.bias_ih_l{k}` (H)",
                                                "`rnn.weight_hh_l{k}` (H)"]


# ---------------------------------------------------------------- examples/


def test_the_checkpoint_example_covers_every_arch_with_a_torch_module():
    example = load_example("load_checkpoint")
    torch_modules = {arch for arch in archs.names()
                     if isinstance(build_model(arch, vocab_size=7, hidden_size=4).rnn, (nn.RNN, nn.LSTM, nn.GRU))}
    assert set(example.TORCH_RECURRENT) == torch_modules


@pytest.mark.parametrize("arch", sorted(load_example("load_checkpoint").TORCH_RECURRENT))
def test_the_checkpoint_example_reproduces_the_model_in_plain_pytorch(arch, tmp_path):
    example = load_example("load_checkpoint")
    model = build_model(arch, vocab_size=11, hidden_size=6, num_layers=2, seed=1)
    hparams = {"arch": arch, "vocab_size": 11, "hidden_size": 6, "num_layers": 2}
    save_checkpoint(tmp_path / "step_00000000.pt", model, hparams, step=0, tokens_seen=0)
    net = example.plain_modules(torch.load(tmp_path / "step_00000000.pt", weights_only=True))
    tokens = torch.randint(0, 11, (9, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, _ = model(tokens, model.init_hidden(3))
        plain, _ = example.logits(net, tokens)
    torch.testing.assert_close(plain, ours, rtol=1e-5, atol=1e-6)
    assert ours.std() > 0.01  # not a vacuous comparison
