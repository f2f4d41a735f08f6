"""Meta-training lowers validation error; predictors without a checkpoint explain how to make one."""

from __future__ import annotations

import pytest
import torch

from oral6_core import registry
from oral6_core.errors import CheckpointError, ConfigError
from oral6_core.io import save_torch
from oral6_dass.meta import MetaLearner, MetaSettings, meta_train, rank_correlations, validate
from oral6_dass.predictor_net import DaSSNet, EncodedTask
from oral6_dass.space import SearchSpace

SPACE = SearchSpace(1, (8, 8), (2, 2))


def _synthetic_task(name: str, seed: int, n: int = 24) -> EncodedTask:
    """Accuracy falls with the student's missing width, from the teacher's own accuracy."""
    g = torch.Generator().manual_seed(seed)
    archs = SPACE.sample_many(n, seed)
    teacher_acc = 0.5 + 0.4 * torch.rand((), generator=g).item()
    size = torch.tensor([sum(sum(m) for m in a.multipliers) / 4 for a in archs])
    acc = teacher_acc - 0.3 * (1 - size) + 0.01 * torch.randn(n, generator=g)
    maps = torch.randn(n, 8, 2, 2, generator=g) * size.view(-1, 1, 1, 1)
    return EncodedTask(name, torch.randn(8, 2, 2, generator=g), SPACE.encode(SPACE.teacher), teacher_acc, maps,
                       torch.stack([SPACE.encode(a) for a in archs]), acc)


def test_meta_training_lowers_validation_error():
    torch.manual_seed(0)
    learner = MetaLearner(DaSSNet(8, SPACE.encoding_size, 8, 8, 8, 16), step_size=1e-2)
    train = [_synthetic_task(f"t{i}", i) for i in range(6)]
    val = [_synthetic_task(f"v{i}", 100 + i) for i in range(2)]
    before = validate(learner, val)[2]
    history = meta_train(learner, train, val, MetaSettings(episodes=30, meta_lr=5e-3, meta_batch=2, query_size=12, validate_every=5))
    after = validate(learner, val)[2]
    assert after < 0.5 * before
    assert history.best_episode > 0 and validate(learner, val)[0] == pytest.approx(history.best_spearman)
    assert any(not torch.allclose(p, torch.full_like(p, 1e-2)) for p in learner.inner_lrs.values())


def test_teacher_guided_adaptation_moves_the_prediction_toward_the_teacher_accuracy():
    torch.manual_seed(0)
    learner = MetaLearner(DaSSNet(8, SPACE.encoding_size, 8, 8, 8, 16), step_size=0.5)
    task = _synthetic_task("t", 0)
    for acc in (0.1, 0.9):
        task.teacher_accuracy = acc
        before = learner.predict(task).mean().item()
        after = learner.adapted_predict(task).mean().item()
        assert abs(after - acc) < abs(before - acc)


def test_meta_predictors_need_a_checkpoint(tmp_path):
    for name in ("dass", "dass-no-func"):
        predictor = registry.create("predictor", name)
        with pytest.raises(ConfigError, match="oral6 dass meta-train"):
            predictor.save(tmp_path / "p.pt")
    save_torch({"predictor": "dass-no-func"}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a dass predictor checkpoint"):
        registry.create("predictor", "dass").load(tmp_path / "other.pt")


def test_rank_correlations_match_scipy_with_ties():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randint(0, 6, (30,), generator=g).double()
        y = x + torch.randint(0, 4, (30,), generator=g).double()
        rho, r = rank_correlations(x, y)
        assert rho == pytest.approx(stats.spearmanr(x.numpy(), y.numpy())[0], abs=1e-9)
        assert r == pytest.approx(stats.pearsonr(x.numpy(), y.numpy())[0], abs=1e-9)
    assert rank_correlations(torch.ones(5), torch.arange(5.0)) == (0.0, 0.0)


def test_no_improvement_over_the_untrained_network_is_a_warning():
    torch.manual_seed(0)
    learner = MetaLearner(DaSSNet(8, SPACE.encoding_size, 8, 8, 8, 16), step_size=1e-2)
    tasks = [_synthetic_task(f"t{i}", i) for i in range(3)]
    frozen = meta_train(learner, tasks, tasks[:1], MetaSettings(episodes=4, meta_lr=1e-12, meta_batch=2, validate_every=2))
    assert not frozen.improved and frozen.verdict().startswith("Warning: no meta-training checkpoint beat the untrained network")
    trained = meta_train(learner, tasks, tasks[:1], MetaSettings(episodes=30, meta_lr=5e-3, meta_batch=2, validate_every=5))
    assert trained.improved and "untrained" in trained.verdict() and not trained.verdict().startswith("Warning")


def test_ablations_drop_their_encoders():
    net = DaSSNet(8, SPACE.encoding_size, 8, 8, 8, 16, parts=("student", "arch"))
    assert not hasattr(net, "teacher_encoder") and hasattr(net, "student_encoder")
    task = _synthetic_task("t", 0)
    out = net(task.student_maps, task.student_archs, task.teacher_map)
    assert out.shape == (task.student_archs.shape[0],)
    still = MetaLearner(net, step_size=0.5, adapt=False)
    assert torch.equal(still.adapted_predict(task), still.predict(task))
