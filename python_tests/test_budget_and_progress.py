"""One budget rule for the API and the command line, and the progress argument.

The rule (svp_fast._arrays.BUDGET_RULE): an integer is a count; a float is a
fraction of all N rows in [0, 1), rounded to the nearest count (halves up, from
the decimal the float prints as); 1.0 and larger floats are refused, and so is a
positive fraction that rounds to no pick.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import svp_fast
from svp_fast import cli
from svp_fast._arrays import check_budget
from svp_fast._progress import check_progress, make_hook
from svp_fast._util import count_from_size


@pytest.mark.parametrize("value,n,count", [
    (0.1, 300, 30), (0.5, 7, 4), (0.5, 6, 3), (0.7, 5, 4),  # 0.7 * 5 is 3.4999... in binary
    (0.29, 100, 29),  # 0.29 * 100 is 28.999... in binary
    (0.0, 10, 0), (0.999, 10, 10), (np.float32(0.25), 8, 2), (np.float64(0.25), 8, 2),
    (torch.tensor(0.25), 8, 2), (3, 10, 3), (np.int64(3), 10, 3), (torch.tensor(3), 10, 3),
])
def test_the_rule(value, n, count):
    assert check_budget(value, n) == count
    assert count_from_size(value, n, "size") == count


@pytest.mark.parametrize("value,exc,text", [
    (1.0, ValueError, "must be below 1, got 1.0; pass an integer for a count (e.g. 1 for one row, "
                      "10 for all)"),
    (2.0, ValueError, "must be below 1, got 2.0"),
    (-0.5, ValueError, "as a fraction must be in [0, 1), got -0.5"),
    (0.01, ValueError, "0.01 of 10 rows rounds to no pick"),
    (float("inf"), ValueError, "got inf"),
    (None, TypeError, "got NoneType None"),
    (np.bool_(True), TypeError, "got bool"),
])
def test_refused(value, exc, text):
    with pytest.raises(exc) as e:
        check_budget(value, 10)
    assert text in str(e.value)


def test_a_fraction_is_of_all_rows_and_checked_against_what_is_left(rng):
    x = rng.normal(size=(100, 4)).astype(np.float32)
    picks = svp_fast.kcenter(x, 0.1, already_selected=np.arange(60))
    assert picks.size == 10  # 10% of N = 100, not of the 40 left
    np.testing.assert_array_equal(picks, svp_fast.kcenter(x, 10, already_selected=np.arange(60)))
    with pytest.raises(ValueError, match=r"budget 0.5 of 100 rows is 50, more than the number of "
                                         r"points not already selected \(40\)"):
        svp_fast.kcenter(x, 0.5, already_selected=np.arange(60))


@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5, 0.999])
def test_api_and_command_line_agree(tmp_path, rng, capsys, fraction):
    """The issue: svp_fast.kcenter(x, 0.1) was a TypeError while --budget 0.1 meant 10%."""
    x = rng.normal(size=(203, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    for command, api in (("kcenter", svp_fast.kcenter), ("uncertainty", svp_fast.uncertainty)):
        out = tmp_path / f"{command}-{fraction}.npy"
        assert cli.main([command, str(tmp_path / "x.npy"), "--budget", str(fraction), "--out",
                         str(out), "--no-progress"]) == 0
        np.testing.assert_array_equal(np.load(out), api(x, fraction))
        assert np.load(out).size == check_budget(fraction, 203)
    capsys.readouterr()


@pytest.mark.parametrize("command", ["kcenter", "uncertainty"])
def test_one_point_zero_is_refused_by_both(tmp_path, rng, capsys, command):
    x = rng.normal(size=(20, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    api = getattr(svp_fast, command)
    with pytest.raises(ValueError, match="below 1, got 1.0"):
        api(x, 1.0)
    code = cli.main([command, str(tmp_path / "x.npy"), "--budget", "1.0", "--out",
                     str(tmp_path / "o.npy")])
    err = capsys.readouterr().err
    assert code == 2 and "--budget as a float is a fraction" in err and "below 1, got 1.0" in err
    assert cli.main([command, str(tmp_path / "x.npy"), "--budget", "1", "--out",
                     str(tmp_path / "o.npy"), "--no-progress"]) == 0
    assert np.load(tmp_path / "o.npy").size == 1  # the integer 1 is one row


def test_random_and_forgetting_follow_the_rule():
    assert svp_fast.random_selection(40, 0.25, seed=1).size == 10
    tracker = svp_fast.ForgettingTracker(40)
    assert svp_fast.forgetting(tracker, 0.5).size == 20


# ----------------------------------------------------------------------------- progress

@pytest.mark.parametrize("bad", ["yes", 2, 0.5, [True]])
def test_progress_must_be_a_bool_or_a_bar(rng, bad):
    x = rng.normal(size=(50, 3)).astype(np.float32)
    with pytest.raises(TypeError, match=r"progress must be True, False or a tqdm-like object"):
        svp_fast.kcenter(x, 5, progress=bad)
    with pytest.raises(TypeError, match="progress must be"):
        check_progress(bad)


@pytest.mark.parametrize("ok", [True, False, None, 0, 1, np.bool_(True)])
def test_progress_values_that_mean_on_or_off(rng, ok):
    x = rng.normal(size=(50, 3)).astype(np.float32)
    assert svp_fast.kcenter(x, 5, progress=ok).size == 5


def test_a_callers_bar_gets_every_pick(rng):
    class Bar:
        n = 0

        def update(self, k):
            self.n += k

    bar = Bar()
    svp_fast.kcenter(rng.normal(size=(300, 3)).astype(np.float32), 40, progress=bar)
    assert bar.n == 40


def test_no_bar_before_an_input_error(rng, capsys):
    """The issue: NaN errors printed after a progress bar had started."""
    x = rng.normal(size=(400, 3)).astype(np.float32)
    x[350, 1] = np.nan
    with pytest.raises(ValueError, match="row 350, column 1"):
        svp_fast.kcenter(x, 50, progress=True)
    assert capsys.readouterr().err == ""
    svp_fast.kcenter(np.nan_to_num(x), 50, progress=True)
    assert "k-center" in capsys.readouterr().err  # valid input: the bar shows
    hook, close = make_hook(10, True, "t", "pick")
    assert capsys.readouterr().err == ""  # nothing until the core's first poll
    hook(3)
    close()
    assert "t:" in capsys.readouterr().err


def test_the_first_estimate_waits_for_a_tenth_of_the_work(monkeypatch):
    """The issue: the first estimate said 1:52 for a 4 s run (k-center's first
    picks cost the most). No time left is shown before a tenth of the picks."""
    import tqdm.std

    clock = {"t": 1000.0}
    monkeypatch.setattr(tqdm.std, "time", lambda: clock["t"])  # what each bar reads
    hook, close = make_hook(1000, True, "k-center", "pick")
    try:
        clock["t"] += 0.1
        hook(5)  # 5 slow picks in 0.1 s: a rate that would promise 20 s
        bar = hook.state["bar"]
        assert "<?" in str(bar) and "5/1000" in str(bar)
        clock["t"] += 0.1
        hook(99)
        assert "<?" in str(bar)
        clock["t"] += 0.1
        hook(400)
        text = str(bar)
        assert "<?" not in text and re.search(r"<\d\d:\d\d", text), text
    finally:
        close()
    # a caller's own bar is left as it is
    class Mine:
        bar_format = "mine"
        n = 0

        def update(self, k):
            self.n += k

    mine = Mine()
    hook, close = make_hook(1000, mine, "k-center", "pick")
    hook(5)
    hook(400)
    close()
    assert mine.n == 400 and mine.bar_format == "mine"
