"""CLIP's byte-level BPE tokenizer, giving the same ids as transformers' CLIPTokenizer.

Reads a tokenizer folder (vocab.json + merges.txt, or tokenizer.json) and its tokenizer_config.json
/ special_tokens_map.json for the special and pad tokens. The text pipeline is the one transformers'
CLIPTokenizer builds (the `tokenizers` backend, no ftfy): special tokens are split off the raw text;
the rest is NFC-normalised, each whitespace run becomes one space, each character is lower-cased;
CLIP's pre-token pattern splits it, each piece is mapped byte-to-unicode and BPE-merged with the
"</w>" end-of-word suffix. The pattern needs Unicode letter/number classes, which `re` lacks, so it
is written as a small scanner over `unicodedata` categories.
"""

from __future__ import annotations

import json
import unicodedata
import warnings
from pathlib import Path

import numpy as np

from sdsim.errors import SdsimError

MAX_LENGTH = 77  # CLIP's text context, start and end tokens included
_CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")
# the White_Space property, which is what \s means to the Oniguruma regexes of `tokenizers`
_SPACE_CODEPOINTS = frozenset([0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x85])


def _is_space(c: str) -> bool:
    return ord(c) in _SPACE_CODEPOINTS or unicodedata.category(c) in ("Zs", "Zl", "Zp")


def _is_letter(c: str) -> bool:
    return unicodedata.category(c)[0] == "L"


def _is_number(c: str) -> bool:
    return unicodedata.category(c)[0] == "N"


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible map from bytes to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def normalize(text: str) -> str:
    """NFC, each whitespace run to one space, per-character lower case (as `tokenizers` does it)."""
    text = unicodedata.normalize("NFC", text)
    out, in_space = [], False
    for c in text:
        if _is_space(c):
            if not in_space:
                out.append(" ")
            in_space = True
        else:
            out.append(c.lower())
            in_space = False
    return "".join(out)


def pre_tokenize(text: str) -> list[str]:
    """CLIP's pattern  's|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+  ; whitespace dropped."""
    pieces, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "'":
            hit = next((k for k in _CONTRACTIONS if text.startswith(k, i)), None)
            if hit:
                pieces.append(hit)
                i += len(hit)
                continue
        if _is_space(c):
            i += 1
            continue
        j = i + 1
        if _is_letter(c):
            while j < n and _is_letter(text[j]):
                j += 1
        elif not _is_number(c):
            while j < n and not (_is_space(text[j]) or _is_letter(text[j]) or _is_number(text[j])):
                j += 1
        pieces.append(text[i:j])
        i = j
    return pieces


