"""MUSHRA results: ``python -m listening.analyze EXPORT/results/*.csv [--out DIR]``.

Reads webMUSHRA's ``mushra.csv`` (columns ``session_test_id``, the questionnaire fields,
``session_uuid`` in webMUSHRA 1.4+, ``trial_id``, ``rating_stimulus``, ``rating_score``,
``rating_time``, ``rating_comment``) and the CSV files saved by the page that
``python -m listening.export`` writes (the same columns, with one questionnaire field,
``name``). Several files are concatenated (e.g. one per assessor). Their usual place is the
export's ``results/`` folder; a folder given on the command line stands for the ``*.csv``
files in it, and a pattern that the shell left unexpanded is expanded here. The CSV files
this module writes are recognised by their header and skipped with a warning, so a
results folder that also holds an earlier analysis still reads.

* Conditions: ``rating_stimulus`` is a blinded id, mapped to its condition by the export's
  ``manifest.csv`` (``--manifest``; looked up beside the first results file, then in the
  folder above it, which is the export's when the results are in its ``results/``);
  ``reference`` is the hidden reference (webMUSHRA's name), ``anchor35`` / ``anchor70`` are
  webMUSHRA's own anchors. An id or trial that the manifest does not know is an error (the
  ratings belong to another export). Without a manifest the stimulus names are the
  conditions.
* Assessors: ``session_uuid`` where present, else the questionnaire fields, else
  ``session_test_id`` (``--assessor COLUMN`` chooses).
* Post-screening (ITU-R BS.1534-3, 4.1.2): an assessor who rates the hidden reference
  below 90 for more than 15 % of the items they rated is excluded (``--no-screening``
  keeps everyone).
* Statistics: per condition (and per item and condition) the mean over all remaining
  ratings and its 95 % confidence interval from Student's t distribution,
  mean +- t(0.975, n-1) * s / sqrt(n).

Writes ``mushra_summary.md`` (the markdown table, also printed), ``mushra_summary.csv``,
``mushra_screening.csv`` and ``mushra.png`` (means with their confidence intervals; one
panel per item with ``--per-item``) into ``--out`` (default: ``analysis/`` in the
manifest's folder, i.e. the export's; without a manifest ``analysis/`` beside the first
results file). Unusable input is a one-line error and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import glob
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HIDDEN_REFERENCE = "reference"
WEBMUSHRA_ANCHORS = ("anchor35", "anchor70")  # webMUSHRA's createAnchor35/70 stimuli
REQUIRED = ("trial_id", "rating_stimulus", "rating_score")
RESULT_COLUMNS = ("session_test_id", "session_uuid", "trial_id", "rating_stimulus",
                  "rating_score", "rating_time", "rating_comment")
TIER_ORDER = ("lossless", "high", "medium", "low", "tiny")
BLINDED = re.compile(r"s[0-9a-f]{8}")  # the export's file ids
GLOB_MAGIC = re.compile(r"[*?[]")
# The headers of the CSV files written here: a results folder that also receives an
# analysis must still read as results the next time.
SUMMARY_COLUMNS = ("item", "condition", "n", "mean", "std", "ci95", "ci_low", "ci_high")
SCREENING_COLUMNS = ("assessor", "items", "reference_below_90", "fraction", "excluded")
OWN_OUTPUTS = (SUMMARY_COLUMNS, SCREENING_COLUMNS)
OUT_FOLDER = "analysis"
WHERE_RESULTS_GO = ("save the ratings there first: the CSV that mushra.html downloads, or "
                    "webMUSHRA's results/<testId>/mushra.csv")


class AnalysisError(Exception):
    """Unusable input (message for the user)."""


@dataclass
class Rating:
    """One score: ``assessor`` rated ``stimulus`` (its ``condition``) in ``trial``."""

    assessor: str
    trial: str
    stimulus: str
    condition: str
    score: float


@dataclass
class Screening:
    """Post-screening of one assessor on their hidden-reference ratings."""

    assessor: str
    items: int  # items with a hidden-reference rating
    below: int  # of them rated below the threshold
    excluded: bool

    @property
    def fraction(self) -> float:
        """Share of the items with the hidden reference below the threshold."""
        return self.below / self.items if self.items else float("nan")


@dataclass
class Stat:
    """Mean and 95 % t confidence interval of one condition (over all items, or one)."""

    condition: str
    item: str | None
    n: int
    mean: float
    std: float
    ci: float  # half-width of the 95 % confidence interval

    @property
    def low(self) -> float:
        """Lower end of the confidence interval."""
        return self.mean - self.ci

    @property
    def high(self) -> float:
        """Upper end of the confidence interval."""
        return self.mean + self.ci


@dataclass
class Analysis:
    """Everything :func:`analyze` found: all ratings, those kept after post-screening, the
    screening, the statistics, mean bit rates per condition and warnings for the user."""

    ratings: list[Rating]
    kept: list[Rating]
    screening: list[Screening]
    overall: list[Stat]
    per_item: list[Stat]
    kbps: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    manifest: Path | None = None  # the manifest used, if any

    @property
    def excluded(self) -> list[str]:
        """The assessors that post-screening excluded."""
        return [s.assessor for s in self.screening if s.excluded]


# ----------------------------------------------------------------------------- reading


@dataclass
class Manifest:
    """The export's ``manifest.csv``: what each blinded id is."""

    path: Path
    conditions: dict[str, str]  # blinded id -> condition
    trials: dict[str, str]  # blinded id -> trial id (empty if the manifest has no trial_id)
    kbps: dict[str, list[float]]  # condition -> bit rates over the items


