"""The text family's seq2seq models, decoding, MLE / MMI / AMI steps and metrics, on a tiny one-to-many task the
test makes: the target is a token map of the source, or (for some sources) one generic reply."""
from __future__ import annotations

import math
from collections import Counter

import pytest
import sacrebleu
import torch

from repflow.families.text.ami import (
    AMIConfig, ami_phase, backward_adversarial_loss, forward_adversarial_loss, make_batches, mle_loss, mmi_rerank,
    noise_loss, swap, train_ami, train_mle)
from repflow.families.text.decoding import NEVER_GENERATED, beam_search, greedy_decode, sample_decode
from repflow.families.text.metrics import (
    bleu, distinct_n, excess_generality, generic_rate, mean_backward_log_likelihood, reference_generality,
    reference_generic_rate)
from repflow.families.text.models import (
    SEQ2SEQ, LatentNoise, Memory, build_seq2seq, decoder_io, noise_norm, pad_batch, reverse_within,
    sequence_log_prob)
from repflow.families.text.tokenizer import BOS, EOS, PAD
from repflow.registry import UnknownName

VOCAB = 24
GENERIC = [20, 21, 22]


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def toy_pairs(n: int = 96, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """Sources of 2-4 tokens from 4..11; target = each token + 8, or the generic reply for a third of them."""
    g = torch.Generator().manual_seed(seed)
    pairs = []
    for i in range(n):
        source = torch.randint(4, 12, (int(torch.randint(2, 5, (1,), generator=g)),), generator=g).tolist()
        pairs.append((source, GENERIC if i % 3 == 0 else [t + 8 for t in source]))
    return pairs


def tiny(seed: int = 0, name: str = "gru_attention"):
    torch.manual_seed(seed)
    return build_seq2seq(name, VOCAB, embed=16, hidden=32, dropout=0.0)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:The tensor attributes")
def test_encoder_equals_a_packed_bidirectional_gru_and_exports():
    """The two-GRU encoder computes what a packed 2-layer bidirectional nn.GRU does with the same weights, and
    the model goes through torch.export (what the register stage needs)."""
    torch.manual_seed(0)
    model = build_seq2seq("gru_attention", VOCAB, embed=8, hidden=12, layers=2, dropout=0.0).eval()
    packed = torch.nn.GRU(8, 6, 2, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for layer in range(2):
            for gru, suffix in ((model.encoder_forward[layer], ""), (model.encoder_backward[layer], "_reverse")):
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(packed, f"{name}_l{layer}{suffix}").copy_(getattr(gru, f"{name}_l0"))
    source = pad_batch([[5, 6, 7, 8, 9], [4, 10], [11]])
    memory = model.encode(source)
    lengths = torch.tensor([5, 2, 1])
    run = torch.nn.utils.rnn.pack_padded_sequence(model.embedding(source), lengths, batch_first=True,
                                                  enforce_sorted=False)
    states, final = packed(run)
    states, _ = torch.nn.utils.rnn.pad_packed_sequence(states, batch_first=True, total_length=5)
    torch.testing.assert_close(memory.states, states)
    final = final.view(2, 2, 3, 6)
    torch.testing.assert_close(memory.init, torch.tanh(model.bridge(torch.cat([final[:, 0], final[:, 1]], -1))))
    assert reverse_within(torch.arange(8).view(2, 4), torch.tensor([3, 4])).tolist() == [[2, 1, 0, 3],
                                                                                          [7, 6, 5, 4]]
    target = pad_batch([[5, 6], [7], [8, 9, 10]])
    exported = torch.export.export(model, (source, target)).module()
    torch.testing.assert_close(exported(source, target), model(source, target))


def test_decoder_io_places_bos_and_eos():
    decoder_in, decoder_out, mask = decoder_io(pad_batch([[5, 6, 7], [8]]))
    assert decoder_in.tolist() == [[BOS, 5, 6, 7], [BOS, 8, PAD, PAD]]
    assert decoder_out.tolist() == [[5, 6, 7, EOS], [8, EOS, PAD, PAD]]
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SEQ2SEQ))
def test_mle_loss_falls_in_a_few_steps_and_is_seeded(name):
    pairs = toy_pairs()
    source, target = pad_batch([s for s, _ in pairs]), pad_batch([t for _, t in pairs])
    model = tiny(name=name)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = mle_loss(model, source, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > math.log(VOCAB) - 0.5 and losses[-1] < 0.6 * losses[0], losses[::10]
    again = tiny(name=name)
    assert mle_loss(again, source, target).item() == pytest.approx(losses[0], abs=1e-6)


def test_sequence_log_prob_matches_token_sum_and_ignores_padding():
    model = tiny().eval()
    source, target = pad_batch([[4, 5], [6]]), pad_batch([[12, 13, 14], [15]])
    together = sequence_log_prob(model, source, target)
    alone = sequence_log_prob(model, source[1:, :1], target[1:, :1])
    assert together[1].item() == pytest.approx(alone.item(), abs=1e-5)
    memory = model.encode(source[1:, :1])
    lp, state = model.step(memory, torch.tensor([BOS]), memory.init)
    lp2, _ = model.step(memory, torch.tensor([15]), state)
    assert alone.item() == pytest.approx((lp[0, 15] + lp2[0, EOS]).item(), abs=1e-5)


def test_beam_size_one_is_greedy_and_wider_beams_find_likelier_outputs():
    model = tiny(1).eval()
    train_mle(model, toy_pairs(), epochs=2, batch_size=16, lr=1e-2, seed=0)
    source = pad_batch([s for s, _ in toy_pairs(12, seed=5)])
    greedy = greedy_decode(model, source, max_len=8)
    one = beam_search(model, source, beam=1, max_len=8)
    assert torch.equal(one.best[:, :greedy.shape[1]], greedy)
    four = beam_search(model, source, beam=4, max_len=8)
    assert (four.log_prob[:, 0] >= one.log_prob[:, 0] - 1e-5).all()
    assert (four.score[:, :-1] >= four.score[:, 1:] - 1e-6).all()  # best first
    ended = (four.best != PAD).sum(1) < four.best.shape[1]
    exact = sequence_log_prob(model, source, four.best)
    assert torch.allclose(exact[ended], four.log_prob[ended, 0], atol=1e-4)
    for tokens in (greedy, four.tokens, sample_decode(model, source, max_len=8)):
        body = tokens[tokens != PAD]
        assert not any(int(t) in NEVER_GENERATED or int(t) == EOS for t in body)


def test_sampling_is_seeded():
    model = tiny().eval()
    source = pad_batch([[4, 5, 6]] * 6)
    a = sample_decode(model, source, max_len=6, generator=torch.Generator().manual_seed(3))
    b = sample_decode(model, source, max_len=6, generator=torch.Generator().manual_seed(3))
    c = sample_decode(model, source, max_len=6, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len({tuple(r) for r in a.tolist()}) > 1  # a fresh model's samples differ across rows


def test_latent_noise_perturbs_real_positions_with_a_per_example_norm():
    model = tiny().eval()
    memory = model.encode(pad_batch([[4, 5, 6], [7]]))
    noise = LatentNoise(32)
    eps = noise(memory.states, torch.Generator().manual_seed(0))
    moved = memory.perturbed(eps, 0.5)
    assert torch.equal(moved.states[1, 1:], memory.states[1, 1:])  # padding untouched
    assert torch.allclose(moved.states[0] - memory.states[0], 0.5 * eps[0])
    norms = noise_norm(eps, memory.mask)
    assert norms[1].item() == pytest.approx(eps[1, 0].norm().item(), rel=1e-5)  # its own example only
    scaled = noise_norm(torch.cat([eps[:1], 10 * eps[1:]]), memory.mask)
    assert scaled[0].item() == pytest.approx(norms[0].item(), rel=1e-5)  # not a norm over the batch axis
    with pytest.raises(ValueError, match="must match"):
        memory.perturbed(eps[:, :1], 1.0)


def pretrained(seed: int = 0):
    pairs = toy_pairs()
    forward, backward = tiny(seed), tiny(seed + 1)
    train_mle(forward, pairs, epochs=3, batch_size=16, lr=1e-2, seed=seed)
    train_mle(backward, swap(pairs), epochs=3, batch_size=16, lr=1e-2, seed=seed)
    return pairs, forward, backward


@pytest.mark.slow
def test_forward_adversarial_step_moves_probability_towards_higher_reward_samples():
    """One small SGD step on the REINFORCE loss alone: per source, the sample with the highest advantage
    (log Q(S|T̃) above the other samples') must gain log P relative to the one with the lowest, and the
    advantage-weighted change must be positive; a sign error in the reward or the loss flips both."""
    pairs, forward, backward = pretrained()
    torch.manual_seed(0)
    noise = LatentNoise(32)
    k, n = 4, 12
    config = AMIConfig(samples=k, max_len=6, noise_scale=0.0)
    source = pad_batch([s for s, _ in pairs[:n]])
    loss, info = forward_adversarial_loss(forward, backward, noise, source, config, torch.Generator().manual_seed(1))
    samples, advantage = info["samples"], info["advantage"]
    repeated = source.repeat_interleave(k, 0)
    assert torch.allclose(info["reward"], sequence_log_prob(backward, samples, repeated))
    assert torch.allclose(advantage.reshape(n, k).sum(1), torch.zeros(n), atol=1e-4)  # leave-one-out baseline
    forward.eval()
    before = sequence_log_prob(forward, repeated, samples).detach()
    forward.zero_grad()
    loss.backward()
    with torch.no_grad():
        for p in forward.parameters():
            p -= 0.01 * p.grad
    change = (sequence_log_prob(forward, repeated, samples).detach() - before).reshape(n, k)
    adv = advantage.reshape(n, k)
    rows = torch.arange(n)
    assert (change * adv).sum() > 0
    gap = change[rows, adv.argmax(1)] - change[rows, adv.argmin(1)]
    assert (gap > 0).float().mean() >= 0.75, gap


@pytest.mark.slow
def test_backward_step_demotes_fakes_and_noise_step_trains_only_the_noise():
    pairs, forward, backward = pretrained()
    torch.manual_seed(0)
    noise = LatentNoise(32)
    config = AMIConfig(samples=2, max_len=6)
    source, target = pad_batch([s for s, _ in pairs[:16]]), pad_batch([t for _, t in pairs[:16]])
    loss, info = backward_adversarial_loss(backward, forward, noise, source, target, config,
                                           torch.Generator().manual_seed(0))
    assert ((info["weight"] >= -1e-6) & (info["weight"] <= 2 + 1e-6)).all()
    optimizer = torch.optim.SGD(backward.parameters(), lr=0.5)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    _, info_after = backward_adversarial_loss(backward, forward, noise, source, target, config,
                                              torch.Generator().manual_seed(0))
    assert info_after["fake_nll"].mean() > info["fake_nll"].mean()  # fakes now less likely under Q

    forward_before = [p.detach().clone() for p in forward.parameters()]
    forward.zero_grad(set_to_none=True)
    loss, info = noise_loss(noise, forward, backward, source, target, config, torch.Generator().manual_seed(0))
    loss.backward()
    assert all(p.grad is None for p in forward.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in noise.parameters())
    assert all(torch.equal(a, b) for a, b in zip(forward_before, forward.parameters()))
    assert info["norm"].shape == (32,)


def test_ami_schedule_follows_the_official_cycle():
    config = AMIConfig()
    phases = [ami_phase(i, config) for i in range(20)]
    assert [p for p, _ in phases] == ["forward"] * 8 + ["backward"] * 8 + ["noise"] * 4
    assert [adv for p, adv in phases[:8]] == [False, True] * 4
    assert ami_phase(20, config) == ami_phase(0, config)
    with pytest.raises(ValueError, match="samples"):
        AMIConfig(samples=0)


@pytest.mark.slow
def test_train_ami_changes_the_forward_model_and_is_deterministic():
    def run():
        pairs, forward, backward = pretrained()
        torch.manual_seed(5)
        noise = LatentNoise(32)
        before = [p.detach().clone() for p in forward.parameters()]
        history = train_ami(forward, backward, noise, pairs, steps=20, batch_size=16,
                            config=AMIConfig(samples=2, max_len=6), seed=2)
        changed = any(not torch.equal(a, b) for a, b in zip(before, forward.parameters()))
        return history, changed, forward

    history, changed, forward = run()
    assert changed
    assert [h["phase"] for h in history].count("noise") == 4 and sum("reward" in h for h in history) == 4
    history2, _, forward2 = run()
    assert history == history2
    assert all(torch.equal(a, b) for a, b in zip(forward.parameters(), forward2.parameters()))


@pytest.mark.slow
def test_train_ami_raises_instead_of_skipping_a_failing_batch():
    pairs, forward, backward = pretrained()
    bad = pairs + [([4, 99], [12])]  # token 99 is outside the vocabulary
    with pytest.raises(IndexError):
        train_ami(forward, backward, LatentNoise(32), bad, steps=20, batch_size=200,
                  config=AMIConfig(samples=2, max_len=6))


@pytest.mark.slow
def test_mmi_reranking_picks_the_candidate_the_backward_model_prefers():
    pairs, forward, backward = pretrained()
    source = pad_batch([s for s, _ in pairs[:12]])
    n_best = beam_search(forward, source, beam=4, max_len=8)
    chosen = mmi_rerank(forward, backward, source, n_best=4, lam=1e6, max_len=8)
    q = torch.stack([sequence_log_prob(backward, n_best.tokens[:, j], source) for j in range(4)], dim=1)
    expected = n_best.tokens[torch.arange(12), q.argmax(1)]
    assert torch.equal(chosen[:, :expected.shape[1]], expected)
    plain = mmi_rerank(forward, backward, source, n_best=4, lam=0.0, max_len=8)
    assert torch.equal(plain, n_best.best)


@pytest.mark.slow
def test_generate_decodes_by_the_methods_rule_through_a_tokenizer():
    """``generate`` (what text.evaluate and ``repflow define`` use): MLE/AMI give the beam's best, MMI the
    reranked best, both decoded to text; unknown characters do not stop it."""
    from repflow.families.text.generation import TEXT_METHODS, generate
    from repflow.families.text.tokenizer import train_tokenizer

    pairs, forward, backward = pretrained()
    tokenizer = train_tokenizer(["a b c d e f g h"], vocab_size=VOCAB, min_frequency=1)
    assert tokenizer.vocab_size <= VOCAB
    sources = [" ".join("abcdefgh"[t - 4] for t in s) for s, _ in pairs[:6]] + ["☃ unknown ✓"]
    ids = pad_batch([tokenizer.encode(s) for s in sources])
    for method in TEXT_METHODS:
        out = generate(method, forward, tokenizer, sources, backward=backward, beam=4, show=2, mmi_lambda=1.0,
                       max_len=8)
        best = (mmi_rerank(forward, backward, ids, n_best=4, lam=1.0, max_len=8) if TEXT_METHODS[method].rerank
                else beam_search(forward, ids, beam=4, max_len=8).best)
        assert [o[0] for o in out.ids] == [[t for t in row.tolist() if t != PAD] for row in best], method
        assert [t[0] for t in out.texts] == [tokenizer.decode(o[0]) for o in out.ids]
        assert all(1 <= len(o) <= 2 and len(set(map(tuple, o))) == len(o) for o in out.ids) and out.tokens_per_s > 0
    with pytest.raises(ValueError, match="reranks with the backward model"):
        generate("mmi", forward, tokenizer, sources)


def test_make_batches_covers_every_pair_once_in_a_seeded_order():
    pairs = toy_pairs(50)
    first = list(make_batches(pairs, 16, torch.Generator().manual_seed(0)))
    assert [b[0].shape[0] for b in first] == [16, 16, 16, 2]
    rows = Counter(tuple(r[r != PAD].tolist()) for b in first for r in b[0])
    assert rows == Counter(tuple(s) for s, _ in pairs)
    second = list(make_batches(pairs, 16, torch.Generator().manual_seed(0)))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, second))


