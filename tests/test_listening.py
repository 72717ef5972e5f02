"""Listening-test tooling (listening/, conf/listening/): MUSHRA export, webMUSHRA config,
the self-contained page in a real headless Chromium, and the results analysis.

* export of two short corpus excerpts (16-bit stereo, 24-bit mono): every stimulus is
  written at the source's rate and depth, loudness-aligned within 0.5 LU of its item's
  target (an item that would clip is lowered and says so), faded, and blinded; the anchors
  are band-limited; the reference codecs match the tiers' actual bit rates and are aligned;
* the webMUSHRA YAML parses and references exactly the exported files;
* the same seed gives byte-identical files, another seed another blinding;
* the HTML page, opened from file:// in Chromium: trials, sliders, audio loading, and the
  CSV it saves for scripted ratings, which the analysis reads back;
* the analysis on a constructed results file: means and t confidence intervals, and
  BS.1534-3 post-screening (one assessor out, a borderline one kept);
* the README's export -> rate -> analyse sequence, its commands taken from the README: a
  synthetic two-item test, ratings in webMUSHRA's and the page's CSV layouts where the
  README says they go, the analysis run twice; and a one-line error for every bad input.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("hydra")
pytest.importorskip("yaml")
pyloudnorm = pytest.importorskip("pyloudnorm")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # listening/ is a top-level folder of the repository
    sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from listening import analyze as an  # noqa: E402
from listening.export import ExportError, export, integrated_loudness, lowpass  # noqa: E402

CONF = REPO / "conf" / "listening"
ITEMS = ("items=[{path: music/cellar-02.flac, start: 1.0, duration: 2.0},"
         "{path: music/cellar-62.flac, start: 1.0, duration: 2.0}]")
TARGET = -16.0  # loud enough that the 24-bit item must be lowered to stay below -1 dBTP
CODECS_INSTALLED = bool(shutil.which("opusenc") and shutil.which("opusdec")
                        and shutil.which("lame"))


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("export", overrides=overrides)


def _export(out: Path, seed: int, corpus: Path):
    cfg = _compose([ITEMS, "tiers=[medium,tiny]", f"target_lufs={TARGET}", f"seed={seed}",
                    f"corpus_dir={corpus}", f"out_dir={out}"])
    return export(cfg)


@pytest.fixture(scope="module")
def corpus(corpus_dir):
    return corpus_dir


@pytest.fixture(scope="module")
def exported(corpus, tmp_path_factory):
    return _export(tmp_path_factory.mktemp("export_a"), 7, corpus)


@pytest.fixture(scope="module")
def manifest(exported):
    with open(exported.manifest, newline="") as fp:
        return list(csv.DictReader(fp))


def _rows(manifest, trial):
    return {r["condition"]: r for r in manifest if r["trial_id"] == trial}


def _band_energy(x: np.ndarray, rate: int, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x, axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spec[(freqs >= lo) & (freqs < hi)].sum())


# ----------------------------------------------------------------------------- export


def test_export_writes_every_condition(exported, manifest):
    expected = {"reference", "medium", "tiny", "anchor35", "anchor70"}
    if CODECS_INSTALLED:
        expected |= {"opus@medium", "opus@tiny", "mp3@medium", "mp3@tiny"}
    else:
        assert exported.skipped, "a missing codec must be reported"
    formats = {"cellar-02": (44100, 2, "PCM_16"), "cellar-62": (44100, 1, "PCM_24")}
    for trial, (rate, channels, subtype) in formats.items():
        rows = _rows(manifest, trial)
        assert set(rows) == expected
        for row in rows.values():
            info = sf.info(str(exported.out_dir / row["file"]))
            assert (info.samplerate, info.channels, info.subtype) == (rate, channels, subtype)
            assert info.format == "WAV"
            assert info.frames == 2 * rate
            assert row["file"] == f"audio/{row['id']}.wav"
    files = sorted(p.name for p in (exported.out_dir / "audio").iterdir())
    assert files == sorted(Path(r["file"]).name for r in manifest)
    # tiers: bit rates from one stream, the lower tier smaller
    for trial in formats:
        rows = _rows(manifest, trial)
        assert 0 < float(rows["tiny"]["kbps"]) < float(rows["medium"]["kbps"])


def test_loudness_aligned_and_no_clipping(exported, manifest):
    lowered = {}
    for row in manifest:
        x, rate = sf.read(str(exported.out_dir / row["file"]), always_2d=True)
        lufs = pyloudnorm.Meter(rate).integrated_loudness(x)
        target = float(row["item_target_lufs"])
        lowered[row["trial_id"]] = float(row["item_lowered_db"])
        assert target == pytest.approx(TARGET - float(row["item_lowered_db"]), abs=0.011)
        assert abs(lufs - target) <= 0.5, (row["condition"], lufs, target)
        assert abs(float(row["lufs"]) - lufs) < 0.05
        assert np.max(np.abs(x)) < 1.0  # nothing at full scale: no clipping
        assert float(row["true_peak_dbfs"]) <= -1.0 + 0.05
    # the 16-bit item fits at the target; the bright 24-bit one had to be lowered
    assert lowered["cellar-02"] == 0.0
    assert lowered["cellar-62"] > 0.5


def test_fades(exported, manifest):
    for row in manifest:
        x, rate = sf.read(str(exported.out_dir / row["file"]), always_2d=True)
        edge = int(0.001 * rate)  # first / last 1 ms of a 20 ms raised-cosine ramp (< 0.7 %)
        assert np.max(np.abs(x[:edge])) < 0.01 * max(np.max(np.abs(x)), 1e-9) + 1e-4
        assert np.max(np.abs(x[-edge:])) < 0.01 * max(np.max(np.abs(x)), 1e-9) + 1e-4


def test_anchors_are_low_passed_references(exported, manifest):
    for trial in ("cellar-02", "cellar-62"):
        rows = _rows(manifest, trial)
        ref, rate = sf.read(str(exported.out_dir / rows["reference"]["file"]), always_2d=True)
        ref = ref / 10 ** (float(rows["reference"]["gain_db"]) / 20)
        for name, fc in (("anchor35", 3500.0), ("anchor70", 7000.0)):
            y, _ = sf.read(str(exported.out_dir / rows[name]["file"]), always_2d=True)
            y = y / 10 ** (float(rows[name]["gain_db"]) / 20)
            stop = _band_energy(y, rate, fc, rate) / _band_energy(ref, rate, fc, rate)
            assert 10 * math.log10(stop) < -50, (trial, name, 10 * math.log10(stop))
            passband = _band_energy(y, rate, 50, 0.9 * fc) / _band_energy(ref, rate, 50, 0.9 * fc)
            assert abs(10 * math.log10(passband)) < 0.1


def test_lowpass_is_steep():
    rate = 44100
    t = np.arange(rate) / rate
    for f, expect_pass in ((3000.0, True), (3500.0, False), (5000.0, False)):
        x = np.sin(2 * np.pi * f * t)[:, None]
        y = lowpass(x, rate, 3500.0)
        core = slice(rate // 4, 3 * rate // 4)
        ratio = np.sqrt(np.mean(y[core] ** 2) / np.mean(x[core] ** 2))
        if expect_pass:
            assert abs(20 * math.log10(ratio)) < 0.01
        else:
            assert 20 * math.log10(ratio + 1e-300) < -95


def test_loudness_of_more_than_five_channels():
    # pyloudnorm stops at 5 channels; past that the same filters and gating run with
    # weight 1, so a silent sixth channel changes nothing
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2 * 44100 + 123, 5)) * 0.05
    x[:30000] *= 0.01  # a quiet start, to exercise the gates
    six = np.concatenate([x, np.zeros((len(x), 1))], axis=1)
    expected = pyloudnorm.Meter(44100).integrated_loudness(x)
    assert integrated_loudness(six, 44100) == pytest.approx(expected, abs=1e-4)
    eight = np.concatenate([x, x[:, :3]], axis=1)
    assert integrated_loudness(eight, 44100) > expected + 1


@pytest.mark.skipif(not CODECS_INSTALLED, reason="opusenc/opusdec or lame not installed")
def test_reference_codecs_matched_and_aligned(exported, manifest):
    for trial in ("cellar-02", "cellar-62"):
        rows = _rows(manifest, trial)
        ref, _ = sf.read(str(exported.out_dir / rows["reference"]["file"]), always_2d=True)
        for codec in ("opus", "mp3"):
            for tier in ("medium", "tiny"):
                row = rows[f"{codec}@{tier}"]
                tier_kbps = float(rows[tier]["kbps"])
                assert float(row["matched_kbps"]) == pytest.approx(tier_kbps, abs=0.002)
                assert float(row["kbps"]) == pytest.approx(tier_kbps, rel=0.05)
                y, _ = sf.read(str(exported.out_dir / row["file"]), always_2d=True)
                a, b = ref.mean(axis=1), y.mean(axis=1)
                lags = range(-8, 9)  # aligned: the best match is at lag 0 (within a sample)
                corr = [np.dot(a[16:-16], np.roll(b, k)[16:-16]) for k in lags]
                assert abs(list(lags)[int(np.argmax(corr))]) <= 1, (trial, codec, tier)


def test_webmushra_config(exported, manifest):
    doc = yaml.safe_load(exported.webmushra.read_text())
    for key in ("testname", "testId", "bufferSize", "stopOnErrors", "showButtonPreviousPage",
                "remoteService", "pages"):
        assert key in doc
    trials = [p for group in doc["pages"] if isinstance(group, list)
              for p in group if isinstance(p, dict)]
    assert doc["pages"][1][0] == "random"
    assert [t["type"] for t in trials] == ["mushra", "mushra"]
    assert doc["pages"][-1]["type"] == "finish"
    referenced = set()
    by_id = {r["id"]: r for r in manifest}
    for trial in trials:
        assert {"id", "name", "content", "showWaveform", "enableLooping", "reference",
                "createAnchor35", "createAnchor70", "stimuli"} <= set(trial)
        assert trial["createAnchor35"] is False and trial["createAnchor70"] is False
        ref = trial["reference"]
        assert not os.path.isabs(ref) and (exported.out_dir / ref).is_file()
        assert by_id[Path(ref).stem]["condition"] == "reference"
        referenced.add(ref)
        for key, path in trial["stimuli"].items():
            assert isinstance(key, str) and Path(path).stem == key
            assert not os.path.isabs(path) and (exported.out_dir / path).is_file()
            assert by_id[key]["trial_id"] == trial["id"] and by_id[key]["kind"] != "reference"
            referenced.add(path)
    assert referenced == {r["file"] for r in manifest}
    # blinded: no condition name in what the assessor's side sees
    text = exported.webmushra.read_text() + exported.html.read_text()
    for word in ("medium", "tiny", "opus", "mp3", "anchor35", "anchor70"):
        assert word not in text


def test_same_seed_same_files_other_seed_other_blinding(exported, manifest, corpus,
                                                        tmp_path):
    again = _export(tmp_path / "b", 7, corpus)
    names = sorted(p.relative_to(exported.out_dir) for p in exported.out_dir.rglob("*")
                   if p.is_file())
    assert names == sorted(p.relative_to(again.out_dir) for p in again.out_dir.rglob("*")
                           if p.is_file())
    for name in names:
        assert (exported.out_dir / name).read_bytes() == \
            (again.out_dir / name).read_bytes(), name
    other = _export(tmp_path / "c", 8, corpus)
    with open(other.manifest, newline="") as fp:
        other_rows = list(csv.DictReader(fp))
    ids = {(r["trial_id"], r["condition"]): r["id"] for r in manifest}
    other_ids = {(r["trial_id"], r["condition"]): r["id"] for r in other_rows}
    assert ids.keys() == other_ids.keys()
    assert not set(ids.values()) & set(other_ids.values())


def test_export_errors(corpus, tmp_path):
    with pytest.raises(ExportError, match="not found"):
        export(_compose(["items=[music/no-such-file.flac]", f"corpus_dir={corpus}",
                         f"out_dir={tmp_path}"]))
    with pytest.raises(ExportError, match="too short"):
        export(_compose(["items=[{path: music/cellar-02.flac, start: 6.9, duration: 2}]",
                         f"corpus_dir={corpus}", f"out_dir={tmp_path}"]))
    with pytest.raises(ExportError, match="unknown tier"):
        export(_compose(["items=[music/cellar-02.flac]", "tiers=[ultra]",
                         f"corpus_dir={corpus}", f"out_dir={tmp_path}"]))


def test_export_command_line(corpus, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, "-m", "listening.export",
         "items=[{path: instruments/oboe.flac, start: 0.5, duration: 1.0}]", "tiers=[tiny]",
         "codecs=[]", "anchors=[3500]", f"corpus_dir={corpus}", f"out_dir={out}",
         f"hydra.run.dir={tmp_path / 'hydra'}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "3 stimuli of 1 items" in proc.stdout
    assert (out / "manifest.csv").is_file() and (out / "mushra.html").is_file()
    assert len(list((out / "audio").glob("s*.wav"))) == 3


# ----------------------------------------------------------------------------- the page


def _chromium():
    """(browser, driver) paths, or None."""
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)),
                   None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


SCRIPTED = {"reference": 100, "medium": 72, "tiny": 41, "opus@medium": 66, "opus@tiny": 35,
            "mp3@medium": 58, "mp3@tiny": 22, "anchor70": 30, "anchor35": 12}


def test_html_page_in_chromium(exported, manifest, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed "
                                    "(pip install selenium)")
    paths = _chromium()
    if paths is None:
        pytest.skip("chromium and chromedriver not installed "
                    "(apt-get install chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--mute-audio",
                 "--autoplay-policy=no-user-gesture-required", "--window-size=1200,900"):
        opts.add_argument(flag)
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(paths[1]), options=opts)
    by_id = {r["id"]: r for r in manifest}
    by_trial = {}
    for r in manifest:
        by_trial.setdefault(r["trial_id"], []).append(r)
    expected_scores = {}  # (trial, stimulus) -> score
    try:
        driver.get(exported.html.as_uri() + "?seed=5")
        assert driver.title == "hybridcodec listening test"
        assert driver.execute_script("return window.mushra.test.trials.length") == 2
        assert "2 trials, 18 ratings" in driver.find_element(By.ID, "test-size").text
        driver.find_element(By.ID, "assessor").send_keys("assessor one")
        driver.find_element(By.ID, "start").click()
        seen = []
        for step in range(2):
            trial = driver.find_element(By.ID, "trial").get_attribute("data-trial-id")
            seen.append(trial)
            sliders = driver.find_elements(By.CSS_SELECTOR, "input.rating")
            keys = [s.get_attribute("data-stimulus") for s in sliders]
            assert len(sliders) == len(by_trial[trial])  # hidden reference + conditions
            assert sorted(keys) == sorted("reference" if r["kind"] == "reference" else r["id"]
                                          for r in by_trial[trial])
            # every file loads from disk: metadata read, right duration, no error
            deadline = time.time() + 20
            while True:
                states = driver.execute_script(
                    "return Object.values(window.mushra.audio()).map("
                    "a => [a.readyState, a.duration, a.error ? a.error.code : 0])")
                if all(s[0] >= 1 for s in states) or time.time() > deadline:
                    break
                time.sleep(0.1)
            assert len(states) == len(sliders) + 1
            for ready, duration, error in states:
                assert error == 0 and ready >= 1 and duration == pytest.approx(2.0, abs=0.01)
            driver.find_element(By.ID, "ref-button").click()
            driver.find_elements(By.CSS_SELECTOR, "#conditions button.play")[1].click()
            assert driver.find_element(By.ID, "now-playing").text == "playing: B"
            driver.find_element(By.ID, "stop").click()
            for slider, key in zip(sliders, keys):
                condition = "reference" if key == "reference" else by_id[key]["condition"]
                score = SCRIPTED[condition] - step
                expected_scores[(trial, key)] = score
                driver.execute_script("arguments[0].value = arguments[1];"
                                      "arguments[0].dispatchEvent(new Event('input'));",
                                      slider, score)
            driver.find_element(By.ID, "next").click()
        assert sorted(seen) == ["cellar-02", "cellar-62"]
        assert not driver.find_element(By.ID, "finish").get_attribute("hidden")
        driver.find_element(By.ID, "save").click()
        deadline = time.time() + 20
        while not list(downloads.glob("*.csv")) and time.time() < deadline:
            time.sleep(0.1)
        saved = list(downloads.glob("*.csv"))
        assert len(saved) == 1, "the page did not download its results"
        # a name that the README's results/*.csv matches once the file is moved there
        assert re.fullmatch(r"mushra_hybridcodec_mushra_assessor_one_[0-9a-f]{8}\.csv",
                            saved[0].name), saved[0].name
    finally:
        driver.quit()
    with open(saved[0], newline="") as fp:
        rows = list(csv.DictReader(fp))
    assert list(rows[0]) == ["session_test_id", "name", "session_uuid", "trial_id",
                             "rating_stimulus", "rating_score", "rating_time", "rating_comment"]
    assert len(rows) == 18
    assert {r["name"] for r in rows} == {"assessor one"}
    assert {r["session_test_id"] for r in rows} == {"hybridcodec_mushra"}
    assert len({r["session_uuid"] for r in rows}) == 1
    got = {(r["trial_id"], r["rating_stimulus"]): int(r["rating_score"]) for r in rows}
    assert got == expected_scores
    assert all(int(r["rating_time"]) >= 0 for r in rows)
    # and the analysis maps the blinded ids back through the manifest
    result = an.analyze(saved, exported.manifest)
    means = {s.condition: s.mean for s in result.overall}
    expect = {c: s - 0.5 for c, s in SCRIPTED.items() if c in means}
    assert means == pytest.approx(expect)
    assert set(means) == {r["condition"] for r in manifest}


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


@pytest.mark.parametrize("tool", ["listening.analyze", "listening.export"])
def test_help_has_no_doubled_percent(tool):
    # argparse %-formats argument help but prints a description as written, and Hydra's
    # help is not %-formatted at all: a "%%" there reaches the user as is
    proc = subprocess.run([sys.executable, "-m", tool, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "%%" not in proc.stdout
    if tool == "listening.analyze":
        assert "95 % confidence interval" in " ".join(proc.stdout.split())


def test_export_bad_input_is_one_line_on_stderr(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "listening.export", "items=[no-such.flac]",
                           f"out_dir={tmp_path / 'out'}", f"hydra.run.dir={tmp_path / 'run'}"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""  # stdout is for the summary of a finished export
    assert proc.stderr.count("\n") == 1 and "item file not found: no-such.flac" in proc.stderr
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- the README


README_OUT = "/tmp/mytest"  # the README's out_dir, replaced by a temporary folder
# Synthetic means per condition: every condition the README's export can produce, in the
# order the ratings imply
BASE = {"reference": 100, "medium": 80, "opus@medium": 68, "tiny": 50, "opus@tiny": 38,
        "anchor70": 28, "anchor35": 12}


def _readme_commands() -> tuple[str, str]:
    """The export line (the one with ``out_dir=``) and the analysis line of the shell block
    in the README's "Listening tests" section, continuation lines joined."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Listening tests\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    lines = block.replace("\\\n", " ").splitlines()
    exports = [ln for ln in lines if ln.startswith("python -m listening.export ")
               and f"out_dir={README_OUT}" in ln]
    analyses = [ln for ln in lines if ln.startswith("python -m listening.analyze ")]
    assert len(exports) == 1 and len(analyses) == 1, block
    assert f"{README_OUT}/results/" in analyses[0]
    return exports[0], analyses[0]