class ClipTokenizer:
    """Byte-level BPE with CLIP's special tokens; `__call__` gives padded (B, 77) int64 ids."""

    def __init__(self, vocab: dict[str, int], merges: list[tuple[str, str]], *, bos_token="<|startoftext|>",
                 eos_token="<|endoftext|>", pad_token="<|endoftext|>", unk_token="<|endoftext|>",
                 max_length: int = MAX_LENGTH, extra_special_tokens=(), source: str = "tokenizer"):
        self.vocab = vocab
        self.ranks = {pair: r for r, pair in enumerate(merges)}
        ids = {}
        for role, tok in (("bos", bos_token), ("eos", eos_token), ("pad", pad_token), ("unk", unk_token)):
            if tok not in vocab:
                raise SdsimError(f"{source}: {role} token {tok!r} is not in the vocabulary")
            ids[role] = vocab[tok]
        self.bos_id, self.eos_id, self.pad_id, self.unk_id = ids["bos"], ids["eos"], ids["pad"], ids["unk"]
        self.max_length = max_length
        specials = {bos_token, eos_token, pad_token, unk_token, *extra_special_tokens}
        self._specials = sorted((s for s in specials if s in vocab), key=len, reverse=True)
        self._byte_map = bytes_to_unicode()
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def from_folder(cls, folder) -> "ClipTokenizer":
        """Load vocab.json + merges.txt (or tokenizer.json) and the special tokens of a tokenizer folder."""
        folder = Path(folder)
        config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):
            if (folder / name).is_file():
                config.update(_read_json(folder / name))
        extra = [t["content"] for t in config.get("added_tokens_decoder", {}).values()
                 if isinstance(t, dict) and t.get("special")]
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            vocab = _read_json(folder / "vocab.json")
            merges = _read_merges(folder / "merges.txt")
            source = str(folder / "vocab.json")
        elif (folder / "tokenizer.json").is_file():
            vocab, merges, added = _read_tokenizer_json(folder / "tokenizer.json")
            extra += added
            source = str(folder / "tokenizer.json")
        else:
            raise SdsimError(f"{folder}: no tokenizer found (need vocab.json and merges.txt, or tokenizer.json)")
        tokens = {role: _token_text(config.get(f"{role}_token"), default)
                  for role, default in (("bos", "<|startoftext|>"), ("eos", "<|endoftext|>"),
                                        ("pad", "<|endoftext|>"), ("unk", "<|endoftext|>"))}
        max_length = config.get("model_max_length", MAX_LENGTH)
        if not isinstance(max_length, int) or not 2 <= max_length <= 100_000:
            max_length = MAX_LENGTH  # transformers writes a huge number when there is no limit
        return cls(vocab, merges, bos_token=tokens["bos"], eos_token=tokens["eos"], pad_token=tokens["pad"],
                   unk_token=tokens["unk"], max_length=max_length, extra_special_tokens=extra, source=source)

    def _bpe(self, piece: str) -> list[int]:
        """Ids of one pre-token: byte-map it, then merge the lowest-ranked adjacent pair until none is left."""
        ids = self._cache.get(piece)
        if ids is not None:
            return ids
        chars = [self._byte_map[b] for b in piece.encode("utf-8")]
        word = chars[:-1] + [chars[-1] + "</w>"]
        while len(word) > 1:
            pairs = [(self.ranks.get((a, b), None), k) for k, (a, b) in enumerate(zip(word, word[1:]))]
            known = [p for p in pairs if p[0] is not None]
            if not known:
                break
            first, second = word[min(known)[1]], word[min(known)[1] + 1]
            merged, k = [], 0
            while k < len(word):  # merge every occurrence, left to right
                if k < len(word) - 1 and word[k] == first and word[k + 1] == second:
                    merged.append(first + second)
                    k += 2
                else:
                    merged.append(word[k])
                    k += 1
            word = merged
        ids = [self.vocab.get(tok, self.unk_id) for tok in word]
        self._cache[piece] = ids
        return ids

    def _split_specials(self, text: str) -> list[str]:
        """Text cut around special tokens (kept as separate items), as the added-token matcher does."""
        parts, start, i = [], 0, 0
        while i < len(text):
            hit = next((s for s in self._specials if text.startswith(s, i)), None)
            if hit:
                parts += [text[start:i], hit]
                i += len(hit)
                start = i
            else:
                i += 1
        parts.append(text[start:])
        return parts

    def encode(self, text: str) -> list[int]:
        """Ids of `text` between the start and end tokens, not truncated."""
        ids = [self.bos_id]
        for part in self._split_specials(text):
            if part in self._specials:
                ids.append(self.vocab[part])
                continue
            for piece in pre_tokenize(normalize(part)):
                ids += self._bpe(piece)
        return ids + [self.eos_id]

    def __call__(self, prompts: str | list[str]) -> np.ndarray:
        """(B, max_length) int64 ids: truncated keeping the end token, padded with the pad token."""
        batch = [prompts] if isinstance(prompts, str) else list(prompts)
        out = np.full((len(batch), self.max_length), self.pad_id, dtype=np.int64)
        for row, prompt in enumerate(batch):
            ids = self.encode(prompt)
            if len(ids) > self.max_length:
                dropped = len(ids) - self.max_length
                warnings.warn(f"prompt {row} is {len(ids)} tokens long (with start/end); CLIP takes "
                              f"{self.max_length}: the last {dropped} tokens were dropped", stacklevel=2)
                ids = ids[: self.max_length - 1] + [self.eos_id]
            out[row, : len(ids)] = ids
        return out


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SdsimError(f"{path}: cannot read JSON ({e})") from None


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or (n == 1 and line.startswith("#version")):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise SdsimError(f"{path}:{n}: a merge line must hold two tokens separated by a space, got {line!r}")
        merges.append((parts[0], parts[1]))
    return merges


def _read_tokenizer_json(path: Path):
    data = _read_json(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE" or "vocab" not in model or "merges" not in model:
        raise SdsimError(f"{path}: field 'model' must be a BPE model with 'vocab' and 'merges'")
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    added = [t["content"] for t in data.get("added_tokens", []) if t.get("special")]
    return model["vocab"], merges, added


def _token_text(value, default: str) -> str:
    """A special token given as a string or as transformers' AddedToken dict."""
    if isinstance(value, dict):
        return value.get("content", default)
    return value if isinstance(value, str) else default
