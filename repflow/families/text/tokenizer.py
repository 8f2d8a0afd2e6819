"""A subword tokenizer trained on the pairs' own text, shared by the forward and the backward model.

HuggingFace ``tokenizers`` BPE (a maintained Rust library; no hand-written BPE): NFKC (+ lower-casing by
default) normalisation, SentencePiece-style ``▁`` word boundaries (so decoding restores the spaces) with
punctuation split off, and the special tokens :data:`SPECIALS` at ids 0-3. A character never seen in training
becomes ``<unk>`` (dropped when decoding), so any text encodes. Decoding of normalised text is exact:
``decode(encode(t)) == normalize(t)`` whenever every character of ``t`` was seen in training.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

__all__ = ["SPECIALS", "PAD", "BOS", "EOS", "UNK", "TextTokenizer", "train_tokenizer"]

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
PAD, BOS, EOS, UNK = range(4)


class TextTokenizer:
    """Text ↔ token ids. ``encode`` gives the ids without <bos>/<eos> (models add those); ``decode`` stops at
    the first <eos>, drops the other special tokens and joins the subwords back into words."""

    def __init__(self, tokenizer: Tokenizer):
        ids = [tokenizer.token_to_id(t) for t in SPECIALS]
        if ids != list(range(len(SPECIALS))):
            raise ValueError(f"a text tokenizer needs the special tokens {SPECIALS} at ids 0-3, found ids {ids}")
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def normalize(self, text: str) -> str:
        """The text as the tokenizer sees it (NFKC, lower-cased if trained so): what decoding gives back."""
        normalizer = self.tokenizer.normalizer
        return normalizer.normalize_str(text) if normalizer is not None else text

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        kept = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i >= len(SPECIALS):
                kept.append(i)
        return self.tokenizer.decode(kept)

    def tokens(self, text: str) -> list[str]:
        return self.tokenizer.encode(text, add_special_tokens=False).tokens

    def save(self, path: str | Path) -> None:
        """One JSON file (the library's own format), readable by :meth:`load`."""
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(str(path))

    @classmethod
    def load(cls, path: str | Path) -> TextTokenizer:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file {path} does not exist (it is written by text prep)")
        try:
            return cls(Tokenizer.from_file(str(path)))
        except Exception as e:  # the library raises a bare Exception for a malformed file
            raise ValueError(f"{path} is not a tokenizer JSON file: {e}") from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextTokenizer) and self.tokenizer.to_str() == other.tokenizer.to_str()

    __hash__ = None  # type: ignore[assignment]


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000, lowercase: bool = True,
                    min_frequency: int = 2) -> TextTokenizer:
    """A BPE tokenizer of at most ``vocab_size`` tokens (specials included) trained on ``texts`` (train the
    sources and targets of the training split only, so held-out words stay unseen). ``min_frequency``: a
    merge must occur this often. Deterministic: the same texts give the same tokenizer."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= len(SPECIALS):
        raise ValueError(f"vocab_size must be an int > {len(SPECIALS)}, got {vocab_size!r}")
    tokenizer = Tokenizer(models.BPE(unk_token=SPECIALS[UNK]))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tokenizer.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return TextTokenizer(tokenizer)
