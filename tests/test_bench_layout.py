"""The benchmarks stand on their own: they import nothing from tests/ (their helpers are in
bench/ and fixtures/), and no two of their scripts import each other."""

from __future__ import annotations

from tests.conftest import ROOT
from tests.test_layout import _imports

BENCH = ROOT / "bench"


def test_bench_imports_nothing_from_the_tests():
    for path in BENCH.glob("*.py"):
        assert not {n for n in _imports(path) if n.split(".")[0] == "tests"}, path


def test_no_two_bench_modules_import_each_other():
    own = {p.stem for p in BENCH.glob("*.py")}
    imports = {p.stem: _imports(p) & own for p in BENCH.glob("*.py")}
    for name, theirs in imports.items():
        for other in theirs:
            assert name not in imports[other], f"bench/{name}.py and bench/{other}.py import each other"
