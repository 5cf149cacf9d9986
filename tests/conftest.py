pytest_plugins = ["tests.conftest_matrix"]