def test_registry_rejects_unknown_names_and_options():
    with pytest.raises(UnknownName, match="gru_attention"):
        build_seq2seq("lstm", VOCAB)
    with pytest.raises(ValueError, match="allowed"):
        build_seq2seq("gru_attention", VOCAB, width=3)
    with pytest.raises(ValueError, match="even"):
        build_seq2seq("gru_attention", VOCAB, hidden=33)
    assert isinstance(tiny().encode(pad_batch([[4]])), Memory)


OUTPUTS = ["a small dog", "a small dog", "a thing", "a small dog", "the act of running", "a thing", "red", ""]


def test_distinct_n_and_generic_rate_against_direct_counts():
    words = [w for o in OUTPUTS for w in o.split()]
    assert distinct_n(OUTPUTS, 1) == pytest.approx(len(set(words)) / len(words))
    bigrams = [(a, b) for o in OUTPUTS for a, b in zip(o.split(), o.split()[1:])]
    assert distinct_n(OUTPUTS, 2) == pytest.approx(len(set(bigrams)) / len(bigrams))
    assert distinct_n(["one"], 2) == 0.0
    counts = Counter(OUTPUTS)
    assert generic_rate(OUTPUTS, k=1) == counts["a small dog"] / len(OUTPUTS)
    assert generic_rate(OUTPUTS, k=2) == (counts["a small dog"] + counts["a thing"]) / len(OUTPUTS)
    assert generic_rate(OUTPUTS, k=10) == generic_rate(OUTPUTS, k=2)  # outputs given once are not generic
    assert generic_rate([f"unique {i}" for i in range(20)]) == 0.0