def _env() -> dict[str, str]:
    # the checkout under test, not whatever an editable install points at
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}


def _synthetic_items(folder: Path) -> str:
    """Two short files (CD stereo; 24-bit mono at 48 kHz) and the items override that
    stands in for the README's corpus excerpts."""
    rng = np.random.default_rng(3)
    t = np.arange(2 * 44100) / 44100
    x = 0.3 * np.sin(2 * np.pi * 330 * t) + 0.1 * np.sin(2 * np.pi * 5100 * t)
    x = x[:, None] + 0.02 * rng.normal(size=(len(t), 2))
    sf.write(str(folder / "chord.flac"), np.round(x * 20000).astype(np.int16), 44100,
             subtype="PCM_16")
    t = np.arange(2 * 48000) / 48000
    y = 0.25 * np.sign(np.sin(2 * np.pi * 220 * t)) * np.exp(-t) + 0.01 * rng.normal(size=len(t))
    sf.write(str(folder / "pluck.flac"), np.round(y * 2**22).astype(np.int32)[:, None] << 8,
             48000, subtype="PCM_24")
    return "items=[{path: chord.flac, duration: 2},{path: pluck.flac, start: 0.5, duration: 1.5}]"


def _synthetic_ratings(out: Path, results: Path) -> dict[str, float]:
    """Ratings of the exported test in both layouts, where the README puts them: webMUSHRA's
    ``mushra.csv`` (no session_uuid: its questionnaire field names the assessor) with
    assessors ann, ben and cy, and one page CSV each for dee and eve. cy fails
    post-screening (hidden reference at 35) and rates everything upside down. Returns the
    expected mean per condition over the others."""
    with open(out / "manifest.csv", newline="") as fp:
        manifest = list(csv.DictReader(fp))
    test_id = yaml.safe_load((out / "webmushra.yaml").read_text())["testId"]
    offsets = {"ann": 3, "ben": -4, "dee": 0, "eve": -2}
    reference = {"ann": 100, "ben": 95, "dee": 100, "eve": 96}  # minus 3 in the 2nd item
    kept: dict[str, list[float]] = {}

    def rows(who: str) -> list[tuple[str, str, int]]:
        out_rows = []
        for trial_index, trial in enumerate(sorted({r["trial_id"] for r in manifest})):
            for r in (r for r in manifest if r["trial_id"] == trial):
                condition = r["condition"]
                key = "reference" if r["kind"] == "reference" else r["id"]
                if who == "cy":
                    score = 35 if condition == "reference" else 100 - BASE[condition]
                elif condition == "reference":
                    score = reference[who] - 3 * trial_index
                else:
                    score = BASE[condition] + offsets[who] + (2 if trial_index else -2)
                if who != "cy":
                    kept.setdefault(condition, []).append(score)
                out_rows.append((trial, key, score))
        return out_rows

    with open(results / "mushra.csv", "w", newline="") as fp:  # as webMUSHRA's fputcsv
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(["session_test_id", "name", "trial_id", "rating_stimulus", "rating_score",
                    "rating_time", "rating_comment"])
        for who in ("ann", "ben", "cy"):
            for trial, key, score in rows(who):
                w.writerow([test_id, who, trial, key, score, 4321, ""])
    for who, uuid in (("dee", "0d1e2f3a-aaaa-4bbb-8ccc-000000000001"),
                      ("eve", "9e8d7c6b-aaaa-4bbb-8ccc-000000000002")):
        name = f"{who.title()}, Q."  # a comma: quoted in the CSV, '_' in the file name
        safe = re.sub(r"[^\w.-]+", "_", name, flags=re.ASCII)[:40]  # as the page names it
        with open(results / f"mushra_{test_id}_{safe}_{uuid[:8]}.csv", "w", newline="") as fp:
            w = csv.writer(fp)  # the page writes CRLF, as csv does by default
            w.writerow(["session_test_id", "name", "session_uuid", "trial_id",
                        "rating_stimulus", "rating_score", "rating_time", "rating_comment"])
            for trial, key, score in rows(who):
                w.writerow([test_id, name, uuid, trial, key, score, 2500, 'a "clean" one'])
    return {c: float(np.mean(v)) for c, v in kept.items()}


