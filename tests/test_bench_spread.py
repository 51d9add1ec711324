"""The repeat-and-spread helpers every benchmark reports its figures through (bench/common.py)."""

from __future__ import annotations

import json

import bench.common as common
import pytest


def test_rounds_interleave_the_methods_and_keep_every_value():
    calls = []

    def method(name):
        def run():
            calls.append(name)
            return f"{name}{calls.count(name)}"

        return run

    values = common.rounds({"a": method("a"), "b": method("b")}, 3)
    assert calls == ["a", "b", "a", "b", "a", "b"]
    assert values == {"a": ["a1", "a2", "a3"], "b": ["b1", "b2", "b3"]}


@pytest.mark.parametrize(
    ("first_round_seconds", "expected_rounds"),
    [(1.0, 5), (20.0, 3), (500.0, 2)],  # budget 60 s, 5 at most, 2 at least
)
def test_budgeted_rounds_fit_the_budget(monkeypatch, first_round_seconds, expected_rounds):
    monkeypatch.setattr(common, "timed", lambda run: (first_round_seconds, run()))
    values = common.budgeted_rounds(
        {"ours": lambda: {"seconds": 1.0}}, budget_s=60, min_repeats=2, repeats=5
    )
    assert len(values["ours"]) == expected_rounds


def test_budgeted_rounds_do_not_repeat_a_failure(monkeypatch):
    monkeypatch.setattr(common, "timed", lambda run: (0.1, run()))
    values = common.budgeted_rounds(
        {"ours": lambda: {"seconds": 1.0}, "theirs": lambda: {"failed": "out of memory"}},
        budget_s=60,
        min_repeats=3,
    )
    assert values == {"ours": [{"seconds": 1.0}], "theirs": [{"failed": "out of memory"}]}


def test_merge_rounds_spreads_the_measures_and_keeps_the_rest():
    runs = [
        {"seconds": 3.0, "nmi": 0.5},
        {"seconds": 1.0, "nmi": 0.5},
        {"seconds": 2.0, "nmi": 0.5},
    ]
    merged = common.merge_rounds(runs, ["seconds"])
    assert merged["seconds"] == {"min": 1.0, "median": 2.0, "max": 3.0, "values": [3.0, 1.0, 2.0]}
    assert (merged["nmi"], merged["runs"]) == (0.5, 3)
    assert common.merge_rounds([{"skipped": "too slow"}], ["seconds"]) == {"skipped": "too slow"}


def test_spreads_rates_and_the_table_text():
    figures = common.spreads({"ours": [1.0, 2.0, 4.0], "theirs": [3.0, 2.0, 8.0]}, "ours")
    assert figures["theirs"]["ratio_to_ours"]["values"] == [3.0, 1.0, 2.0]
    assert figures["ours"]["ratio_to_ours"]["median"] == 1.0
    rates = common.rate_spread([1.0, 2.0, 4.0], 8)
    assert (rates["min"], rates["median"], rates["max"]) == (2.0, 4.0, 8.0)
    assert common.format_spread(rates, " img/s", 1) == "4.0 img/s (2.0-8.0 img/s)"
    assert common.format_rounds(rates, "x", 1) == "4.0x (2.0-8.0x)"
    assert common.format_rounds(common.spread([3.0]), "x", 1) == "3.0x"  # one round: no range


def test_directories_and_settings(tmp_path, monkeypatch):
    directories = common.Directories(tmp_path)
    first = directories.fresh()
    assert directories.latest == first != directories.fresh()
    monkeypatch.setenv("BENCH_TEST_SIZE", "7")
    assert common.setting("BENCH_TEST_SIZE", 3) == 7
    assert common.setting("BENCH_TEST_UNSET", 3) == 3


def test_write_results_records_the_machine_and_its_load_after(tmp_path):
    info = {"cpu_model": "test CPU", "cores": 2, "load_average_before": [0.5, 0.5, 0.5]}
    record = common.write_results(tmp_path / "result.json", {"figure": 1.5}, info)
    stored = json.loads((tmp_path / "result.json").read_text())
    assert stored == record
    assert stored["figure"] == 1.5
    assert stored["machine"]["cpu_model"] == "test CPU"
    assert len(stored["machine"]["load_average_after"]) == 3