def read_manifest(path: str | Path) -> Manifest:
    """The blinded ids, their conditions, trials and bit rates from ``manifest.csv``."""
    path = Path(path)
    if not path.is_file():
        raise AnalysisError(f"{path}: no such manifest (the export writes manifest.csv into "
                            f"its folder)")
    conditions, trials, kbps = {}, {}, defaultdict(list)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fp:
            reader = csv.DictReader(fp)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [c for c in ("id", "condition") if c not in header]
            if missing:
                raise AnalysisError(f"{path}: not an export manifest (no column "
                                    f"{', '.join(missing)})")
            for row in reader:
                where = f"{path}:{reader.line_num}"
                if None in row or None in row.values():
                    raise AnalysisError(f"{where}: malformed row (its number of fields "
                                        f"differs from the header's)")
                sid, condition = row["id"].strip(), row["condition"].strip()
                if not sid or not condition:
                    raise AnalysisError(f"{where}: empty id or condition")
                conditions[sid] = condition
                if (row.get("trial_id") or "").strip():
                    trials[sid] = row["trial_id"].strip()
                if (row.get("kbps") or "").strip():
                    try:
                        kbps[condition].append(float(row["kbps"]))
                    except ValueError:
                        raise AnalysisError(f"{where}: kbps {row['kbps']!r} is not a "
                                            f"number") from None
    except UnicodeDecodeError:
        raise AnalysisError(f"{path}: not a text (UTF-8) file") from None
    except csv.Error as exc:
        raise AnalysisError(f"{path}: malformed CSV: {exc}") from None
    if not conditions:
        raise AnalysisError(f"{path}: the manifest lists no stimuli")
    return Manifest(path, conditions, trials, dict(kbps))


def find_manifest(first_results: Path) -> Path | None:
    """``manifest.csv`` beside the first results file, else in the folder above it (the
    export's folder when the results are in its ``results/``), else None."""
    for folder in (first_results.parent, first_results.parent.parent):
        if (folder / "manifest.csv").is_file():
            return folder / "manifest.csv"
    return None


def results_files(args) -> list[Path]:
    """The files named on the command line: files as they are, a folder as the ``*.csv``
    files in it, and a pattern with ``*?[`` that names no file as what it matches (a shell
    leaves a pattern that matches nothing as it is, and Windows shells never expand).
    Each file once, in order."""
    files: list[Path] = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted(path.glob("*.csv"))
            if not found:
                raise AnalysisError(f"{arg}: no .csv file in this folder; {WHERE_RESULTS_GO}")
        elif path.is_file():
            found = [path]
        elif GLOB_MAGIC.search(arg):
            found = sorted(Path(p) for p in glob.glob(arg) if Path(p).is_file())
            if not found:
                folder = path.parent
                why = "no file matches it" if folder.is_dir() else \
                    f"there is no folder {folder}"
                raise AnalysisError(f"{arg}: {why}; {WHERE_RESULTS_GO}")
        else:
            raise AnalysisError(f"{arg}: no such file")
        files += found
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    if not unique:
        raise AnalysisError("no results files given")
    return list(unique.values())


