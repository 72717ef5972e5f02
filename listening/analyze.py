"""MUSHRA results: ``python -m listening.analyze results.csv [more.csv ...] [--out DIR]``.

Reads webMUSHRA's ``mushra.csv`` (columns ``session_test_id``, the questionnaire fields,
``session_uuid`` in webMUSHRA 1.4+, ``trial_id``, ``rating_stimulus``, ``rating_score``,
``rating_time``, ``rating_comment``) and the CSV files saved by the page that
``python -m listening.export`` writes (the same columns, with one questionnaire field,
``name``). Several files are concatenated (e.g. one per assessor).

* Conditions: ``rating_stimulus`` is a blinded id, mapped to its condition by the export's
  ``manifest.csv`` (``--manifest``; looked up beside the results when not given);
  ``reference`` is the hidden reference (webMUSHRA's name), ``anchor35`` / ``anchor70`` are
  webMUSHRA's own anchors. Without a manifest the stimulus names are the conditions.
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
panel per item with ``--per-item``) into ``--out`` (default: beside the first results file).
"""

from __future__ import annotations

import argparse
import csv
import math
import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HIDDEN_REFERENCE = "reference"
REQUIRED = ("trial_id", "rating_stimulus", "rating_score")
RESULT_COLUMNS = ("session_test_id", "session_uuid", "trial_id", "rating_stimulus",
                  "rating_score", "rating_time", "rating_comment")
TIER_ORDER = ("lossless", "high", "medium", "low", "tiny")
BLINDED = re.compile(r"s[0-9a-f]{8}")  # the export's file ids


class AnalysisError(Exception):
    """Unusable input (message for the user)."""


@dataclass
class Rating:
    assessor: str
    trial: str
    stimulus: str
    condition: str
    score: float


@dataclass
class Screening:
    assessor: str
    items: int  # items with a hidden-reference rating
    below: int  # of them rated below the threshold
    excluded: bool

    @property
    def fraction(self) -> float:
        return self.below / self.items if self.items else float("nan")


@dataclass
class Stat:
    condition: str
    item: str | None
    n: int
    mean: float
    std: float
    ci: float  # half-width of the 95 % confidence interval

    @property
    def low(self) -> float:
        return self.mean - self.ci

    @property
    def high(self) -> float:
        return self.mean + self.ci


@dataclass
class Analysis:
    ratings: list[Rating]
    kept: list[Rating]
    screening: list[Screening]
    overall: list[Stat]
    per_item: list[Stat]
    kbps: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def excluded(self) -> list[str]:
        return [s.assessor for s in self.screening if s.excluded]


# ----------------------------------------------------------------------------- reading


def read_manifest(path: str | Path) -> tuple[dict[str, str], dict[str, list[float]]]:
    """(blinded id -> condition, condition -> bit rates over items) from manifest.csv."""
    conditions, kbps = {}, defaultdict(list)
    with open(path, newline="", encoding="utf-8") as fp:
        for row in csv.DictReader(fp):
            conditions[row["id"]] = row["condition"]
            if row.get("kbps"):
                kbps[row["condition"]].append(float(row["kbps"]))
    return conditions, kbps


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


