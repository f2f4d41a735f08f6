"""The cudos-stream benchmark runs end to end in quick mode; its forgetting and dim-reuse measures on known records."""

from __future__ import annotations

import numpy as np

from oral6_core.bench import run_benchmark
from oral6_cudos.benchmark import forgetting, new_dims_per_environment, shared_factor_reuse


def test_cudos_stream_benchmark_quick(tmp_path):
    result = run_benchmark("cudos-stream", tmp_path, quick=True)
    assert all(path.is_file() for path in result.files)
    assert (tmp_path / "cudos-stream.png").is_file() and (tmp_path / "results.json").is_file()
    assert (tmp_path / "cudos" / "env2-som.png") in result.files and (tmp_path / "beta-vae" / "env2-traversals.png") in result.files
    assert (tmp_path / "cudos-encoder-shared" / "env2-som.png") in result.files
    assert [row["model"] for row in result.rows] == ["cudos", "cudos (encoder-shared)", "beta-vae", "beta-vae-replay"]
    assert all(not key.startswith("_") for row in result.rows for key in row)
    assert len(result.claims) == 12 and any(claim.startswith("CUDOS (encoder-shared) ") for claim in result.claims)
    assert "final MIG" in result.markdown and "factor → dim" in result.markdown
    assert "position: MIG (own → end)" in result.markdown and "largest spike after each env" in result.markdown
    assert result.rows[0]["new dims per env"].count("/") == 1  # quick mode: the first two environments


def record(scores):
    return {"scores": {key: {"mig": mig, "used": np.array(used), "factor_dims": dims} for key, (mig, used, dims) in scores.items()}}


def test_forgetting_new_dims_and_reuse_from_a_known_record():
    # Environment 1 varies a (dim 0) and then loses MIG; environment 2 varies a and b; at the end a sits
    # on dim 2 in environment 1's data but on dim 0 in environment 2's.
    r = record({(0, 0): (0.6, [1, 0, 0], {"a": 0}),
                (1, 0): (0.2, [1, 0, 1], {"a": 2}),
                (1, 1): (0.5, [1, 1, 1], {"a": 0, "b": 1})})
    assert forgetting(r, "mig") == np.float64(0.6) - np.float64(0.2)
    assert new_dims_per_environment(r) == [1, 2]
    assert not shared_factor_reuse(r)
    r["scores"][(1, 1)]["factor_dims"] = {"a": 2, "b": 1}
    assert shared_factor_reuse(r)
    r["scores"][(1, 1)]["factor_dims"] = {"b": 1}
    assert not shared_factor_reuse(r)  # no factor is shared


def test_a_run_in_a_worker_process_scores_as_in_this_process(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from oral6_cudos.benchmark import CUDOSStreamBenchmark, CUDOSStreamConfig, _run_job

    config = CUDOSStreamConfig(seeds=[0], samples_per_environment=96, steps_first=2, steps_next=2, latent_dim=4,
                               eval_samples=96, dci_samples=96, dci_trees=5, workers=2)
    here = CUDOSStreamBenchmark(config).run_job("beta-vae", 0, True, tmp_path / "here")["beta-vae"]
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        there = pool.submit(_run_job, config, "beta-vae", 0, True, tmp_path / "there").result()["beta-vae"]
    assert here["scores"].keys() == there["scores"].keys() and here["steps"] == there["steps"] > 0
    for key, row in here["scores"].items():
        assert [row[m] for m in ("mig", "dci_disentanglement", "recon")] == [there["scores"][key][m] for m in ("mig", "dci_disentanglement", "recon")]
    assert (tmp_path / "there" / "beta-vae" / "env2-traversals.png").is_file()


def test_rows_that_share_environment_1_score_as_if_each_had_run_alone(tmp_path):
    from oral6_cudos.benchmark import CUDOSStreamBenchmark, CUDOSStreamConfig

    config = CUDOSStreamConfig(seeds=[0], samples_per_environment=96, steps_first=3, steps_next=3, latent_dim=4,
                               som_side=3, eval_samples=96, dci_samples=96, dci_trees=5, curve_samples=96)
    both = CUDOSStreamBenchmark(config).run_job("cudos", 0, True, tmp_path / "both")
    assert list(both) == ["cudos", "cudos (encoder-shared)"]
    for kind, label in (("prototype-shared", "cudos"), ("encoder-shared", "cudos (encoder-shared)")):
        alone = CUDOSStreamBenchmark(config.model_copy(update={"combined_codes": [kind]})).run_job("cudos", 0, True, tmp_path / kind)[label]
        shared = both[label]
        assert shared["steps"] == alone["steps"] > 0 and shared["scores"].keys() == alone["scores"].keys()
        for key, row in alone["scores"].items():
            assert [row[m] for m in ("mig", "dci_disentanglement", "recon")] == [shared["scores"][key][m] for m in ("mig", "dci_disentanglement", "recon")]
        assert [p["mig"] for p in shared["curve"]] == [p["mig"] for p in alone["curve"]]
        assert (tmp_path / "both" / label.replace(" (", "-").rstrip(")") / "env1-som.png").is_file()
    # the combined code acts from environment 2 on, so the two rows part there
    assert both["cudos"]["scores"][(1, 1)]["recon"] != both["cudos (encoder-shared)"]["scores"][(1, 1)]["recon"]


def test_halfway_reads_each_environments_own_mig_half_way_through_its_steps_and_at_its_end():
    from oral6_cudos.benchmark import convergence_cell, halfway

    curve = [{"step": 100 * i, "environment": 0, "mig": [0.01 * i]} for i in range(1, 11)]  # env 1: steps 100..1000
    curve += [{"step": 1000 + 50 * i, "environment": 1, "mig": [0.0, 0.1 * i]} for i in range(1, 5)]  # env 2: 1050..1200
    assert halfway(curve) == ([0.05, 0.2], [0.1, 0.4])
    assert convergence_cell([{"curve": curve}] * 2) == "0.050 → 0.100 / 0.200 → 0.400"


def test_a_claim_holds_only_beyond_the_sample_std_over_seeds_and_never_on_one_seed():
    from oral6_cudos.benchmark import CUDOSStreamBenchmark

    def values(mig):
        return {"mig": mig, "dci": [0.0] * len(mig), "forget_mig": [0.0] * len(mig), "forget_dci": [0.0] * len(mig),
                "forget_recon": [0.0] * len(mig), "leak": [0.0] * len(mig), "reuse": [False] * len(mig)}

    def mig_claim(mine, theirs):
        rows = [{"model": "cudos", "_values": values(mine)}]
        rows += [{"model": name, "_values": values(theirs)} for name in ("beta-vae", "beta-vae-replay")]
        return CUDOSStreamBenchmark().claims(rows, {})["CUDOS ends with the best mean MIG (beyond seed std)"]

    # gap 0.3; the baselines' sample std is 0.3 (population std 0.245): not beyond it
    assert not mig_claim([0.6, 0.6, 0.6], [0.0, 0.3, 0.6])
    assert mig_claim([0.61, 0.61, 0.61], [0.0, 0.3, 0.6])
    assert not mig_claim([0.9], [0.1])
