from oral6_core.testing import check_component


def test_lion_conforms():
    check_component("optimizer", "lion")