def _assessor_columns(header: list[str], choice: str | None) -> list[str]:
    if choice:
        if choice not in header:
            raise AnalysisError(f"--assessor {choice!r}: no such column (have "
                                f"{', '.join(header)})")
        return [choice]
    if "session_uuid" in header:
        return ["session_uuid"]
    questionnaire = [c for c in header if c not in RESULT_COLUMNS]
    if questionnaire:
        return questionnaire
    return ["session_test_id"] if "session_test_id" in header else []


def read_results(paths, manifest: Manifest | None = None,
                 assessor: str | None = None) -> tuple[list[Rating], list[str]]:
    """Ratings from webMUSHRA / page CSV files (see module), and warnings.

    A file with the header of this module's own ``mushra_summary.csv`` or
    ``mushra_screening.csv`` is skipped (with a warning); anything else that is not a
    results file, a malformed row, a score outside 0..100 or, with a ``manifest``, an id or
    trial it does not know raises :class:`AnalysisError`."""
    ratings: dict[tuple[str, str, str], Rating] = {}
    warnings, skipped = [], []
    for path in paths:
        try:
            with open(path, newline="", encoding="utf-8-sig") as fp:
                _read_file(path, fp, manifest, assessor, ratings, warnings, skipped)
        except UnicodeDecodeError:
            raise AnalysisError(f"{path}: not a text (UTF-8) file") from None
        except csv.Error as exc:
            raise AnalysisError(f"{path}: malformed CSV: {exc}") from None
    if not ratings:
        if skipped and len(skipped) == len(paths):
            raise AnalysisError(f"no ratings: {', '.join(map(str, skipped))} "
                                f"{'is' if len(skipped) == 1 else 'are'} listening.analyze's "
                                f"own output; {WHERE_RESULTS_GO}")
        raise AnalysisError(f"no ratings in {', '.join(map(str, paths))}")
    return list(ratings.values()), warnings


def _read_file(path, fp, manifest: Manifest | None, assessor: str | None,
               ratings: dict[tuple[str, str, str], Rating], warnings: list[str],
               skipped: list) -> None:
    reader = csv.DictReader(fp)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    if tuple(header) in OWN_OUTPUTS:
        warnings.append(f"{path}: skipped: a summary written by listening.analyze, not ratings")
        skipped.append(path)
        return
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise AnalysisError(f"{path}: not a MUSHRA results file (no column "
                            f"{', '.join(missing)})")
    who = _assessor_columns(header, assessor)
    if who == ["session_test_id"]:
        warnings.append(f"{path}: no session_uuid or questionnaire column: all its "
                        f"ratings count as one assessor per test id")
    manifest_trials = set(manifest.trials.values()) if manifest is not None else set()
    for row in reader:
        line = reader.line_num  # where the row ends (a quoted comment may span lines)
        if None in row or None in row.values():
            raise AnalysisError(f"{path}:{line}: malformed row (its number of fields differs "
                                f"from the header's)")
        if not any(v.strip() for v in row.values()):
            continue
        if row["rating_stimulus"] == "rating_stimulus":
            continue  # a header repeated by concatenation
        try:
            score = float(row["rating_score"])
        except ValueError:
            raise AnalysisError(f"{path}:{line}: rating_score {row['rating_score']!r} is not "
                                f"a number") from None
        if not 0 <= score <= 100:
            raise AnalysisError(f"{path}:{line}: rating_score {score:g} is outside 0..100")
        stimulus, trial = row["rating_stimulus"].strip(), row["trial_id"].strip()
        if not stimulus or not trial:
            raise AnalysisError(f"{path}:{line}: empty trial_id or rating_stimulus")
        condition = stimulus
        if manifest is not None:
            condition = _condition(manifest, manifest_trials, stimulus, trial, f"{path}:{line}")
        key_who = "/".join((row.get(c) or "").strip() for c in who) or "(unknown)"
        key = (key_who, trial, stimulus)
        if key in ratings:
            warnings.append(f"{path}:{line}: {key_who} rated {stimulus} in {trial} "
                            f"again; the later rating counts")
        ratings[key] = Rating(key_who, trial, stimulus, condition, score)


