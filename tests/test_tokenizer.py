"""CLIP tokenizer: padding/truncation rules, a hand-derived BPE case, and ids equal to transformers'."""

import collections
import json
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from sdsim.errors import SdsimError
from sdsim.model.tokenizer import ClipTokenizer

CORPUS = ("a photograph of an astronaut riding a horse on the moon, highly detailed, 4k. the there these "
          "those photo photos painting of a cat's hat it's we're they've i'm we'll he'd")
WORDS = CORPUS.replace(",", "").replace(".", "").split()


def byte_chars():
    """GPT-2's printable stand-in for each byte, written out from its definition."""
    keep = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    shifted = [b for b in range(256) if b not in keep]
    table = {b: chr(b) for b in keep}
    table.update({b: chr(256 + i) for i, b in enumerate(shifted)})
    return table


def train_bpe(corpus, n_merges):
    """A tiny CLIP-style BPE: bytes, bytes + '</w>', learned merges, then start/end tokens last."""
    bm = byte_chars()
    words = collections.Counter()
    for w in re.findall(r"[a-z]+|[0-9]|[^\sa-z0-9]+", corpus.lower()):
        cs = [bm[b] for b in w.encode()]
        words[tuple(cs[:-1] + [cs[-1] + "</w>"])] += 1
    vocab = [bm[b] for b in range(256)]
    vocab += [v + "</w>" for v in vocab]
    merges = []
    for _ in range(n_merges):
        pairs = collections.Counter()
        for w, f in words.items():
            for p in zip(w, w[1:]):
                pairs[p] += f
        if not pairs:
            break
        best = max(pairs, key=lambda p: (pairs[p], p))
        merges.append(best)
        vocab.append(best[0] + best[1])
        merged = collections.Counter()
        for w, f in words.items():
            out, i = [], 0
            while i < len(w):
                if i < len(w) - 1 and (w[i], w[i + 1]) == best:
                    out.append(w[i] + w[i + 1])
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            merged[tuple(out)] += f
        words = merged
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def write_folder(path, vocab, merges, pad="<|endoftext|>"):
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))
    special = {"__type": "AddedToken", "lstrip": False, "rstrip": False, "single_word": False, "normalized": True}
    (path / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "tokenizer_class": "CLIPTokenizer", "do_lower_case": True, "pad_token": pad,
        "bos_token": dict(special, content="<|startoftext|>"), "eos_token": dict(special, content="<|endoftext|>"),
        "unk_token": dict(special, content="<|endoftext|>")}))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    vocab, merges = train_bpe(CORPUS, 120)
    return write_folder(tmp_path_factory.mktemp("tok"), vocab, merges)


def test_padding_and_start_end_ids(folder):
    tok = ClipTokenizer.from_folder(folder)
    vocab = json.loads((folder / "vocab.json").read_text())
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert (tok.bos_id, tok.eos_id) == (bos, eos) == (len(vocab) - 2, len(vocab) - 1)
    ids = tok(["the horse", ""])
    assert ids.shape == (2, 77) and ids.dtype == np.int64
    assert ids[0, 0] == bos and ids[0, 1] == vocab["the</w>"] and ids[0, 2] == vocab["horse</w>"]
    assert np.all(ids[0, 3:] == eos)  # end token, then padding with <|endoftext|>
    assert ids[1, 0] == bos and np.all(ids[1, 1:] == eos)


def test_pad_token_comes_from_config(tmp_path):
    vocab, merges = train_bpe(CORPUS, 20)
    tok = ClipTokenizer.from_folder(write_folder(tmp_path, vocab, merges, pad="!"))
    ids = tok("a")[0]
    assert ids[2] == vocab["<|endoftext|>"] and np.all(ids[3:] == vocab["!"])


def test_truncation_keeps_end_token_and_warns(folder):
    tok = ClipTokenizer.from_folder(folder)
    with pytest.warns(UserWarning, match="the last 25 tokens were dropped"):
        ids = tok("the " * 100)[0]  # 100 words + start + end = 102 tokens
    assert len(ids) == 77 and ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert np.all(ids[1:-1] == tok.vocab["the</w>"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = tok("the " * 75)[0]  # exactly 77 with start/end: nothing dropped
    assert exact[-1] == tok.eos_id and exact[-2] == tok.vocab["the</w>"]


def test_hand_derived_bpe():
    """Merges apply by rank, not position: 'o l</w>' (rank 0) beats 'l o' (rank 1) in 'lol'."""
    vocab = {"l": 0, "o": 1, "l</w>": 2, "o</w>": 3, "lo": 4, "ol</w>": 5, "lol</w>": 6,
             "<|startoftext|>": 7, "<|endoftext|>": 8}
    tok = ClipTokenizer(vocab, [("o", "l</w>"), ("l", "o"), ("lo", "l</w>")])
    assert tok("LOL  lo")[0, :7].tolist() == [7, 0, 5, 0, 3, 8, 8]  # lol -> l ol</w>; lo -> l o</w>
    assert tok("olol")[0, :4].tolist() == [7, 1, 0, 5]  # o l o l</w> -> o l ol</w>: (l, ol</w>) unknown


def test_missing_files_and_tokens(tmp_path):
    with pytest.raises(SdsimError, match="no tokenizer found"):
        ClipTokenizer.from_folder(tmp_path)
    with pytest.raises(SdsimError, match="bos token"):
        ClipTokenizer({"a": 0, "<|endoftext|>": 1}, [])


TEXT = st.lists(st.one_of(st.sampled_from(WORDS + ["'s", "<|endoftext|>", "  ", "\t", "!!", "4k", "A"]),
                          st.text(st.characters(blacklist_categories=("Cs", "Cn")), max_size=6)),
                max_size=30).map(" ".join)


@pytest.mark.crosscheck
@settings(max_examples=150, deadline=None)
@given(text=TEXT)
def test_ids_match_transformers(folder, text):
    transformers = pytest.importorskip("transformers")
    ref = _reference(transformers, folder)
    want = ref(text, padding="max_length", max_length=77, truncation=True).input_ids
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert ClipTokenizer.from_folder(folder)(text)[0].tolist() == want
        assert _from_json(transformers, folder)(text)[0].tolist() == want


_CACHE = {}


def _reference(transformers, folder):
    if folder not in _CACHE:
        _CACHE[folder] = transformers.CLIPTokenizer.from_pretrained(str(folder))
    return _CACHE[folder]


def _from_json(transformers, folder):
    """Ours, loaded from the tokenizer.json that transformers itself writes."""
    key = (folder, "json")
    if key not in _CACHE:
        out = folder.parent / (folder.name + "_json")
        _reference(transformers, folder).save_pretrained(str(out))
        (out / "vocab.json").unlink(missing_ok=True)
        (out / "merges.txt").unlink(missing_ok=True)
        assert (out / "tokenizer.json").is_file()
        _CACHE[key] = ClipTokenizer.from_folder(out)
    return _CACHE[key]
