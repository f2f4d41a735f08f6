"""Every SMC component passes the core's conformance checks."""

from __future__ import annotations

import pytest

from oral6_core.testing import check_component

PRUNERS = ["omp", "random", "imp", "gmp", "snip", "rigl", "set", "obert"]
BENCHMARKS = ["smc-easy", "smc-hard", "smc-sparse-export", "smc-mask-speed"]


@pytest.mark.parametrize("name", PRUNERS)
def test_pruner_conforms(name):
    check_component("pruner", name)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_metadata_conforms(name):
    check_component("benchmark", name, exercise=False)