def _condition(manifest: Manifest, manifest_trials: set[str], stimulus: str, trial: str,
               where: str) -> str:
    """The condition of a rated stimulus; an id or trial the manifest does not know means
    the ratings and the manifest come from different exports."""
    hint = "ratings of another export? --manifest names the export's manifest.csv"
    if manifest_trials and trial not in manifest_trials:
        raise AnalysisError(f"{where}: trial {trial!r} is not in {manifest.path} ({hint})")
    if stimulus == HIDDEN_REFERENCE or stimulus in WEBMUSHRA_ANCHORS:
        return stimulus
    if stimulus not in manifest.conditions:
        raise AnalysisError(f"{where}: stimulus {stimulus!r} is not in {manifest.path} ({hint})")
    home = manifest.trials.get(stimulus)
    if home is not None and home != trial:
        raise AnalysisError(f"{where}: stimulus {stimulus!r} is rated in trial {trial!r} but "
                            f"belongs to trial {home!r} in {manifest.path} ({hint})")
    return manifest.conditions[stimulus]


# ----------------------------------------------------------------------------- statistics


def screen(ratings: list[Rating], threshold: float = 90.0,
           max_fraction: float = 0.15) -> list[Screening]:
    """BS.1534-3 post-screening: exclude an assessor who rates the hidden reference below
    ``threshold`` for more than ``max_fraction`` of the items (exactly 15 % is kept)."""
    refs: dict[str, dict[str, float]] = defaultdict(dict)
    assessors = []
    for r in ratings:
        if r.assessor not in assessors:
            assessors.append(r.assessor)
        if r.condition == HIDDEN_REFERENCE:
            refs[r.assessor][r.trial] = r.score
    out = []
    for who in assessors:
        scores = list(refs[who].values())
        below = sum(s < threshold for s in scores)
        # integer comparison of below / items > max_fraction, free of float rounding
        excluded = bool(scores) and below * 10**6 > round(max_fraction * 10**6) * len(scores)
        out.append(Screening(who, len(scores), below, excluded))
    return out


def describe(scores, condition: str, item: str | None = None) -> Stat:
    """Mean, standard deviation and 95 % t confidence half-width of ``scores``."""
    from scipy import stats

    x = np.asarray(scores, dtype=float)
    n = len(x)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return Stat(condition, item, n, mean, float("nan"), float("nan"))
    std = float(x.std(ddof=1))
    ci = float(stats.t.ppf(0.975, n - 1) * std / math.sqrt(n))
    return Stat(condition, item, n, mean, std, ci)


def condition_order(conditions) -> list[str]:
    """Hidden reference, hybridcodec tiers best first, reference codecs, anchors, others."""
    def key(c: str):
        if c == HIDDEN_REFERENCE:
            return (0, 0, c)
        if c in TIER_ORDER:
            return (1, TIER_ORDER.index(c), c)
        if "@" in c:
            name, tier = c.split("@", 1)
            return (2, TIER_ORDER.index(tier) if tier in TIER_ORDER else 99, c)
        if c.startswith("anchor"):
            digits = c[len("anchor"):]
            return (4, -int(digits) if digits.isdigit() else 0, c)
        return (3, 0, c)
    return sorted(set(conditions), key=key)