def test_readme_sequence_export_rate_analyze_twice(tmp_path):
    export_line, analyze_line = _readme_commands()
    out = tmp_path / "mytest"
    results = out / "results"
    # export: the README's command with its corpus items replaced by short synthetic ones
    words = shlex.split(export_line, comments=True)
    assert words[0] == "python"
    words = [sys.executable] + [
        _synthetic_items(tmp_path) if w.startswith("items=") else
        w.replace(f"out_dir={README_OUT}", f"out_dir={out}") for w in words[1:]]
    proc = subprocess.run(words, cwd=tmp_path, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"ratings:   {results}/" in proc.stdout
    assert "results/hybridcodec_mushra/mushra.csv" in proc.stdout
    assert results.is_dir() and not list(results.iterdir())
    with open(out / "manifest.csv", newline="") as fp:
        conditions = {r["condition"] for r in csv.DictReader(fp)}
    tiers = re.search(r"tiers=\[([^\]]*)\]", export_line).group(1).split(",")
    assert {"reference", "anchor35", "anchor70", *tiers} <= conditions
    if shutil.which("opusenc") and shutil.which("opusdec") and "codecs=[opus]" in export_line:
        assert {f"opus@{t}" for t in tiers} <= conditions
    assert conditions <= set(BASE)

    # the analysis, exactly as the README writes it, through a shell (the glob)
    command = analyze_line.replace(README_OUT, shlex.quote(str(out)))
    command = shlex.quote(sys.executable) + command[len("python"):]

    def analyze() -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-c", command], cwd=tmp_path, env=_env(),
                              capture_output=True, text=True, timeout=300)

    # before any ratings are in: a one-line error that says where they go
    proc = analyze()
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert f"{results}/*.csv: no file matches it" in proc.stderr
    assert "mushra.html downloads" in proc.stderr

    expected = _synthetic_ratings(out, results)
    rated = sorted(p.name for p in results.iterdir())
    summaries = []
    for run in range(2):
        proc = analyze()
        assert proc.returncode == 0, (run, proc.stderr)
        assert proc.stderr == "", (run, proc.stderr)  # no warnings: nothing skipped
        assert sorted(p.name for p in results.iterdir()) == rated  # outputs went elsewhere
        report = out / "analysis"
        assert sorted(p.name for p in report.iterdir()) == [
            "mushra.png", "mushra_screening.csv", "mushra_summary.csv", "mushra_summary.md"]
        assert (report / "mushra_summary.md").read_text() in proc.stdout
        summaries.append((report / "mushra_summary.csv").read_bytes())
        with open(report / "mushra_summary.csv", newline="") as fp:
            rows = list(csv.DictReader(fp))
        overall = {r["condition"]: r for r in rows if r["item"] == "all"}
        assert set(overall) == conditions
        for condition, mean in expected.items():
            assert float(overall[condition]["mean"]) == pytest.approx(mean, abs=1e-4)
            assert int(overall[condition]["n"]) == 4 * 2  # four assessors kept, two items
        by_mean = sorted(overall, key=lambda c: -float(overall[c]["mean"]))
        assert by_mean == sorted(conditions, key=lambda c: -BASE[c])
        assert {r["item"] for r in rows} == {"all", "chord", "pluck"}  # --per-item
        with open(report / "mushra_screening.csv", newline="") as fp:
            screening = {r["assessor"]: r for r in csv.DictReader(fp)}
        assert {a: r["excluded"] for a, r in screening.items()} == {
            "ann": "0", "ben": "0", "cy": "1", "9e8d7c6b-aaaa-4bbb-8ccc-000000000002": "0",
            "0d1e2f3a-aaaa-4bbb-8ccc-000000000001": "0"}
        assert "| cy | 2 | 2 (100 %) | yes |" in proc.stdout
    assert summaries[0] == summaries[1]

    # the old default, outputs written into results/ itself: the next run skips them
    for run in range(2):
        assert an.main([str(p) for p in sorted(results.glob("*.csv"))] +
                       ["--out", str(results)]) == 0
    assert (results / "mushra_summary.csv").read_bytes() == summaries[0]