def test_bleu_equals_sacrebleu_corpus_bleu():
    hyps = ["a small domestic dog", "the act of running fast", "red in colour"]
    refs = [["a small dog kept as a pet", "a domestic dog"], ["the act of running"], ["of the colour red"]]
    direct = sacrebleu.corpus_bleu(hyps, [["a small dog kept as a pet", "the act of running", "of the colour red"],
                                          ["a domestic dog", None, None]]).score
    assert bleu(hyps, refs) == pytest.approx(direct)
    single = [[r[0]] for r in refs]
    assert bleu(hyps, single) == pytest.approx(sacrebleu.corpus_bleu(hyps, [[r[0] for r in refs]]).score)
    assert bleu(hyps, refs) > bleu(hyps, single)
    with pytest.raises(ValueError, match="reference"):
        bleu(hyps, refs[:2])


@pytest.mark.slow
def test_mean_backward_log_likelihood_is_the_mean_of_log_q():
    _, _, backward = pretrained()
    sources, outputs = [[4, 5], [6, 7, 8], [9]], [[12, 13], [], [17]]
    direct = [sequence_log_prob(backward, pad_batch([o]), pad_batch([s])).item() for s, o in zip(sources, outputs)]
    got = mean_backward_log_likelihood(backward, sources, outputs, batch_size=2)
    assert got == pytest.approx(sum(direct) / 3, abs=1e-4) and got < 0