def analyze(paths, manifest_path: str | Path | None = None, assessor: str | None = None,
            screening: bool = True, threshold: float = 90.0,
            max_fraction: float = 0.15) -> Analysis:
    """Read the results files ``paths`` (mapped through ``manifest_path``, by default
    :func:`find_manifest`), post-screen the assessors and describe every condition."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise AnalysisError("no results files given")
    if manifest_path is None:
        manifest_path = find_manifest(paths[0])
    manifest = read_manifest(manifest_path) if manifest_path is not None else None
    kbps = manifest.kbps if manifest is not None else {}
    ratings, warnings = read_results(paths, manifest, assessor)
    if manifest is None and any(BLINDED.fullmatch(r.stimulus) for r in ratings):
        warnings.append("the stimuli look like blinded ids but no manifest was given "
                        "(--manifest manifest.csv maps them to conditions)")
    checks = screen(ratings, threshold, max_fraction)
    if not any(r.condition == HIDDEN_REFERENCE for r in ratings):
        warnings.append("no hidden-reference ratings: post-screening impossible")
    dropped = {s.assessor for s in checks if s.excluded} if screening else set()
    kept = [r for r in ratings if r.assessor not in dropped]
    if not kept:
        raise AnalysisError("post-screening excluded every assessor (--no-screening keeps them)")
    by_cond, by_item = defaultdict(list), defaultdict(list)
    for r in kept:
        by_cond[r.condition].append(r.score)
        by_item[(r.trial, r.condition)].append(r.score)
    order = condition_order(by_cond)
    overall = [describe(by_cond[c], c) for c in order]
    items = sorted({r.trial for r in kept})
    per_item = [describe(by_item[(i, c)], c, i) for i in items for c in order
                if (i, c) in by_item]
    mean_kbps = {c: float(np.mean(v)) for c, v in kbps.items() if v}
    if not screening:
        for s in checks:
            s.excluded = False
    return Analysis(ratings, kept, checks, overall, per_item, mean_kbps, warnings,
                    manifest.path if manifest is not None else None)


def default_out(result: Analysis, paths) -> Path:
    """``analysis/`` in the manifest's folder, else beside the first results file: never the
    results folder itself, which the next run reads with ``*.csv``."""
    base = result.manifest.parent if result.manifest is not None else Path(paths[0]).parent
    return base.resolve() / OUT_FOLDER


# ----------------------------------------------------------------------------- reporting


def _num(x: float, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def markdown(result: Analysis, per_item: bool = False) -> str:
    """The summary as markdown: the table per condition (per item too with ``per_item``)
    and the screening table."""
    assessors = {r.assessor for r in result.ratings}
    kept = {r.assessor for r in result.kept}
    lines = [f"MUSHRA results: {len(kept)} of {len(assessors)} assessors after post-screening "
             f"(ITU-R BS.1534-3: hidden reference below 90 in more than 15 % of the items), "
             f"{len({r.trial for r in result.kept})} items, {len(result.kept)} ratings.", ""]
    has_kbps = bool(result.kbps)
    head = "| condition | n | mean | 95 % CI | ± |" + (" kbps |" if has_kbps else "")
    lines += [head, "|---|---:|---:|---:|---:|" + ("---:|" if has_kbps else "")]
    for s in result.overall:
        row = (f"| {s.condition} | {s.n} | {_num(s.mean)} | [{_num(s.low)}, {_num(s.high)}] "
               f"| {_num(s.ci)} |")
        if has_kbps:
            row += f" {_num(result.kbps.get(s.condition, float('nan')))} |"
        lines.append(row)
    if per_item:
        lines += ["", "| item | condition | n | mean | 95 % CI |", "|---|---|---:|---:|---:|"]
        for s in result.per_item:
            lines.append(f"| {s.item} | {s.condition} | {s.n} | {_num(s.mean)} | "
                         f"[{_num(s.low)}, {_num(s.high)}] |")
    lines += ["", "| assessor | items | hidden reference < 90 | excluded |", "|---|---:|---:|---|"]
    for s in result.screening:
        lines.append(f"| {s.assessor} | {s.items} | {s.below} ({_num(100 * s.fraction, 0)} %) "
                     f"| {'yes' if s.excluded else 'no'} |")
    return "\n".join(lines) + "\n"


def write_tables(result: Analysis, out: Path) -> None:
    """``mushra_summary.csv`` (all items and per item) and ``mushra_screening.csv``."""
    with open(out / "mushra_summary.csv", "w", newline="", encoding="utf-8") as fp:
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(SUMMARY_COLUMNS)
        for s in result.overall + result.per_item:
            w.writerow([s.item or "all", s.condition, s.n] +
                       [f"{v:.4f}" for v in (s.mean, s.std, s.ci, s.low, s.high)])
    with open(out / "mushra_screening.csv", "w", newline="", encoding="utf-8") as fp:
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(SCREENING_COLUMNS)
        for s in result.screening:
            w.writerow([s.assessor, s.items, s.below, f"{s.fraction:.4f}", int(s.excluded)])


def plot(result: Analysis, path: Path, per_item: bool = False) -> Path:
    """Means with their confidence intervals on the MUSHRA scale, one panel for all items
    (and one per item with ``per_item``), saved as a PNG at ``path``."""
    try:
        import matplotlib
    except ImportError:
        raise AnalysisError("the plot needs matplotlib (pip install -e '.[listening]')") from None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted({s.item for s in result.per_item}) if per_item else []
    panels = [("all items", result.overall)] + [
        (item, [s for s in result.per_item if s.item == item]) for item in items]
    order = [s.condition for s in result.overall]
    cols = min(len(panels), 3)
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 0.55 * len(order) + 2) * cols,
                                                  4.2 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (title, stats) in zip(axes.flat, panels):
        for lo, label in zip(range(0, 100, 20), ("Bad", "Poor", "Fair", "Good", "Excellent")):
            ax.axhspan(lo, lo + 20, color="0.94" if (lo // 20) % 2 else "1.0", zorder=0)
            ax.text(1.01, lo + 10, label, transform=ax.get_yaxis_transform(), va="center",
                    fontsize=7, color="0.4")
        x = [order.index(s.condition) for s in stats]
        ci = [s.ci if math.isfinite(s.ci) else 0.0 for s in stats]
        ax.errorbar(x, [s.mean for s in stats], yerr=ci, fmt="o", capsize=4, color="#2457a6",
                    zorder=3)
        ax.set_xticks(range(len(order)), order, rotation=40, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(order) - 0.4)
        ax.set_ylim(0, 100)
        ax.set_ylabel("score (mean, 95 % CI)")
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", color="0.8", linewidth=0.5, zorder=1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    """The command line (see module); returns the exit status: 0, or 2 for unusable input."""
    parser = argparse.ArgumentParser(
        prog="python -m listening.analyze",
        description="Mean and 95 % confidence interval per condition of MUSHRA results "
                    "(webMUSHRA's mushra.csv or the exported page's CSV), after ITU-R "
                    "BS.1534-3 post-screening.",
        epilog="Put the ratings into the export's results/ folder (the CSV that mushra.html "
               "downloads into the browser's download folder, or webMUSHRA's "
               "results/<testId>/mushra.csv), then: python -m listening.analyze "
               "EXPORT/results/*.csv --manifest EXPORT/manifest.csv")
    parser.add_argument("results", nargs="+", help="results CSV files; a folder stands for "
                        "the *.csv files in it")
    parser.add_argument("--manifest", help="the export's manifest.csv (blinded id -> "
                        "condition; default: manifest.csv beside the first results file or "
                        "in the folder above it)")
    parser.add_argument("--out", help="output folder (default: analysis/ in the manifest's "
                        "folder, else beside the first results file)")
    parser.add_argument("--assessor", help="column that identifies an assessor (default: "
                        "session_uuid, else the questionnaire columns)")
    parser.add_argument("--per-item", action="store_true", help="also per item: table rows "
                        "and one plot panel per item")
    parser.add_argument("--no-screening", action="store_true",
                        help="keep every assessor (report the screening only)")
    parser.add_argument("--threshold", type=float, default=90.0,
                        help="hidden-reference score below which a rating counts (default 90)")
    parser.add_argument("--max-fraction", type=float, default=0.15,
                        help="largest fraction of items allowed below the threshold (default 0.15)")
    args = parser.parse_args(argv)
    try:
        paths = results_files(args.results)
        result = analyze(paths, args.manifest, args.assessor, not args.no_screening,
                         args.threshold, args.max_fraction)
        out = Path(args.out) if args.out else default_out(result, paths)
        for line in result.warnings:
            print(f"warning: {line}", file=sys.stderr)
        out.mkdir(parents=True, exist_ok=True)
        text = markdown(result, args.per_item)
        (out / "mushra_summary.md").write_text(text, encoding="utf-8")
        write_tables(result, out)
        png = plot(result, out / "mushra.png", args.per_item)
    except AnalysisError as exc:
        print(f"listening.analyze: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"listening.analyze: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    print(text)
    print(f"wrote {out / 'mushra_summary.md'}, {out / 'mushra_summary.csv'}, "
          f"{out / 'mushra_screening.csv'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
