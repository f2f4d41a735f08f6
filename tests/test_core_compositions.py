"""The composition matrix over every installed component, its skips and findings, and the README section it writes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from oral6_core.components import Needs, Pruner, Regularizer
from oral6_core.compositions import markdown, readme_section
from oral6_core.errors import ConfigError, DataError, UnknownComponentError
from oral6_core.hookspecs import hookimpl
from oral6_core.testing import check_compositions

README = Path(__file__).parents[1] / "README.md"
# mask updates at every step, so that the few steps of the matrix drop, regrow and prune again after the resume
SCHEDULES = {"pruner": {name: {"update_every": 1} for name in ("gmp", "rigl", "set")}}
COMMAND = ("oral6 compose --set pruner.gmp.update_every=1 --set pruner.rigl.update_every=1 --set pruner.set.update_every=1 "
           "--update-readme README.md")


@pytest.fixture(scope="module")
def matrix():
    return check_compositions(options=SCHEDULES, strict=False)


def test_every_installed_combination_composes(matrix):
    failed = matrix.with_status("failed")
    assert not failed, "\n".join(f"{r.label}: {r.reason}" for r in failed)
    assert len(matrix.rows) == math.prod(len(names) for names in matrix.kinds.values())
    assert {"fishleg", "sgd"} <= set(matrix.kinds["optimizer"]) and {"cacm", "irm"} <= set(matrix.kinds["regularizer"])
    assert all(r.bit_exact for r in matrix.rows if r.status == "passed")
    assert all(r.sparsity and r.sparsity > 0.4 for r in matrix.rows if r.pruner != "none"), "a pruner pruned too little to test its masks"
    assert {r.dataset for r in matrix.rows if r.regularizer == "none"} == {"tiny-plain"}
    assert {r.dataset for r in matrix.rows if r.regularizer == "cacm"} == {"tiny"}


def test_readme_compose_section_is_the_matrix(matrix):
    assert readme_section(README) == markdown(matrix), f"The README's Compose tables are stale: run `{COMMAND}`."


class GaussianOnly(Regularizer):
    """Works only for gaussian likelihoods."""

    name = "test-gaussian-only"
    needs = Needs(likelihoods=("gaussian",))

    def penalty(self, features, logits, batch):
        return logits.new_zeros(())


class Undeclared(Regularizer):
    """Needs environments but does not declare it."""

    name = "test-undeclared"

    def on_train_start(self, ctx, bundle):
        if getattr(bundle.train, "env", None) is None:
            raise DataError("this regularizer needs environments")

    def penalty(self, features, logits, batch):
        return logits.new_zeros(())


class Reshuffling(Pruner):
    """Zeroes a random half of the first weight matrix each step, drawn from a generator it does not checkpoint."""

    name = "test-reshuffling"

    def on_train_start(self, ctx):
        self.key, self.weight = next((n, p) for n, p in ctx.model.named_parameters() if p.dim() == 2)
        self.generator = torch.Generator().manual_seed(0)
        self.mask = torch.ones_like(self.weight, dtype=torch.bool)

    def on_step_end(self, step, total_steps):
        self.mask = torch.rand(self.weight.shape, generator=self.generator) > 0.5
        with torch.no_grad():
            self.weight.mul_(self.mask)

    def masks(self):
        return {self.key: self.mask}

    def sparsity(self):
        return {"overall": 1 - self.mask.float().mean().item()}

    def load_state_dict(self, state):
        self.mask = state["masks"][self.key]


class DeclaredReshuffling(Reshuffling):
    """The same, declared not deterministic."""

    name = "test-reshuffling-declared"
    deterministic = False


class Findings:
    @hookimpl
    def oral6_regularizers(self):
        return [GaussianOnly, Undeclared]

    @hookimpl
    def oral6_pruners(self):
        return [Reshuffling, DeclaredReshuffling]


def test_unmet_needs_are_skipped_with_the_reason_and_broken_pairs_fail(register_plugin):
    register_plugin(Findings(), "test-findings")
    names = dict(optimizers=["sgd"], regularizers=["none", "test-gaussian-only", "test-undeclared"],
                 pruners=["test-reshuffling", "test-reshuffling-declared"])
    report = check_compositions(**names, strict=False)
    status = {(r.regularizer, r.pruner): r for r in report.rows}
    assert [r.status for r in report.rows if r.regularizer == "test-gaussian-only"] == ["skipped"] * 3
    assert "test-gaussian-only needs a gaussian likelihood (it has categorical)" in status[("test-gaussian-only", "none")].reason
    undeclared = status[("test-undeclared", "none")]
    assert undeclared.status == "failed" and "needs environments" in undeclared.reason and "`needs`" in undeclared.reason
    assert status[("none", "none")].status == "passed" and status[("none", "none")].bit_exact
    assert status[("none", "test-reshuffling")].status == "failed"
    assert "other weights than the uninterrupted run" in status[("none", "test-reshuffling")].reason
    declared = status[("none", "test-reshuffling-declared")]
    assert declared.status == "passed" and not declared.bit_exact
    text = markdown(report)
    assert "sgd: skipped" in text and "sgd: ✗ failed" in text and "passed (not bit-exact)" in text
    with pytest.raises(AssertionError, match="4 of 9 compositions failed"):
        check_compositions(**names)
    with pytest.raises(UnknownComponentError, match="Unknown pruner 'nope'"):
        check_compositions(optimizers=["sgd"], pruners=["nope"])
    with pytest.raises(ConfigError, match="pruner.bogus"):
        check_compositions(optimizers=["sgd"], pruners=["test-reshuffling"], options={"pruner": {"test-reshuffling": {"bogus": 1}}})


def test_cli_compose_prints_the_tables_and_rewrites_a_readme(cli, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- compose:begin -->\nold\n<!-- compose:end -->\nafter\n")
    code, out = cli("compose", "-o", "sgd", "-r", "none", "-p", "omp", "--update-readme", readme)
    assert code == 0, out
    assert "2 combinations: 2 passed, 0 skipped, 0 failed" in out and "Rewrote the Compose section" in out
    text = readme.read_text()
    assert "old" not in text and text.endswith("<!-- compose:end -->\nafter\n") and "| none (tiny-plain) | ✓ | ✓ |" in text
    code, out = cli("compose", "-o", "sgd", "-s", "pruner.omp=0.3")
    assert code == 2 and "pruner.NAME.OPTION=VALUE" in out
    code, out = cli("compose", "-o", "sgd", "-p", "omp", "--update-readme", tmp_path / "none.md")
    assert code == 2