def test_ami_rewards_and_noise_step_run_with_dropout_off():
    """With dropout 0.5 and every model in train mode, the forward step's rewards and loss and the noise
    step's loss are the same for the same inputs and draws (scored in eval mode), and each model's mode is
    restored afterwards."""
    torch.manual_seed(0)
    forward, backward = (build_seq2seq("gru_attention", VOCAB, embed=16, hidden=32, dropout=0.5) for _ in range(2))
    noise = LatentNoise(32)
    for m in (forward, backward, noise):
        m.train()
    pairs = toy_pairs(8)
    source, target = pad_batch([s for s, _ in pairs]), pad_batch([t for _, t in pairs])
    config = AMIConfig(samples=3, max_len=6)
    runs = [forward_adversarial_loss(forward, backward, noise, source, config, torch.Generator().manual_seed(3))
            for _ in range(2)]
    assert torch.equal(runs[0][1]["reward"], runs[1][1]["reward"])
    assert torch.equal(runs[0][0], runs[1][0])
    noise_runs = [noise_loss(noise, forward, backward, source, target, config, torch.Generator().manual_seed(3))[0]
                  for _ in range(2)]
    assert torch.equal(noise_runs[0], noise_runs[1])
    assert forward.training and backward.training and noise.training


def test_ami_ablation_switches_drop_the_backward_demotion_and_the_noise_update():
    pairs = toy_pairs(32)

    def run(**switches):
        forward, backward = tiny(0), tiny(1)
        torch.manual_seed(2)
        noise = LatentNoise(32)
        before = [p.detach().clone() for p in noise.parameters()]
        history = train_ami(forward, backward, noise, pairs, steps=20, batch_size=8,
                            config=AMIConfig(samples=2, max_len=4, **switches), seed=0)
        moved = any(not torch.equal(a, b) for a, b in zip(before, noise.parameters()))
        return history, moved

    full, moved = run()
    assert moved and sum("fake_nll" in h for h in full) == 4 and sum("noise_norm" in h for h in full) == 4
    no_back, _ = run(backward_adversarial=False)
    assert sum("fake_nll" in h for h in no_back) == 0 and sum("reward" in h for h in no_back) == 4
    no_noise, moved = run(noise_step=False)
    assert not moved and [h.get("skipped") for h in no_noise if h["phase"] == "noise"] == [True] * 4
    with pytest.raises(ValueError, match="noise_step"):
        AMIConfig(noise_step=1)


def test_reference_generic_rate_does_not_penalise_a_generic_right_answer():
    refs = [["of or relating to the sea"], ["of or relating to music"], ["a small boat with oars"],
            ["of or relating to"]]
    assert reference_generic_rate(["of or relating to the sea", "of or relating to music",
                                   "a small boat with oars", "of or relating to"], refs) == 0.0
    # the bare generic phrase is more generic than the sea / boat references, not than its own reference
    assert reference_generic_rate(["of or relating to"] * 4, refs) == 0.75
    generality = reference_generality(["of or relating to", "a small boat with oars", "zebra"], refs[:3])
    assert generality[0] == pytest.approx(2 / 3) and generality[1] == pytest.approx(1 / 3) and generality[2] == 0.0
    assert excess_generality(["of or relating to"] * 3, refs[:3]) > 0 > excess_generality(["zebra"] * 3, refs[:3])
    assert reference_generality([""], [["a"]]) == [1.0]
