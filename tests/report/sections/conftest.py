"""The committed default report's results, for the section tests."""

import pytest

from tests.helpers.report_results import load_default_results


@pytest.fixture
def default_results():
    """``experiments/results/default.json`` as json reads it (a fresh copy for every test)."""
    return load_default_results()