def _one_line_error(capsys, argv: list[str], expect: str) -> str:
    assert an.main(argv) == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("listening.analyze: "), err
    assert expect in err, err
    return err


def test_analysis_inputs_folders_patterns_and_own_outputs(tmp_path, capsys):
    results = tmp_path / "export" / "results"
    results.mkdir(parents=True)
    webmushra, page, manifest = _constructed_results(results)
    manifest.rename(tmp_path / "export" / "manifest.csv")  # the export's layout
    # a folder is its *.csv; a pattern the shell did not expand is expanded; each file once
    assert an.results_files([str(results)]) == [webmushra, page]
    assert an.results_files([str(results / "*.csv"), str(page)]) == [webmushra, page]
    # the manifest is found in the folder above the results; the report goes beside it
    assert an.main([str(results)]) == 0
    report = tmp_path / "export" / "analysis"
    assert "| uuid-bad | 20 | 4 (20 %) | yes |" in (report / "mushra_summary.md").read_text()
    assert sorted(p.name for p in results.iterdir()) == ["mushra.csv", "page.csv"]
    capsys.readouterr()
    # outputs among the inputs are skipped by their header, with a warning each
    shutil.copy(report / "mushra_summary.csv", results)
    shutil.copy(report / "mushra_screening.csv", results / "old-screening.csv")
    assert an.main([str(results / "*.csv"), "--out", str(tmp_path / "again")]) == 0
    err = capsys.readouterr().err
    assert err.count("skipped: a summary written by listening.analyze") == 2, err
    assert (tmp_path / "again" / "mushra_summary.csv").read_bytes() == \
        (report / "mushra_summary.csv").read_bytes()
    _one_line_error(capsys, [str(results / "mushra_summary.csv")],
                    "is listening.analyze's own output")


