"""Listening-test tooling (listening/): the MUSHRA results analysis.

Means and t confidence intervals on a constructed results file (webMUSHRA's CSV and the
page's, blinded ids mapped by a manifest), and ITU-R BS.1534-3 post-screening: one
assessor out, a borderline one kept.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # listening/ is a top-level folder of the repository
    sys.path.insert(0, str(REPO))

from listening import analyze as an  # noqa: E402


# ----------------------------------------------------------------------------- analysis


N_ITEMS = 20  # 15 % of the items = 3 items


def _constructed_results(folder: Path) -> tuple[Path, Path, Path]:
    """A webMUSHRA mushra.csv (three assessors) and a page CSV (one assessor), with ids
    mapped to conditions by a manifest. Assessors:

    good:       hidden reference 100 everywhere
    borderline: hidden reference below 90 in 3 of 20 items (15 %: kept), exactly 90 in two
    bad:        hidden reference below 90 in 4 of 20 items (20 %: excluded), wild ratings
    page:       hidden reference 95 everywhere (the page's own CSV format)
    """
    manifest = folder / "manifest.csv"
    ids = {}
    with open(manifest, "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["file", "id", "trial_id", "condition", "kind", "kbps"])
        for i in range(N_ITEMS):
            for k, c in enumerate(("reference", "medium", "tiny", "anchor35")):
                sid = f"s{i:04x}{k:04x}"  # the export's form: s + 8 hex digits
                ids[(i, c)] = sid
                kind = {"reference": "reference", "anchor35": "anchor"}.get(c, "tier")
                kbps = {"medium": 200.0 + i, "tiny": 50.0}.get(c, "")
                w.writerow([f"audio/{sid}.wav", sid, f"item{i:02d}", c, kind, kbps])

    def scores(who, i):
        if who == "good":
            return {"reference": 100, "medium": 60 + i % 5, "tiny": 20, "anchor35": 10}
        if who == "borderline":
            ref = 80 if i < 3 else (90 if i < 5 else 100)
            return {"reference": ref, "medium": 70 + i % 5, "tiny": 40, "anchor35": 12}
        if who == "bad":
            return {"reference": 50 if i < 4 else 100, "medium": 0, "tiny": 100, "anchor35": 100}
        return {"reference": 95, "medium": 80 + i % 5, "tiny": 30, "anchor35": 14}

    webmushra = folder / "mushra.csv"
    with open(webmushra, "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["session_test_id", "email", "age", "session_uuid", "trial_id",
                    "rating_stimulus", "rating_score", "rating_time", "rating_comment"])
        for who in ("good", "borderline", "bad"):
            for i in range(N_ITEMS):
                for c, s in scores(who, i).items():
                    stim = "reference" if c == "reference" else ids[(i, c)]
                    w.writerow(["hybridcodec_mushra", f"{who}@example.org", "30", f"uuid-{who}",
                                f"item{i:02d}", stim, s, 1234, ""])
    page = folder / "page.csv"
    with open(page, "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["session_test_id", "name", "session_uuid", "trial_id", "rating_stimulus",
                    "rating_score", "rating_time", "rating_comment"])
        for i in range(N_ITEMS):
            for c, s in scores("page", i).items():
                stim = "reference" if c == "reference" else ids[(i, c)]
                w.writerow(["hybridcodec_mushra", "Page, Assessor", "uuid-page", f"item{i:02d}",
                            stim, s, 99, 'said "fine"'])
    return webmushra, page, manifest


def _expected(values):
    from scipy import stats

    x = np.asarray(values, float)
    return x.mean(), stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))


def test_analysis_means_cis_and_screening(tmp_path):
    webmushra, page, manifest = _constructed_results(tmp_path)
    result = an.analyze([webmushra, page], manifest)
    screening = {s.assessor: s for s in result.screening}
    assert screening["uuid-bad"].excluded and screening["uuid-bad"].below == 4
    assert not screening["uuid-borderline"].excluded
    assert screening["uuid-borderline"].below == 3 and screening["uuid-borderline"].items == 20
    assert not screening["uuid-good"].excluded and not screening["uuid-page"].excluded
    assert result.excluded == ["uuid-bad"]

    stats = {s.condition: s for s in result.overall}
    assert [s.condition for s in result.overall] == ["reference", "medium", "tiny", "anchor35"]
    # tiny: 20 x (20, 40, 30) -> mean 30, sd sqrt(4000/59), t(0.975, 59) = 2.000995
    assert stats["tiny"].n == 60
    assert stats["tiny"].mean == pytest.approx(30.0)
    assert stats["tiny"].ci == pytest.approx(2.000995 * math.sqrt(4000 / 59) / math.sqrt(60),
                                             rel=1e-5)
    # medium: good 60..64, borderline 70..74, page 80..84 (each pattern 4 times) -> mean 72
    assert stats["medium"].mean == pytest.approx(72.0)
    medium = [b + i % 5 for b in (60, 70, 80) for i in range(N_ITEMS)]
    mean, ci = _expected(medium)
    assert (stats["medium"].mean, stats["medium"].ci) == pytest.approx((mean, ci))
    ref = [100] * 20 + [80] * 3 + [90] * 2 + [100] * 15 + [95] * 20
    assert (stats["reference"].mean, stats["reference"].ci) == pytest.approx(_expected(ref))
    assert stats["anchor35"].mean == pytest.approx(12.0)
    assert result.kbps["medium"] == pytest.approx(209.5)
    # per item: medium on item03 is (63, 73, 83)
    item3 = next(s for s in result.per_item if s.item == "item03" and s.condition == "medium")
    assert (item3.n, item3.mean) == (3, pytest.approx(73.0))
    assert item3.ci == pytest.approx(4.302653 * 10 / math.sqrt(3), rel=1e-5)

    everyone = an.analyze([webmushra, page], manifest, screening=False)
    assert {s.condition: s.n for s in everyone.overall}["tiny"] == 80
    assert {s.condition: s.mean for s in everyone.overall}["tiny"] == pytest.approx(47.5)


def test_analysis_command_line(tmp_path):
    webmushra, page, manifest = _constructed_results(tmp_path)
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "-m", "listening.analyze", str(webmushra), str(page),
                           "--manifest", str(manifest), "--out", str(out), "--per-item"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = (out / "mushra_summary.md").read_text()
    assert table in proc.stdout
    assert "| tiny | 60 | 30.0 | [27.9, 32.1] | 2.1 | 50.0 |" in table
    assert "| uuid-bad | 20 | 4 (20 %) | yes |" in table
    assert "| uuid-borderline | 20 | 3 (15 %) | no |" in table
    png = (out / "mushra.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with open(out / "mushra_summary.csv", newline="") as fp:
        rows = list(csv.DictReader(fp))
    assert {r["condition"] for r in rows if r["item"] == "all"} == \
        {"reference", "medium", "tiny", "anchor35"}


def test_analysis_old_webmushra_format_and_errors(tmp_path):
    # webMUSHRA before session_uuid: the questionnaire columns identify the assessor
    old = tmp_path / "old.csv"
    with open(old, "w", newline="") as fp:
        w = csv.writer(fp)
        w.writerow(["session_test_id", "email", "trial_id", "rating_stimulus", "rating_score",
                    "rating_time", "rating_comment"])
        for who, score in (("a@x", 50), ("b@x", 70)):
            for trial in ("t1", "t2"):
                w.writerow(["test", who, trial, "reference", 100, 1, ""])
                w.writerow(["test", who, trial, "C1", score, 1, ""])
                w.writerow(["test", who, trial, "anchor35", 5, 1, ""])
    result = an.analyze([old])
    assert {s.assessor for s in result.screening} == {"a@x", "b@x"}
    stats = {s.condition: s for s in result.overall}
    assert stats["C1"].mean == pytest.approx(60.0) and stats["C1"].n == 4
    assert [s.condition for s in result.overall] == ["reference", "C1", "anchor35"]

    bad = tmp_path / "bad.csv"
    bad.write_text("trial_id,rating_stimulus,rating_score\nt1,C1,abc\n")
    with pytest.raises(an.AnalysisError, match="not a number"):
        an.analyze([bad])
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(an.AnalysisError, match="not a MUSHRA results file"):
        an.analyze([bad])
    assert an.main([str(bad), "--out", str(tmp_path)]) == 2