def read_results(paths, manifest: dict[str, str] | None = None,
                 assessor: str | None = None) -> tuple[list[Rating], list[str]]:
    """Ratings from webMUSHRA / page CSV files (see module), and warnings."""
    ratings: dict[tuple[str, str, str], Rating] = {}
    warnings = []
    unknown = set()
    for path in paths:
        with open(path, newline="", encoding="utf-8-sig") as fp:
            reader = csv.DictReader(fp)
            header = [h.strip() for h in (reader.fieldnames or [])]
            reader.fieldnames = header
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise AnalysisError(f"{path}: not a MUSHRA results file (no column "
                                    f"{', '.join(missing)})")
            who = _assessor_columns(header, assessor)
            if who == ["session_test_id"]:
                warnings.append(f"{path}: no session_uuid or questionnaire column: all its "
                                f"ratings count as one assessor per test id")
            for line, row in enumerate(reader, start=2):
                if not any((v or "").strip() for v in row.values()):
                    continue
                if row.get("rating_stimulus") == "rating_stimulus":
                    continue  # a header repeated by concatenation
                try:
                    score = float(row["rating_score"])
                except (TypeError, ValueError):
                    raise AnalysisError(f"{path}:{line}: rating_score "
                                        f"{row.get('rating_score')!r} is not a number") from None
                if not 0 <= score <= 100:
                    raise AnalysisError(f"{path}:{line}: rating_score {score} is outside 0..100")
                stimulus = row["rating_stimulus"].strip()
                condition = stimulus
                if manifest is not None and stimulus != HIDDEN_REFERENCE:
                    if stimulus in manifest:
                        condition = manifest[stimulus]
                    elif stimulus not in ("anchor35", "anchor70"):
                        unknown.add(stimulus)
                key_who = "/".join((row.get(c) or "").strip() for c in who) or "(unknown)"
                key = (key_who, row["trial_id"].strip(), stimulus)
                if key in ratings:
                    warnings.append(f"{path}:{line}: {key_who} rated {key[2]} in {key[1]} "
                                    f"again; the later rating counts")
                ratings[key] = Rating(key_who, key[1], stimulus, condition, score)
    if unknown:
        warnings.append(f"stimuli not in the manifest (kept under their own names): "
                        f"{', '.join(sorted(unknown))}")
    if not ratings:
        raise AnalysisError("no ratings found")
    return list(ratings.values()), warnings


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
    paths = [Path(p) for p in paths]
    if manifest_path is None:
        guess = paths[0].parent / "manifest.csv"
        manifest_path = guess if guess.is_file() else None
    manifest, kbps = (None, {})
    if manifest_path is not None:
        manifest, kbps = read_manifest(manifest_path)
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
    return Analysis(ratings, kept, checks, overall, per_item, mean_kbps, warnings)


# ----------------------------------------------------------------------------- reporting


def _num(x: float, digits: int = 1) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def markdown(result: Analysis, per_item: bool = False) -> str:
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
    with open(out / "mushra_summary.csv", "w", newline="", encoding="utf-8") as fp:
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(["item", "condition", "n", "mean", "std", "ci95", "ci_low", "ci_high"])
        for s in result.overall + result.per_item:
            w.writerow([s.item or "all", s.condition, s.n] +
                       [f"{v:.4f}" for v in (s.mean, s.std, s.ci, s.low, s.high)])
    with open(out / "mushra_screening.csv", "w", newline="", encoding="utf-8") as fp:
        w = csv.writer(fp, lineterminator="\n")
        w.writerow(["assessor", "items", "reference_below_90", "fraction", "excluded"])
        for s in result.screening:
            w.writerow([s.assessor, s.items, s.below, f"{s.fraction:.4f}", int(s.excluded)])


def plot(result: Analysis, path: Path, per_item: bool = False) -> Path:
    import matplotlib

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
    parser = argparse.ArgumentParser(
        prog="python -m listening.analyze",
        description="Mean and 95 % confidence interval per condition of MUSHRA results "
                    "(webMUSHRA's mushra.csv or the exported page's CSV), after ITU-R "
                    "BS.1534-3 post-screening.")
    parser.add_argument("results", nargs="+", help="results CSV file(s)")
    parser.add_argument("--manifest", help="the export's manifest.csv (blinded id -> "
                        "condition; default: manifest.csv beside the first results file)")
    parser.add_argument("--out", help="output folder (default: beside the first results file)")
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
        result = analyze(args.results, args.manifest, args.assessor, not args.no_screening,
                         args.threshold, args.max_fraction)
    except (AnalysisError, OSError) as exc:
        print(f"listening.analyze: {exc}", file=sys.stderr)
        return 2
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    out = Path(args.out) if args.out else Path(args.results[0]).resolve().parent
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(result, args.per_item)
    (out / "mushra_summary.md").write_text(text, encoding="utf-8")
    write_tables(result, out)
    png = plot(result, out / "mushra.png", args.per_item)
    print(text)
    print(f"wrote {out / 'mushra_summary.md'}, {out / 'mushra_summary.csv'}, "
          f"{out / 'mushra_screening.csv'}, {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
