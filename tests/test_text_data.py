"""The text family's data: WordNet data-file parsing (on a tiny WordNet-format file the test writes), JSONL pairs
with skipped-and-counted bad lines, the split by word, and the trained tokenizer."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from repflow.families.text.pairs import (
    Pair, PairsError, read_jsonl_pairs, split_by_group, wordnet_pairs, wordnet_source)
from repflow.families.text.synthetic import one_to_many
from repflow.families.text.tokenizer import BOS, EOS, PAD, SPECIALS, UNK, TextTokenizer, train_tokenizer
from repflow.families.text.wordnet import WORDNET_DIR, definition_of, parse_synset_line, read_wordnet

LICENSE = ("  1 This software and database is being provided to you, the LICENSEE, by  \n"
           "  2 Princeton University under the following license.  | not a gloss  \n")
NOUNS = ("00006024 03 n 01 heterotroph 0 001 @ 00004475 n 0000 | an organism that depends on complex organic "
         "substances for nutrition  \n"
         "00019128 03 n 02 natural_object 0 thing 1 001 @ 00002684 n 0000 | an object occurring naturally; "
         "\"a small thing\"; \"another example\"  \n"
         "00020000 03 n 01 bank 0 000 | \"only an example\"  \n")
ADJS = ("00014358 00 s 02 abounding 0 galore(ip) 0 001 & 00013887 a 0000 | existing in abundance; "
        "\"abounding confidence\"  \n")
VERBS = ("00002325 29 v 01 respire 1 002 $ 00001740 v 0000 @ 02108395 v 0000 01 + 02 00 | undergo respiration  \n")


def write_wordnet(folder, adverbs: bool = True):
    for name, body in (("data.noun", NOUNS), ("data.adj", ADJS), ("data.verb", VERBS)):
        (folder / name).write_text(LICENSE + body)
    if adverbs:
        (folder / "data.adv").write_text(LICENSE + "00001740 02 r 01 a_cappella 0 000 | without accompaniment  \n")
    return folder


def test_wordnet_parsing_keeps_definitions_words_and_parts_of_speech(tmp_path):
    pairs = read_wordnet(write_wordnet(tmp_path))
    got = {(d.word, d.pos): d.definition for d in pairs}
    assert got == {
        ("heterotroph", "n"): "an organism that depends on complex organic substances for nutrition",
        ("natural object", "n"): "an object occurring naturally",  # examples in quotes dropped, "_" → " "
        ("thing", "n"): "an object occurring naturally",           # every word of the synset
        ("abounding", "a"): "existing in abundance",               # satellite "s" read as "a"
        ("galore", "a"): "existing in abundance",                  # "(ip)" marker dropped
        ("respire", "v"): "undergo respiration",                   # verb frames before "|" ignored
        ("a cappella", "r"): "without accompaniment",
    }  # license lines skipped; "bank" (a gloss of only examples) yields nothing
    assert {d.offset for d in pairs if d.word == "thing"} == {19128}
    assert read_wordnet(tmp_path, pos=("v",))[0].word == "respire"


def test_definition_and_line_edge_cases():
    assert definition_of('small; "a small dog"') == "small"
    assert definition_of("(usually followed by `to') able; \"able to swim\"") == "(usually followed by `to') able"
    assert parse_synset_line("  license text | with a bar") == []
    with pytest.raises(ValueError, match="says 2 words"):
        parse_synset_line("00000001 03 n 02 lonely 0 | a gloss")


def test_missing_wordnet_names_the_file_and_the_apt_command(tmp_path):
    write_wordnet(tmp_path, adverbs=False)
    with pytest.raises(FileNotFoundError) as e:
        read_wordnet(tmp_path)
    assert str(tmp_path / "data.adv") in str(e.value) and "apt-get install" in str(e.value)
    with pytest.raises(ValueError, match="allowed"):
        read_wordnet(tmp_path, pos=("x",))


@pytest.mark.slow
@pytest.mark.skipif(not (WORDNET_DIR / "data.noun").is_file(), reason="wordnet-base is not installed")
def test_the_installed_wordnet_parses():
    pairs = read_wordnet(pos=("r",))
    assert len(pairs) > 5000 and all(d.definition and '"' not in d.definition for d in pairs)


def test_split_by_word_shares_no_word_and_is_seeded():
    pairs = [Pair(f"w{i} (n)", f"sense {j} of w{i}", f"w{i}") for i in range(50) for j in range(i % 4 + 1)]
    splits = split_by_group(pairs, {"train": 0.6, "valid": 0.2, "test": 0.2}, seed=3)
    words = {name: {p.group for p in ps} for name, ps in splits.items()}
    assert not (words["train"] & words["valid"]) and not (words["train"] & words["test"])
    assert not (words["valid"] & words["test"])
    assert sum(len(ps) for ps in splits.values()) == len(pairs)
    assert [len(words[n]) for n in ("train", "valid", "test")] == [30, 10, 10]
    assert splits == split_by_group(pairs, {"train": 0.6, "valid": 0.2, "test": 0.2}, seed=3)
    assert words["test"] != {p.group for p in split_by_group(pairs, {"train": 0.6, "valid": 0.2, "test": 0.2},
                                                             seed=4)["test"]}
    three_words = [Pair(f"w{i}", "t", f"w{i}") for i in range(3)]
    tiny = split_by_group(three_words, {"train": 0.9, "valid": 0.05, "test": 0.05})  # rounding leaves 2 empty
    assert [len(tiny[n]) for n in ("train", "valid", "test")] == [1, 1, 1]
    with pytest.raises(ValueError, match="2 distinct source words cannot fill 3 splits"):
        split_by_group(three_words[:2], {"train": 0.9, "valid": 0.05, "test": 0.05})
    with pytest.raises(ValueError, match="sum to 1"):
        split_by_group(pairs, {"train": 0.5, "test": 0.2})


def test_wordnet_pairs_group_by_word_and_filter_long_definitions(tmp_path):
    pairs = wordnet_pairs(read_wordnet(write_wordnet(tmp_path)), max_target_words=3)
    assert Pair(wordnet_source("respire", "v"), "undergo respiration", "respire") in pairs
    assert sorted(p.group for p in pairs) == ["a cappella", "abounding", "galore", "respire"]


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_bad_jsonl_lines_are_skipped_and_counted(tmp_path):
    good = [json.dumps({"q": f"source {i}", "a": f"target {i}"}) for i in range(20)]
    lines = good[:5] + [json.dumps({"q": "x"}), "", json.dumps({"q": "  ", "a": "t"})] + good[5:]
    pairs, report = read_jsonl_pairs(write_jsonl(tmp_path / "p.jsonl", lines), source_field="q", target_field="a",
                                     max_skipped_share=0.2)
    assert len(pairs) == 20 and pairs[0] == Pair("source 0", "target 0", "source 0")
    assert report.seen == 22 and report.kept == 20 and sum(report.skipped.values()) == 2
    assert report.first_bad == [(6, "no string 'q' and 'a'"), (8, "empty source")]


def test_mostly_bad_jsonl_is_an_error_with_line_numbers(tmp_path):
    lines = [json.dumps({"source": "ok", "target": "fine"}), "not json", json.dumps({"source": "a b c d e",
             "target": "t"}), json.dumps({"source": "s", "target": ""}), json.dumps(["a", "list"])]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    with pytest.raises(PairsError) as e:
        read_jsonl_pairs(path, max_source_len=3)
    message = str(e.value)
    assert str(path) in message and "4 of 5 lines skipped" in message
    for expected in ("line 2: not JSON", "line 3: source longer than 3", "line 4: empty target",
                     "line 5: not a JSON object"):
        assert expected in message
    pairs, report = read_jsonl_pairs(path, max_source_len=3, max_skipped_share=0.8)
    assert len(pairs) == 1 and report.skipped["not JSON"] == 1
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        read_jsonl_pairs(tmp_path / "nope.jsonl")


TEXTS = ["an organism that depends on complex organic substances for nutrition",
         "an object occurring naturally; not made by man", "existing in abundance", "undergo respiration",
         "heterotroph (n)", "natural object (n)", "galore (a)", "a plant or animal (that is) atypically small"] * 5


def test_tokenizer_round_trip_save_load_and_unknown_characters(tmp_path):
    tok = train_tokenizer(TEXTS, vocab_size=200, min_frequency=1)
    assert [tok.tokenizer.id_to_token(i) for i in (PAD, BOS, EOS, UNK)] == list(SPECIALS)
    text = "An Organism occurring naturally (that is) small; galore"
    ids = tok.encode(text)
    assert min(ids) > UNK and tok.decode(ids) == tok.normalize(text) == text.lower()
    assert tok.decode(ids + [EOS] + ids) == text.lower()  # stops at <eos>
    unknown = tok.encode("organism ✓ 中文 q")
    assert UNK in unknown and tok.decode(unknown).startswith("organism")
    tok.save(tmp_path / "tok" / "tokenizer.json")
    loaded = TextTokenizer.load(tmp_path / "tok" / "tokenizer.json")
    assert loaded == tok and loaded.encode(text) == ids
    assert train_tokenizer(TEXTS, vocab_size=200, min_frequency=1) == tok  # deterministic
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(ValueError, match="junk.json"):
        TextTokenizer.load(tmp_path / "junk.json")
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(TEXTS, vocab_size=3)


def test_one_to_many_task_makes_a_generic_reply_the_mode_and_is_seeded():
    task = one_to_many(n_sources=6, generic_replies=2, specific_replies=3, reply_len=2, content_words=8,
                       generic_copies=3, specific_copies=2, seed=1)
    assert task == one_to_many(n_sources=6, generic_replies=2, specific_replies=3, reply_len=2, content_words=8,
                               generic_copies=3, specific_copies=2, seed=1)
    assert task.specific != one_to_many(n_sources=6, reply_len=2, content_words=8, seed=2).specific
    assert len(task.pairs) == 6 * (2 * 3 + 3 * 2)
    replies = [tuple(r) for own in task.specific for r in own]
    assert len(set(replies)) == len(replies) and not set(replies) & {tuple(g) for g in task.generic}
    for i, source in enumerate(task.sources):
        counts = Counter(tuple(t) for s, t in task.pairs if s == source)
        assert counts.most_common(1)[0][0] in {tuple(g) for g in task.generic}
        assert all(counts[tuple(r)] == 2 for r in task.specific[i])
    tokens = {t for s, t_ in task.pairs for t in (*s, *t_)}
    assert min(tokens) >= 4 and max(tokens) < task.vocab_size
    outputs = [task.generic[0], task.specific[1][0], task.specific[0][0], [], task.specific[4][2], task.generic[1]]
    assert task.kinds(outputs) == ["generic", "specific", "invalid", "invalid", "specific", "generic"]
    assert task.rates(outputs) == {"generic_rate": 2 / 6, "specific_rate": 2 / 6, "invalid_rate": 2 / 6}
    with pytest.raises(ValueError, match="distinct specific replies"):
        one_to_many(n_sources=10, specific_replies=3, reply_len=1, content_words=8)