def test_analysis_bad_inputs_are_one_line_errors(tmp_path, capsys):
    webmushra, page, manifest = _constructed_results(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(capsys, [str(empty / "*.csv")], "no file matches it; save the ratings")
    _one_line_error(capsys, [str(tmp_path / "none" / "*.csv")], "there is no folder")
    _one_line_error(capsys, [str(empty)], "no .csv file in this folder")
    _one_line_error(capsys, [str(tmp_path / "missing.csv")], "missing.csv: no such file")
    _one_line_error(capsys, [str(webmushra), "--manifest", str(tmp_path / "nope.csv")],
                    "no such manifest")
    bad_manifest = tmp_path / "m" / "manifest.csv"
    bad_manifest.parent.mkdir()
    bad_manifest.write_text("file,kind\na,b\n")
    _one_line_error(capsys, [str(webmushra), "--manifest", str(bad_manifest)],
                    "not an export manifest (no column id, condition)")

    header = webmushra.read_text().splitlines()[0]
    good = webmushra.read_text().splitlines()[1]  # uuid-good, item00, the hidden reference
    cases = {
        "short row": (f"{header}\nhybridcodec_mushra,x\n", ":2: malformed row"),
        "long row": (f"{header}\n{good},extra\n", ":2: malformed row"),
        "score": (f"{header}\n{good.replace(',100,', ',abc,')}\n", "'abc' is not a number"),
        "range": (f"{header}\n{good.replace(',100,', ',101,')}\n", "101 is outside 0..100"),
        "unknown id": (f"{header}\n{good.replace(',reference,', ',s0badf00d,')}\n",
                       "stimulus 's0badf00d' is not in"),
        "unknown trial": (f"{header}\n{good.replace(',item00,', ',item99,')}\n",
                          "trial 'item99' is not in"),
        "wrong trial": (f"{header}\n{good.replace(',reference,', ',s00010001,')}\n",
                        "belongs to trial 'item01'"),
        "header only": (f"{header}\n", "no ratings in"),
    }
    for name, (text, expect) in cases.items():
        bad = tmp_path / f"{name.replace(' ', '-')}.csv"
        bad.write_text(text)
        _one_line_error(capsys, [str(bad), "--manifest", str(manifest)], expect)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00\x01garbage")
    _one_line_error(capsys, [str(binary)], "not a text (UTF-8) file")
    # an output folder that cannot be made
    blocker = tmp_path / "file"
    blocker.write_text("")
    _one_line_error(capsys, [str(webmushra), "--manifest", str(manifest), "--out",
                             str(blocker / "sub")], str(blocker / "sub"))


def test_reexport_keeps_results_and_the_analysis_refuses_stale_ratings(tmp_path, caplog,
                                                                       capsys):
    _synthetic_items(tmp_path)
    out = tmp_path / "small"
    overrides = [f"items=[{{path: {tmp_path / 'chord.flac'}, duration: 1}}]", "tiers=[tiny]",
                 "codecs=[]", "anchors=[3500]", f"out_dir={out}"]
    first = export(_compose(overrides + ["seed=1"]))
    assert first.results == out / "results" and first.results.is_dir()
    with open(first.manifest, newline="") as fp:
        old = list(csv.DictReader(fp))
    rated = first.results / "mushra.csv"
    with open(rated, "w", newline="") as fp:
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(["session_test_id", "name", "trial_id", "rating_stimulus", "rating_score",
                    "rating_time", "rating_comment"])
        for r in old:
            key = "reference" if r["kind"] == "reference" else r["id"]
            score = 100 if key == "reference" else 50
            w.writerow(["hybridcodec_mushra", "ann", r["trial_id"], key, score, 1, ""])
    assert an.main([str(rated)]) == 0  # manifest found in the folder above results/
    capsys.readouterr()
    with caplog.at_level("WARNING", logger="listening.export"):
        export(_compose(overrides + ["seed=2"]))  # another blinding into the same folder
    assert any("already holds mushra.csv" in r.getMessage() for r in caplog.records)
    assert rated.is_file()  # the ratings are the experimenter's: never deleted
    _one_line_error(capsys, [str(rated)], "is not in")
