"""A synthetic one-to-many task where the right answer about generic replies is known by construction: AMI's
positive control (``benchmarks/ami.py``).

Every source (one token) has a few **specific** replies, valid for it alone, and shares a few **generic**
replies with every other source. Each generic reply is given more often per source than each specific one
(``generic_copies`` > ``specific_copies``), so the mode of the data's P(T|S), which MLE with beam search
approaches, is a generic reply, while log Q(S|T) is about −log(number of sources) for a generic reply and
about 0 for a specific one: a method that raises the mutual information between source and output
(Pan et al. 2020, Eq. MI in :mod:`~repflow.families.text.ami`) must move the outputs from the generic replies
to the specific ones. Token ids are the family's (``PAD, BOS, EOS, UNK`` = 0-3 first); no tokenizer.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from repflow.families.text.tokenizer import SPECIALS

__all__ = ["OneToMany", "one_to_many"]

Pair = tuple[list[int], list[int]]


@dataclass(frozen=True)
class OneToMany:
    """``pairs`` the training (source, target) id lists (every source with each of its replies, copied as
    often as the task says, in a fixed order); ``sources`` one id list per source; ``specific[i]`` the
    replies valid for source i only; ``generic`` the replies valid for every source; ``vocab_size``."""

    pairs: list[Pair]
    sources: list[list[int]]
    specific: list[list[list[int]]]
    generic: list[list[int]]
    vocab_size: int

    def kinds(self, outputs: Sequence[Sequence[int]]) -> list[str]:
        """Each output of source i (in ``sources`` order) as "generic", "specific" (one of source i's own
        specific replies) or "invalid" (anything else, another source's reply included)."""
        if len(outputs) != len(self.sources):
            raise ValueError(f"{len(outputs)} outputs for {len(self.sources)} sources")
        generic = {tuple(g) for g in self.generic}
        return ["generic" if tuple(o) in generic else
                "specific" if any(list(o) == s for s in self.specific[i]) else "invalid"
                for i, o in enumerate(outputs)]

    def rates(self, outputs: Sequence[Sequence[int]]) -> dict[str, float]:
        """{"generic_rate", "specific_rate", "invalid_rate"}: shares of the outputs (one per source), summing to 1."""
        kinds = self.kinds(outputs)
        return {f"{k}_rate": kinds.count(k) / len(kinds) for k in ("generic", "specific", "invalid")}


def one_to_many(n_sources: int = 64, generic_replies: int = 2, specific_replies: int = 3, reply_len: int = 3,
                content_words: int = 48, generic_copies: int = 3, specific_copies: int = 2,
                seed: int = 0) -> OneToMany:
    """The task, the same for the same arguments. Sources are the ids after the specials; the generic replies
    use their own ``generic_replies·reply_len`` words; each specific reply is ``reply_len`` words drawn from
    ``content_words`` others, distinct from every other reply (by ``seed``). Per source the training pairs
    hold each generic reply ``generic_copies`` times and each specific reply ``specific_copies`` times
    (generic_copies > specific_copies makes a generic reply the mode)."""
    for name, value, low in (("n_sources", n_sources, 2), ("generic_replies", generic_replies, 1),
                             ("specific_replies", specific_replies, 1), ("reply_len", reply_len, 1),
                             ("content_words", content_words, 2), ("generic_copies", generic_copies, 1),
                             ("specific_copies", specific_copies, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if content_words ** reply_len < n_sources * specific_replies:
        raise ValueError(f"content_words ** reply_len = {content_words ** reply_len} cannot give "
                         f"{n_sources * specific_replies} distinct specific replies")
    first = len(SPECIALS)
    sources = [[first + i] for i in range(n_sources)]
    generic_first = first + n_sources
    generic = [list(range(generic_first + g * reply_len, generic_first + (g + 1) * reply_len))
               for g in range(generic_replies)]
    content_first = generic_first + generic_replies * reply_len
    generator = torch.Generator().manual_seed(seed)
    seen: set[tuple[int, ...]] = set()
    specific = []
    for _ in range(n_sources):
        replies = []
        while len(replies) < specific_replies:
            reply = (torch.randint(0, content_words, (reply_len,), generator=generator) + content_first).tolist()
            if tuple(reply) not in seen:
                seen.add(tuple(reply))
                replies.append(reply)
        specific.append(replies)
    pairs = [(list(source), list(reply))
             for source, own in zip(sources, specific)
             for reply, copies in [*((g, generic_copies) for g in generic), *((s, specific_copies) for s in own)]
             for _ in range(copies)]
    return OneToMany(pairs, sources, specific, generic, content_first + content_words)
