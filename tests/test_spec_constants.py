"""docs/format.md and the code agree on every constant and table that shapes a stream.

Part 2 of the format document states its constants in fenced ``constants`` blocks
(``NAME = value  module.ATTR``). Each one that names a code attribute is compared with
it; each one marked ``-`` is a literal inside the code, checked here by running the code
against a small reference written from the document with the documented value (the
cascade's normalisation, the frame parameter widths, the escape length, the ANS coder's
word and state sizes, the class-difference exponent, the hop limits). The document's
layer-id table, registries, bundled models and envelope grid table are compared with the
code too, and so are the claims on how constriction quantises the CDFs it is given. A
constant changed on one side only fails here.
"""

from __future__ import annotations

import ast
import importlib
import operator
import re
from pathlib import Path

import numpy as np
import pytest

import constriction

DOC = Path(__file__).resolve().parents[1] / "docs" / "format.md"
TEXT = DOC.read_text(encoding="utf-8")

_OPS = {ast.Pow: operator.pow, ast.Mult: operator.mul, ast.Add: operator.add,
        ast.Sub: operator.sub, ast.LShift: operator.lshift}


def _value(expr: str):
    """A documented value: literals, tuples, lists, dicts and integer arithmetic (2**27)."""
    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Tuple):
            return tuple(ev(e) for e in node.elts)
        if isinstance(node, ast.List):
            return [ev(e) for e in node.elts]
        if isinstance(node, ast.Dict):
            return {ev(k): ev(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported constant expression {expr!r}")
    return ev(ast.parse(expr.strip(), mode="eval"))


def _constants() -> dict[str, tuple[object, str]]:
    out = {}
    for block in re.findall(r"```constants\n(.*?)```", TEXT, re.S):
        for line in block.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            name, rest = line.split("=", 1)
            expr, code = rest.rstrip().rsplit(None, 1)
            name = name.strip()
            assert name not in out, f"{name} is documented twice"
            out[name] = (_value(expr), code)
    return out


CONSTANTS = _constants()
DOC_VALUE = {name: value for name, (value, _) in CONSTANTS.items()}
#: the constants that are literals in the code, each checked by a test below
LITERALS = {"ENERGY_FLOOR", "NLMS_NORM_BITS", "NLMS_GAIN_SHIFT", "NLMS_SHIFT_OFFSET",
            "MODE_BITS", "ESCAPE_LENGTH_BITS", "DELTA_EXPONENT", "ANS_WORD_BITS",
            "ANS_STATE_BITS", "MIN_HOP", "MAX_HOP"}


def test_the_document_has_its_constants():
    assert len(CONSTANTS) > 40
    assert {n for n, (_, code) in CONSTANTS.items() if code == "-"} == LITERALS, (
        "a constant marked '-' needs a check in this file (or a code attribute)")


@pytest.mark.parametrize("name", sorted(n for n, (_, c) in CONSTANTS.items() if c != "-"))
def test_constant_matches_the_code(name):
    value, code = CONSTANTS[name]
    module, attr = code.rsplit(".", 1)
    actual = getattr(importlib.import_module(f"hybridcodec.{module}"), attr)
    if isinstance(actual, dict):
        actual = dict(actual)
    assert actual == value and type(actual) is type(value) or \
        (isinstance(value, (int, float)) and not isinstance(actual, bool) and actual == value), (
        f"docs/format.md says {name} = {value!r}, {code} is {actual!r}")


# -- the entropy coder, written from the document ---------------------------------------
PREC = DOC_VALUE["TABLE_PRECISION"]
WORD = DOC_VALUE["ANS_WORD_BITS"]
STATE = DOC_VALUE["ANS_STATE_BITS"]


class _Ans:
    """The decoder of "The entropy coder"."""

    def __init__(self, payload: bytes):
        self.w = [int(v) for v in np.frombuffer(payload, "<u4")]
        self.p, self.x = len(self.w), 0
        if self.p:
            self.p -= 1
            self.x = self.w[self.p]
            assert self.x != 0
            if self.p:
                self.p -= 1
                self.x = (self.x << WORD) | self.w[self.p]

    def decode(self, cdf) -> int:
        q = self.x & ((1 << PREC) - 1)
        s = int(np.searchsorted(np.asarray(cdf), q, side="right")) - 1
        self.x = (self.x >> PREC) * (int(cdf[s + 1]) - int(cdf[s])) + q - int(cdf[s])
        assert self.x < 1 << STATE
        if self.x < 1 << WORD and self.p:
            self.p -= 1
            self.x = (self.x << WORD) | self.w[self.p]
        return s

    def uniform(self, bits) -> list[int]:
        """A run U(k_0, k_1, ...), in rounds of UNIFORM_MAX_BITS-bit chunks."""
        chunk = DOC_VALUE["UNIFORM_MAX_BITS"]
        out, done = [0] * len(bits), 0
        while any(k > done for k in bits):
            for i, k in enumerate(bits):
                if k > done:
                    c = min(chunk, k - done)
                    out[i] |= self.decode(np.arange((1 << c) + 1) << (PREC - c)) << done
            done += chunk
        return out


def _fast_cdf(p) -> list[int]:
    """constriction's fast quantisation (Cat~), sequential binary64 sums."""
    p = [float(v) for v in p]
    total = 0.0
    for v in p:
        total += v
    scale = float((1 << PREC) - len(p)) / total
    out, c = [], 0.0
    for i, v in enumerate(p):
        out.append(int(c * scale) + i)
        c += v
    return out + [1 << PREC]


def _cdf_of(model, n, *params) -> list[int]:
    """constriction's CDF of a model: one symbol encoded on an empty coder leaves F[s]."""
    out = []
    for s in range(n):
        coder = constriction.stream.stack.AnsCoder()
        coder.encode_reverse(np.array([s], np.int32), model, *params)
        words = coder.get_compressed()
        out.append(int(words[0]) if len(words) else 0)
    return out + [1 << PREC]


def test_constriction_quantises_as_documented():
    from hybridcodec.entropy import _BINARY, _binary_weights, integer_model

    rng = np.random.default_rng(0)
    cat = constriction.stream.model.Categorical
    for n in (2, 3, 17, 40):
        p = rng.random(n) ** 3 * 1000
        assert _cdf_of(cat(p, perfect=False), n) == _fast_cdf(p)
        f = rng.integers(1, 5000, n)
        f[np.argmax(f)] += (1 << PREC) - f.sum()
        assert _cdf_of(integer_model(f), n) == [0] + np.cumsum(f).tolist()
    for p1 in (1, 2, 12345, 1 << 23, (1 << PREC) - 1):
        got = _cdf_of(_BINARY, 2, _binary_weights(np.array([p1])))
        assert got == [0, (1 << PREC) - p1, 1 << PREC]
    for p in (0.0, 0.3, 0.5, 1.0):
        bern = constriction.stream.model.Bernoulli(perfect=False)
        assert _cdf_of(bern, 2, np.array([p])) == _fast_cdf([1.0 - p, p])


def test_symbol_streams_decode_as_documented():
    """hybridcodec's SymbolWriter output read back with the documented decoder: runs of
    uniform values in rounds, integer categoricals, binary symbols, escapes."""
    from hybridcodec.entropy import SymbolWriter, integer_model, write_escapes

    rng = np.random.default_rng(1)
    w = SymbolWriter()
    bits = rng.integers(0, 49, 30)
    vals = np.array([int(rng.integers(0, 1 << 62)) & ((1 << int(b)) - 1) for b in bits],
                    np.int64)
    w.uniform(vals, bits)
    f = rng.integers(1, 3000, 9)
    f[np.argmax(f)] += (1 << PREC) - f.sum()
    sym = rng.integers(0, 9, 25)
    w.categorical(sym, integer_model(f))
    p1 = rng.integers(1, 1 << PREC, 20)
    bitsyms = (rng.random(20) < p1 / (1 << PREC)).astype(np.int64)
    w.binary(bitsyms, p1)
    m = np.array([5, 5, 7])
    q = np.array([-6 - 1000, 6 + 3, 8 + (1 << 40)])
    idx = np.array([0, 12, 16])
    write_escapes(w, idx, q, m)
    d = _Ans(w.finish())
    assert d.uniform([int(b) for b in bits]) == vals.tolist()
    cdf = [0] + np.cumsum(f).tolist()
    assert [d.decode(cdf) for _ in sym] == sym.tolist()
    assert [d.decode([0, (1 << PREC) - int(p), 1 << PREC]) for p in p1] == bitsyms.tolist()
    lengths = d.uniform([DOC_VALUE["ESCAPE_LENGTH_BITS"]] * 3)
    mant = d.uniform([k - 1 for k in lengths])
    excess = [v + (1 << (k - 1)) - 1 for v, k in zip(mant, lengths)]
    assert [-6 - excess[0], 6 + excess[1], 8 + excess[2]] == q.tolist()
    assert d.x == 0 and d.p == 0


def test_frame_parameters_as_documented():
    """Layer 0 of a real frame starts with U(MODE_BITS), U(SHIFT_BITS) x C, then (with
    shift_block) the flags, then per channel and band U(PLANES_BITS) and the classes."""
    from hybridcodec import framecodec
    from hybridcodec.lifting import band_lengths
    from hybridcodec.model import load_model

    net, _ = load_model(None)
    cfg = net.config
    rng = np.random.default_rng(2)
    n = 3000
    left = np.cumsum(rng.integers(-50, 50, n))
    pcm = np.stack([left, left + rng.integers(-3, 3, n)], axis=1) << 2
    code = framecodec.analyse_frame(net, pcm)
    layers = dict(framecodec.encode_frame(net, pcm))
    d = _Ans(layers[0])
    assert d.uniform([DOC_VALUE["MODE_BITS"]]) == [code.mode]
    assert d.uniform([DOC_VALUE["SHIFT_BITS"]] * 2) == list(code.shifts)
    for s in code.block_shifts:
        assert d.uniform([1]) == [int(s.any())]
        if s.any():
            assert d.uniform([DOC_VALUE["SHIFT_BITS"]] * s.size) == s.tolist()
    K = cfg.tables["num_classes"]
    coarse, details = band_lengths(n, cfg.levels)
    sizes = [coarse] + details[::-1]
    bands = code.channels[0]
    for b, size in enumerate(sizes):
        assert d.uniform([DOC_VALUE["PLANES_BITS"]]) == [bands[b].planes]
        level = cfg.levels + 1 - b
        block = max(cfg.min_block, cfg.block_time >> (level - 1))
        nb = -(-size // block)
        assert d.uniform([(K - 1).bit_length()]) == [bands[b].classes[0]]
        for i in range(1, nb):  # payload 4: the integer difference table
            delta = d.decode(np.concatenate([[0], np.cumsum(_delta_table(K))]))
            assert delta - (K - 1) == bands[b].classes[i] - bands[b].classes[i - 1]


def _delta_table(K: int) -> np.ndarray:
    """Payload 4's class-difference table from the document's formula."""
    d = np.abs(np.arange(-(K - 1), K, dtype=np.float64))
    p = (1.0 + d) ** -DOC_VALUE["DELTA_EXPONENT"]
    one = 1 << PREC
    g = np.maximum(1, np.floor(p / p.sum() * (one - p.size))).astype(np.int64)
    g[K - 1] += one - g.sum()
    return g


@pytest.mark.parametrize("K", [2, 3, 249, 1024])
def test_class_difference_tables(K):
    from hybridcodec.entropy import ScaleTables, TableSpec, _delta_probabilities, \
        build_tables, delta_frequencies

    assert np.array_equal(delta_frequencies(K), _delta_table(K))
    d = np.abs(np.arange(-(K - 1), K, dtype=np.float64))
    assert np.allclose(_delta_probabilities(K), (1.0 + d) ** -DOC_VALUE["DELTA_EXPONENT"],
                       rtol=1e-15)
    if K == 249:  # payload 2: constriction's quantisation of the float weights
        tables = ScaleTables(build_tables(TableSpec()), TableSpec())
        got = _cdf_of(tables._delta_model, 2 * K - 1)
        assert got == _fast_cdf((1.0 + d) ** -DOC_VALUE["DELTA_EXPONENT"])


# -- the cascade, written from the document -----------------------------------------------
def _cascade(values, feats, stages, phi, mode, silent=None, shifts=None, halfwidths=None,
             planes=0):
    C = DOC_VALUE
    clamp = lambda v, lim: max(-lim, min(lim, v))  # noqa: E731
    sign = lambda v: (v > 0) - (v < 0)  # noqa: E731

    def nlms_step(err, mu, total):
        bits = total.bit_length()
        nb = C["NLMS_NORM_BITS"]
        norm = total >> (bits - nb) if bits > nb else total << (nb - bits)
        return (err * mu << C["NLMS_GAIN_SHIFT"]) // norm, bits - C["NLMS_SHIFT_OFFSET"]

    S = len(stages)
    hist = [[0] * s[1] for s in stages]
    energy, w = [0] * S, [[0] * s[1] for s in stages]
    wf = [0] * len(feats[0])
    out = []
    for i in range(len(values)):
        f = [clamp(v, C["CLAMP"]) for v in feats[i]]
        fe = sum(v * v for v in f)
        preds = []
        for j in range(S):
            acc = (sum(a * b for a, b in zip(wf, f)) if j == 0 else 0) + \
                sum(a * b for a, b in zip(w[j], hist[j]))
            preds.append(clamp((acc + (1 << (C["W_BITS"] - 1))) >> C["W_BITS"], C["PRED_CLAMP"]))
        base = feats[i][0]
        inp = [0] * S
        if mode == "forward":
            e = values[i] - base
            for j in range(S):
                inp[j], e = e, e - preds[j]
            out.append(e)
        else:
            e = values[i]
            if mode == "closed":
                e = values[i] - base - sum(preds)
                b, m = shifts[i], halfwidths[i]
                if b < 0:
                    e = -base - sum(preds)
                elif 0 < (e >> b) + m + 1 < 2 * m + 2:
                    h = (1 << planes) >> 1
                    origin = m + 1 - h
                    t = (e >> b) + m + 1
                    centre = origin + (((t - origin) >> planes) << planes) + h
                    e = ((centre - m - 1) << b) + ((1 << b) >> 1)
            elif silent[i]:
                e = -base - sum(preds)
            for j in range(S - 1, -1, -1):
                e += preds[j]
                inp[j] = e
            out.append(e + base)
        floor = C["ENERGY_FLOOR"]
        for j, (kind, order, mu) in enumerate(stages):
            err = clamp(inp[j] - preds[j], C["CLAMP"])
            if err:
                if kind == C["NLMS"]:
                    shared = j == 0 and phi == 0
                    c, s = nlms_step(err, mu, floor + energy[j] + (fe if shared else 0))
                    if j == 0:
                        fc, fs = (c, s) if shared else nlms_step(err, phi, floor + fe)
                        wf = [clamp(a + ((fc * x + (1 << (fs - 1))) >> fs), C["W_CLAMP"])
                              for a, x in zip(wf, f)]
                    w[j] = [clamp(a + ((c * x + (1 << (s - 1))) >> s), C["W_CLAMP"])
                            for a, x in zip(w[j], hist[j])]
                else:
                    step = mu if err > 0 else -mu
                    if j == 0:
                        wf = [clamp(a + sign(x) * step, C["W_CLAMP"]) for a, x in zip(wf, f)]
                    w[j] = [clamp(a + sign(x) * step, C["W_CLAMP"]) for a, x in zip(w[j], hist[j])]
            if order:
                x = clamp(inp[j], C["CLAMP"])
                energy[j] += x * x - hist[j][-1] ** 2
                hist[j] = [x] + hist[j][:-1]
    return out


@pytest.mark.parametrize("phi", [0, 12])
def test_cascade_follows_the_document(phi):
    from hybridcodec.cascade import Cascade

    rng = np.random.default_rng(3 + phi)
    stages = [[0, 8, 26], [0, 4, 300], [1, 3, 8]]
    n = 400
    v = np.cumsum(rng.integers(-3000, 3000, n)).astype(np.int64)
    feats = np.stack([v // 3 + rng.integers(-500, 500, n), rng.integers(-9000, 9000, n),
                      np.roll(v, 1)], axis=1)
    cas = Cascade(stages, phi)
    r = cas.residuals(v, feats)
    assert r.tolist() == _cascade(v.tolist(), feats.tolist(), stages, phi, "forward")
    silent = rng.random(n) < 0.1
    assert cas.reconstruct(r, feats, silent).tolist() == _cascade(
        r.tolist(), feats.tolist(), stages, phi, "inverse", silent.tolist())
    shifts = rng.integers(0, 5, n)
    shifts[silent] = -1
    halfwidths = rng.integers(1, 40, n)
    _, anchor = cas.closed_loop(v, feats, shifts, halfwidths, 2)
    assert anchor.tolist() == _cascade(v.tolist(), feats.tolist(), stages, phi, "closed",
                                       shifts=shifts.tolist(),
                                       halfwidths=halfwidths.tolist(), planes=2)


def test_integer_nets_follow_the_document():
    from hybridcodec.intconv import IntConv

    rng = np.random.default_rng(4)
    frac = DOC_VALUE["FRAC_BITS"]
    for taps, left, hidden, n, out_len in [(8, 3, 0, 50, 25), (8, 4, 3, 7, 9), (16, 7, 2, 1, 4),
                                           (5, 1, 0, 3, 0)]:
        net = IntConv(taps, left, hidden, linear=rng.integers(-1 << 15, 1 << 15, taps),
                      w_in=rng.integers(-1 << 15, 1 << 15, (hidden, taps)),
                      w_out=rng.integers(-1 << 15, 1 << 15, hidden))
        x = rng.integers(-1 << 20, 1 << 20, n)
        want = []
        for i in range(out_len):
            X = [int(x[min(max(i - left + k, 0), n - 1)]) for k in range(taps)]
            a = sum(int(lw) * v for lw, v in zip(net.linear, X))
            for j in range(hidden):
                a += int(net.w_out[j]) * max(0, sum(int(c) * v for c, v in zip(net.w_in[j], X))
                                             >> frac)
            want.append((a + (1 << (frac - 1))) >> frac)
        assert net.predict(x, out_len).tolist() == want


def test_hop_limits():
    from hybridcodec.perceptual.grid import slot_hop

    assert slot_hop(1, 11.6) == DOC_VALUE["MIN_HOP"]
    assert slot_hop(1_000_000, 100.0) == DOC_VALUE["MAX_HOP"]
    assert slot_hop(44100, 11.6) == 512


# -- tables of the document -----------------------------------------------------------------
def _table_after(marker: str) -> list[list[str]]:
    """The rows of the first markdown table after ``marker``."""
    lines = TEXT[TEXT.index(marker):].splitlines()
    rows = []
    for line in lines if lines[0].startswith("|") else lines[1:]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                rows.append(cells)
        elif rows:
            break
    return rows[1:]  # without the heading


def test_layer_id_table():
    from hybridcodec.tiers import layer_order

    L, G = 4, 4
    got = {}
    for row in _table_after("For the shipped\nmodels (L = 4, A = 2, G = 4, 20 layers):"):
        for lid, what in ((row[0], row[1]), (row[2], row[3])):
            where, group = what.split(",", 1)
            band = 0 if where == "coarse" else L - int(where.split()[1]) + 1
            group = group.strip().split(" (")[0]
            g = 0 if group == "anchor" else G - 1 if group == "exact" else int(group.split()[1])
            got[int(lid)] = (band, g)
    assert [got[k] for k in range(len(got))] == layer_order(L, G)


def test_registries():
    from hybridcodec.format.registry import BUNDLED_MODELS, TIER_NAMES

    rows = _table_after("**Model registry** (header `model` byte):")
    assert {int(r[0]): r[1].strip("`") for r in rows} == BUNDLED_MODELS
    rows = _table_after("**Tier registry** (header tier kind 1")
    assert {int(r[0]): r[1].strip("`") for r in rows} == TIER_NAMES


def test_bundled_models():
    import json

    from hybridcodec.format.registry import BUNDLED_MODELS
    from hybridcodec.model import load_model

    models = Path(__file__).resolve().parents[1] / "hybridcodec" / "models"
    rows = _table_after("**Bundled models.**")
    assert len(rows) == len(BUNDLED_MODELS)
    for number, model_id, file, version, payload, _ in rows:
        model_id, file = model_id.strip("`"), file.strip("`")
        assert BUNDLED_MODELS[int(number)] == model_id
        net, got = load_model(models / file)
        assert got == model_id
        assert net.config.payload == int(payload)
        meta = json.loads(np.load(models / file)["meta"].tobytes())
        assert meta["version"] == int(version)
    assert load_model(None)[1] == BUNDLED_MODELS[max(BUNDLED_MODELS)]


def test_envelope_grid_table():
    from itertools import groupby

    from hybridcodec.model import DEFAULT_ENVELOPE
    from hybridcodec.perceptual.grid import envelope_grid

    rows = _table_after("| rate | H | B | levels | band edges (bins) |")
    assert len(rows) == 15
    for rate, hop, bands, levels, edges in [[r[0], r[1], r[2], r[3], r[4]] for r in rows]:
        g = envelope_grid(int(rate), 4, DEFAULT_ENVELOPE["slot_ms"],
                          DEFAULT_ENVELOPE["erb_per_band"])
        assert g.hop == int(hop) and g.num_bands == int(bands)
        assert levels == " ".join(f"{len(list(v))}×{k}" for k, v in groupby(g.band_level))
        assert [int(e) for e in edges.split()] == \
            [lo for lo, _ in g.band_bins] + [g.band_bins[-1][1]]
