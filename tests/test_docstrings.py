"""Every docstring example of the package runs (the README promises it)."""
import doctest
import importlib
import pkgutil

import pytest

import fastmask

MODULES = sorted(m.name for m in pkgutil.walk_packages(fastmask.__path__, "fastmask.")
                 if not m.name.startswith("fastmask.kernels")  # compiled code: no examples
                 and m.name != "fastmask.__main__")  # runs the CLI on import


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write here
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"
