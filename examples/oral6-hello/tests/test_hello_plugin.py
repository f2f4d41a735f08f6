from oral6_core.testing import check_component, check_compositions


def test_lion_conforms():
    check_component("optimizer", "lion")


def test_lion_composes_with_every_installed_regularizer_and_pruner():
    report = check_compositions(optimizers=["lion"])  # raises, listing every combination that fails
    assert report.rows and all(r.optimizer == "lion" for r in report.rows)
