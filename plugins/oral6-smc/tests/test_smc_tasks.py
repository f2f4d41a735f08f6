"""The transformer tasks: traces and their hidden results, pre-training once (cached), the fine-tuning start, ΔW."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from oral6_core.errors import ConfigError
from oral6_smc.harness import relative_change
from oral6_smc.tasks import (CLS, EQUALS, MASK, MINUS, PLUS, ChainSettings, arithmetic_traces, chain_split, chain_task,
                             hide_results, pretrained_transformer, pretraining_corpus, result_slots)

TINY = ChainSettings(corpus_steps=3, dim=16, depth=2, pretrain_steps=4)


def test_traces_write_every_result_left_to_right_mod_10():
    traces = arithmetic_traces(2)
    assert traces.shape == (1000 * 4, 10) and len({tuple(t) for t in traces.tolist()}) == 4000
    for row in traces[torch.randperm(4000)[:50]].tolist():
        assert row[0] == CLS and row[4] == row[8] == EQUALS
        first = (row[1] + row[3]) % 10 if row[2] == PLUS else (row[1] - row[3]) % 10
        assert row[2] in (PLUS, MINUS) and row[5] == first
        assert row[9] == ((first + row[7]) % 10 if row[6] == PLUS else (first - row[7]) % 10)
    hidden = hide_results(traces[:3], 2)
    assert result_slots(2) == [5, 9] and (hidden[:, [5, 9]] == MASK).all() and torch.equal(hidden[:, :5], traces[:3, :5])


def test_the_pretraining_corpus_extends_training_chains_only():
    corpus = pretraining_corpus(TINY)
    chains, (train, val, test) = chain_split(TINY)
    prefixes = {tuple(row) for row in corpus[:, :10].tolist()}
    assert corpus.shape == (20 * len(train), 14) and prefixes == {tuple(row) for row in chains[train].tolist()}
    assert not prefixes & {tuple(row) for row in chains[torch.cat([val, test])].tolist()}
    with pytest.raises(ConfigError, match="at least as long"):
        pretraining_corpus(ChainSettings(steps=2, corpus_steps=1))


def test_pretraining_runs_once_and_is_reused_from_the_cache(tmp_path):
    cache = tmp_path / "pretrained.pt"
    first = pretrained_transformer(TINY, cache)
    assert cache.is_file() and len(first.curve) == 4
    again = pretrained_transformer(TINY, cache)
    assert again.seconds == first.seconds and all(torch.equal(again.model[k], v) for k, v in first.model.items())
    other = pretrained_transformer(ChainSettings(corpus_steps=3, dim=16, depth=2, pretrain_steps=5), cache)
    assert len(other.curve) == 5  # other settings: pre-trained anew, not read from the cache


def test_fine_tuning_starts_from_the_pretrained_weights_and_the_lm_head_digits():
    pretraining = pretrained_transformer(TINY)
    hard, easy = chain_task("hard", 2, TINY, pretraining), chain_task("one-step", 1, TINY, pretraining)
    model = hard.build(0)
    assert model.readout == 9 and easy.build(0).readout == 5
    assert torch.equal(model.blocks[0].fc1.weight, pretraining.model["blocks.0.fc1.weight"])
    assert torch.equal(model.head.weight, pretraining.lm_head["weight"][:10])
    assert (hard.bundle.train.x[:, [5, 9]] == MASK).all()
    assert not torch.equal(hard.bundle.train.y, easy.bundle.train.y) and torch.equal(hard.bundle.test.x, easy.bundle.test.x)
    with pytest.raises(ConfigError, match="results"):
        chain_task("bad", 3, TINY, pretraining)


def test_relative_change_is_the_norm_ratio_per_weight():
    start = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    trained = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    trained.load_state_dict(start.state_dict())
    with torch.no_grad():
        trained[1].weight.mul_(1.5)
    assert relative_change(start, trained) == pytest.approx({"0.weight": 0.0, "1.weight": 0.5})
