"""The ``>>>`` examples in the client's docstrings run as doctests (the client is TF-free, so
they are fast); training's and serving's examples are plain text, as they need a trained run
or a server."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import client

REPO = Path(__file__).resolve().parents[1]
CLIENT_MODULES_WITH_EXAMPLES = sorted(
    info.name
    for info in pkgutil.walk_packages(client.__path__, "client.")
    if not info.name.startswith("client.proto")
    and ">>> " in (REPO / (info.name.replace(".", "/") + ".py")).read_text()
)


@pytest.mark.parametrize("name", CLIENT_MODULES_WITH_EXAMPLES)
def test_client_docstring_examples_run(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"no example found in {name}"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_examples_elsewhere_are_plain_text():
    """A ``>>>`` outside client/ would look like a doctest that nothing runs."""
    prompts = [
        f"{path.relative_to(REPO)}:{number}"
        for package in ("training", "serving", "benchmarks")
        for path in (REPO / package).rglob("*.py")
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if line.lstrip().startswith(">>> ")
    ]
    assert not prompts, "run these as doctests or write them as plain examples: " + ", ".join(
        prompts
    )
