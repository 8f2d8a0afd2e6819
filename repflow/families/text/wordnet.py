"""Definition-generation pairs from WordNet 3.0's plain-text database: (word, part of speech) → definition.

Debian's ``wordnet-base`` installs ``data.{noun,verb,adj,adv}`` in ``/usr/share/wordnet``. Each of those files
opens with Princeton's license, every line of it indented by two spaces; every other line is one synset::

    offset lex_filenum ss_type w_cnt word lex_id [word lex_id ...] p_cnt [pointer ...] [frames ...] | gloss

``w_cnt`` is two hex digits, the words use ``_`` for spaces and adjectives may carry a syntactic marker
(``galore(ip)``); ``ss_type`` ``s`` (satellite adjective) is read as the adjective it is. A gloss is a
definition followed by examples in double quotes (``having the means to do something; "able to swim"``).
What is kept is the **definition**: the gloss up to its first double quote, without the ``;`` and spaces
before it; a gloss that is only examples yields no pair. Every word of a synset gets the synset's definition,
so a word with several senses gets several pairs (definition generation is one-to-many, as AMI's task needs).

NLTK's WordNet reader cannot read this installation (Debian's ``wordnet-base`` ships no ``lexnames`` file) and
NLTK data is not available offline, so the files are parsed here directly.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["WORDNET_DIR", "POS_FILES", "APT_HINT", "Definition", "parse_synset_line", "definition_of",
           "read_wordnet"]

WORDNET_DIR = Path("/usr/share/wordnet")
POS_FILES = {"n": "data.noun", "v": "data.verb", "a": "data.adj", "r": "data.adv"}
"""Part-of-speech letter (WordNet's ss_type, with satellites ``s`` read as ``a``) → its data file."""
APT_HINT = "sudo apt-get install -y --no-install-recommends wordnet-base"


@dataclass(frozen=True)
class Definition:
    """One sense of one word: ``word`` with spaces (not ``_``), lower-case as WordNet spells it except proper
    nouns; ``pos`` one of :data:`POS_FILES`; ``definition`` the gloss without its examples; ``offset`` the
    synset's byte offset in its data file (with ``pos``, the synset's identity)."""

    word: str
    pos: str
    definition: str
    offset: int


def definition_of(gloss: str) -> str:
    """The definition part of a gloss: the text before its first double quote, trailing ``;`` and blanks off.
    ``'small; "a small dog"'`` → ``'small'``; a gloss of only examples → ``''``."""
    return gloss.split('"', 1)[0].rstrip().rstrip(";").strip()


def _strip_marker(word: str) -> str:
    """``galore(ip)`` → ``galore``: an adjective's syntactic marker is not part of the word."""
    if word.endswith(")") and "(" in word:
        return word[:word.rindex("(")]
    return word


def parse_synset_line(line: str) -> list[Definition]:
    """The pairs of one line of a data file: one per word of the synset, [] for a license line (it starts
    with a blank) or a synset whose gloss has no definition. A malformed synset line raises ValueError."""
    if not line or line[0] == " ":
        return []
    head, sep, gloss = line.partition(" | ")
    fields = head.split()
    if not sep or len(fields) < 6:
        raise ValueError(f"not a WordNet synset line (no ' | ' gloss or too few fields): {line[:80]!r}")
    offset, pos, count = int(fields[0]), fields[2], int(fields[3], 16)
    pos = "a" if pos == "s" else pos
    if pos not in POS_FILES:
        raise ValueError(f"unknown synset type {fields[2]!r} in {line[:80]!r}; allowed: n v a s r")
    words = fields[4:4 + 2 * count:2]
    if len(words) != count:
        raise ValueError(f"synset {fields[0]} says {count} words but has {len(words)}")
    definition = definition_of(gloss)
    if not definition:
        return []
    return [Definition(_strip_marker(w).replace("_", " "), pos, definition, offset) for w in words]


def read_wordnet(folder: str | Path = WORDNET_DIR, pos: tuple[str, ...] = ("n", "v", "a", "r")) -> list[Definition]:
    """Every (word, pos) → definition pair of the data files of ``pos`` in ``folder``, in file order.
    A missing file raises FileNotFoundError naming it and the apt command that installs WordNet."""
    unknown = [p for p in pos if p not in POS_FILES]
    if unknown:
        raise ValueError(f"unknown part(s) of speech {unknown}; allowed: {list(POS_FILES)}")
    folder = Path(folder)
    paths = [folder / POS_FILES[p] for p in pos]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"WordNet data file(s) missing: {', '.join(missing)}. Install WordNet 3.0 with: "
                                f"{APT_HINT}")
    pairs: list[Definition] = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                try:
                    pairs.extend(parse_synset_line(line.rstrip("\n")))
                except ValueError as e:
                    raise ValueError(f"{path}:{number}: {e}") from None
    return pairs
