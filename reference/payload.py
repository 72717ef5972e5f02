"""The layer payloads (Part 2 of docs/format.md): frame parameters and channels, scale
classes, precision groups, prior mean and features, wavelet synthesis, the layered
payload (model payload 2) and the segmented payload (payload 4) with its band-energy
envelope. Lossless decoding only: every layer carried in full."""

from __future__ import annotations

import numpy as np

from . import cascade
from .ans import ONE, Corrupt, Reader, cdf_from_frequencies

MEAN_CLAMP = 1 << 26
SHIFT_BITS = 5
PLANES_BITS = 3
MODE_BITS = 2
ESCAPE_LENGTH_BITS = 6
ESCAPE_MAX_BITS = 48
ENVELOPE_RANGE = 12
ENVELOPE_ESCAPE_BITS = 10
ENVELOPE_FIRST_BITS = 8
ENVELOPE_QMAX = 255
TOP_HZ = 20000.0


# ------------------------------------------------------------------ wavelet
def band_sizes(n: int, L: int) -> list[int]:
    """Sizes of bands 0 .. L (coarse band first, then detail levels L down to 1)."""
    details = []
    for _ in range(L):
        details.append(n // 2)
        n -= n // 2
    return [n] + details[::-1]


def synthesise_level(model, level: int, s, d) -> np.ndarray:
    """synthesise_level(lambda, s', d), level = lambda."""
    even = s - model.update[level - 1].conv(d, s.size)
    odd = d + model.predict[level - 1].conv(even, d.size)
    out = np.empty(even.size + odd.size, np.int64)
    out[0::2] = even
    out[1::2] = odd
    return out


# ------------------------------------------------------------------ frame parameters
def read_frame_parameters(r0: Reader, model, n: int, C: int):
    mode = r0.uniform(MODE_BITS)
    wasted = r0.run([SHIFT_BITS] * C)
    B = model.config["shift_block"]
    blocks = []
    if B > 0:
        nb = -(-n // B)
        for _ in range(C):
            flag = r0.uniform(1)
            blocks.append(r0.run([SHIFT_BITS] * nb) if flag else [0] * nb)
    if mode != 0 and C != 2:
        raise Corrupt("stereo mode with C != 2")
    for c in range(C):
        if wasted[c] > 24 or (blocks and max(blocks[c], default=0) + wasted[c] > 24):
            raise Corrupt("wasted bits above 24")
    return mode, wasted, blocks


def undo_channels(model, signals, mode, wasted, blocks, n):
    B = model.config["shift_block"]
    if B > 0:
        signals = [y << np.repeat(np.array(blk, np.int64), B)[:n] for y, blk in zip(signals, blocks)]
    if len(signals) == 2 and mode:
        a, b = signals
        if mode == 1:
            signals = [a, a - b]
        elif mode == 2:
            signals = [a + b, a]
        else:
            r = a - (b >> 1)
            signals = [b + r, r]
    return np.stack([y << int(w) for y, w in zip(signals, wasted)], axis=1)


# ------------------------------------------------------------------ scale classes
def read_classes(r0: Reader, model, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, np.int64)
    K = model.K
    cls = [r0.uniform(model.class_bits)]  # beta = bit_length(K - 1) <= 10
    F = model.delta_cdf
    for _ in range(count - 1):
        cls.append(cls[-1] + r0.cdf(F) - (K - 1))
    cls = np.array(cls, np.int64)
    if cls.min() < 0 or cls.max() >= K:
        raise Corrupt("a scale class out of range")
    return cls


# ------------------------------------------------------------------ precision groups
def read_slice(readers, model, per: np.ndarray, P: int):
    """The coefficients of one band slice from its G group readers (groups 0 .. A+1).
    per: the class of each coefficient. Returns (r_anchor, r)."""
    A = model.A
    n = per.size
    r_anchor = np.zeros(n, np.int64)
    r_exact = np.zeros(n, np.int64)
    coded = np.flatnonzero(per != 0).tolist()
    if not coded:
        return r_anchor, r_exact
    cls = per[coded].tolist()
    g0 = readers[0]
    # group 0: anchor symbols, class by class in increasing k, each class's in index order
    sym = [0] * len(coded)
    by_class = {}
    for i, k in enumerate(cls):
        by_class.setdefault(k, []).append(i)
    for k in sorted(by_class):
        F = model.anchor_table(k, P)[0]
        for i in by_class[k]:
            sym[i] = g0.cdf(F)
    Ms = [int(model.half[k]) for k in cls]
    bs = [int(model.shift[k]) for k in cls]
    tabs = [model.anchor_table(k, P) for k in cls]
    escaped = [i for i in range(len(coded)) if sym[i] == 0 or sym[i] == tabs[i][3] + 1]
    # escapes: the bit lengths, then the values below their top bit, then the low bits
    lengths = g0.run([ESCAPE_LENGTH_BITS] * len(escaped))
    if any(not 1 <= l <= ESCAPE_MAX_BITS for l in lengths):
        raise Corrupt("an escape length outside 1 .. 48")
    rest = g0.run([l - 1 for l in lengths])
    lows = g0.run([bs[i] for i in escaped])
    for i, l, v, low in zip(escaped, lengths, rest, lows):
        e = v + (1 << (l - 1)) - 1
        q = Ms[i] + 1 + e if sym[i] else -Ms[i] - 1 - e
        r_anchor[coded[i]] = r_exact[coded[i]] = (q << bs[i]) + low
    # the others: the anchor residual is the centre of the bin
    h = (1 << P) >> 1
    plain = [i for i in range(len(coded)) if sym[i] != 0 and sym[i] != tabs[i][3] + 1]
    if not plain:
        return r_anchor, r_exact
    idx = np.array([coded[i] for i in plain], np.intp)
    origin = np.array([tabs[i][1] for i in plain], np.int64)
    jbin = np.array([sym[i] - 1 + tabs[i][2] for i in plain], np.int64)
    M = np.array([Ms[i] for i in plain], np.int64)
    b = np.array([bs[i] for i in plain], np.int64)
    lo = origin + (jbin << P)
    r_anchor[idx] = ((lo + h - M - 1) << b) + ((1 << b) >> 1)
    # refinement planes p = P-1 .. 0 in groups A - p; S(lo, hi) from the running sums
    # of each class's frequencies, both bounds clipped to 1 .. 2M + 2
    off = model.offset[per[idx]]
    top = 2 * M + 2
    cum = model.cum

    def S(a, z):
        return cum[off + np.clip(z, 1, top)] - cum[off + np.clip(a, 1, top)]

    for p in range(P - 1, -1, -1):
        rd = readers[A - p]
        w = 1 << p
        up, down = S(lo + w, lo + 2 * w), S(lo, lo + w)
        coded_bit = (up > 0) & (down > 0)
        if model.exact:  # Bin(clip((U << 24) // (U + D), 1, 2^24 - 1))
            p1 = np.clip((up << 24) // np.maximum(up + down, 1), 1, ONE - 1)
        else:  # Bern~(fl(U / (U + D))): F[1] = floor(fl(fl(1 - p) * sigma)) + 1
            prob = up / np.maximum(up + down, 1).astype(np.float64)
            q0 = 1.0 - prob
            sigma = float(ONE - 2) / (q0 + prob)
            p1 = ONE - (np.floor(q0 * sigma).astype(np.int64) + 1)
        bits = (up > 0).astype(np.int64)  # implied bits (nothing coded)
        for t in np.flatnonzero(coded_bit).tolist():
            bits[t] = rd.binary(int(p1[t]))
        lo = lo + (bits << p)
    # group A + 1: the low bits of the non-escaped coefficients
    lows = np.array(readers[A + 1].run(b.tolist()), np.int64)
    r_exact[idx] = ((lo - M - 1) << b) + lows
    return r_anchor, r_exact


# ------------------------------------------------------------------ features
def features(model, band: int, s_anchor, size: int, ref) -> np.ndarray:
    """The feature rows F (size x nf) of band b: prior mean, cross-channel, coarse band."""
    L = model.L
    cols = []
    if band == 0:
        cols.append(np.zeros(size, np.int64))
    else:
        level = L - band + 1
        mu = model.means[level - 1].conv(s_anchor, size)
        cols.append(np.clip(mu, -MEAN_CLAMP, MEAN_CLAMP))
    i = np.arange(size)
    if ref is not None and ref.size:
        for o in (-1, 0, 1):
            cols.append(ref[np.clip(i + o, 0, ref.size - 1)])
    T = model.config["coarse_taps"]
    if band >= 1 and T > 0 and size > 0:
        s = s_anchor
        m = s.size
        k = np.arange(m)
        hp = 2 * s - s[np.clip(k - 1, 0, m - 1)] - s[np.clip(k + 1, 0, m - 1)]
        for j in range(T):
            cols.append(hp[np.clip(i - (T // 2 - 1) + j, 0, m - 1)])
    return np.stack(cols, axis=1) if cols else np.zeros((size, 0), np.int64)


def run_cascade(model, band: int, r_anchor, F, silent) -> np.ndarray:
    stages = model.config["coarse_cascade"] if band == 0 else model.config["detail_cascade"]
    return cascade.inverse(stages, model.config["feature_mu"], r_anchor, F, silent)


def _classes_per_coefficient(model, band, classes, size):
    return np.repeat(classes, model.block(band))[:size]


# ------------------------------------------------------------------ layered payload
def decode_layered(model, layers: dict, n: int, C: int) -> np.ndarray:
    """layers: layer id -> payload bytes (a layer absent here is empty)."""
    L, G = model.L, model.G
    readers = {k: Reader(layers.get(k, b"")) for k in range(model.num_layers)}
    r0 = readers[0]
    mode, wasted, blocks = read_frame_parameters(r0, model, n, C)
    sizes = band_sizes(n, L)
    signals = []
    previous = None  # the previous coded channel's anchor values, per band
    for c in range(C):
        planes, classes = [], []
        for b, size in enumerate(sizes):
            planes.append(r0.uniform(PLANES_BITS))
            classes.append(read_classes(r0, model, -(-size // model.block(b))))
        if max(planes) > model.A:
            raise Corrupt("more anchor planes than the model has")
        anchors = []
        s_anchor = s_value = None
        for b, size in enumerate(sizes):
            per = _classes_per_coefficient(model, b, classes[b], size)
            group_readers = [readers[model.layer_of[(b, g)]] for g in range(G)]
            ra, rx = read_slice(group_readers, model, per, planes[b])
            ref = previous[b] if (previous is not None and model.config["cross_channel"]) else None
            F = features(model, b, s_anchor, size, ref)
            anchor = run_cascade(model, b, ra, F, per == 0)
            value = anchor + (rx - ra)
            anchors.append(anchor)
            if b == 0:
                s_anchor, s_value = anchor, value
            else:
                s_anchor = synthesise_level(model, L - b + 1, s_anchor, anchor)
                s_value = synthesise_level(model, L - b + 1, s_value, value)
        signals.append(s_value)
        previous = anchors
    for k, rd in readers.items():
        if not rd.at_end():
            raise Corrupt(f"layer {k}: data left over")
    return undo_channels(model, signals, mode, wasted, blocks, n)


# ------------------------------------------------------------------ band-energy envelope
def _erb(f):
    return 21.4 * np.log10(1.0 + 0.00437 * np.asarray(f, np.float64))


def _erb_inverse(e):
    return (10.0 ** (np.asarray(e, np.float64) / 21.4) - 1.0) / 0.00437


def envelope_grid(rate: int, L: int, slot_ms: float, erb_per_band: float):
    """(hop H, number of bands B, the level of every band)."""
    H = 2 ** int(np.clip(np.round(np.log2(max(rate * slot_ms / 1000.0, 1.0))), 4, 12))
    df = rate / (2 * H)
    nyq = H
    f_lo = rate / 2 ** (L + 1)
    f_top = min(rate / 2, TOP_HZ)
    edges = []
    if f_top > f_lo:
        count = max(1, int(np.round((_erb(f_top) - _erb(f_lo)) / erb_per_band)))
        edges = _erb_inverse(np.linspace(_erb(f_lo), _erb(f_top), count + 1)).tolist()
    bins = sorted({int(np.ceil(f / df - 1e-6)) for f in edges})
    bins = [min(max(b, 1), nyq + 1) for b in bins]
    if rate / 2 > TOP_HZ:
        bins.append(nyq + 1)
    elif bins:
        bins[-1] = nyq + 1
    bands = [(lo, hi) for lo, hi in zip(bins[:-1], bins[1:]) if hi > lo]
    levels = []
    for lo, hi in bands:
        centre = (lo + hi - 1) / 2 * df
        level = int(np.floor(np.log2(rate / 2 / max(centre, 1e-9)))) + 1
        levels.append(min(max(level, 1), max(L, 1)))
    return H, len(bands), levels


def read_envelope(r0: Reader, model, levels, slots: int) -> np.ndarray:
    env = model.config["envelope"]
    B = len(levels)
    q = np.zeros((B, slots), np.int64)
    if B * slots == 0:
        return q
    cls = [0 if lv <= env["fine_levels"] else 1 for lv in levels]
    res = (env["fine"], env["coarse"])
    step = [float(res[k]["step"]) for k in cls]
    dec = [int(res[k]["decimate"]) for k in cls]
    tables = (cdf_from_frequencies(model.arrays["envelope_fine"].tolist()),
              cdf_from_frequencies(model.arrays["envelope_coarse"].tolist()))
    lens = [-(-slots // d) for d in dec]
    flat = r0.run([1] * B)
    first0 = r0.uniform(ENVELOPE_FIRST_BITS)
    counts = [0, 0]
    for b in range(B):
        counts[cls[b]] += (1 if b else 0) + (0 if flat[b] else lens[b] - 1)
    diffs = []
    for k in (0, 1):
        d = [r0.cdf(tables[k]) - (ENVELOPE_RANGE + 1) for _ in range(counts[k])]
        esc = [i for i, v in enumerate(d) if abs(v) > ENVELOPE_RANGE]
        excess = r0.run([ENVELOPE_ESCAPE_BITS] * len(esc))
        for i, x in zip(esc, excess):
            d[i] = (ENVELOPE_RANGE + 1 + x) * (1 if d[i] > 0 else -1)
        diffs.append(iter(d))
    first_prev = None
    for b in range(B):
        k = cls[b]
        if b == 0:
            first = first0
        else:
            pred = round(first_prev * step[b - 1] / step[b])  # binary64, half to even
            first = pred + next(diffs[k])
        seq = [first]
        if flat[b]:
            seq *= lens[b]
        else:
            for _ in range(lens[b] - 1):
                seq.append(seq[-1] + next(diffs[k]))
        first_prev = first
        if min(seq) < 0 or max(seq) > ENVELOPE_QMAX:
            raise Corrupt("an envelope value outside 0 .. 255")
        q[b] = np.repeat(np.array(seq, np.int64), dec[b])[:slots]
    return q


# ------------------------------------------------------------------ segmented payload
def check_segments(model, held: dict, S: int) -> None:
    """The rules of "What a frame may carry" (held: layer id -> segments held)."""
    k = lambda b, g: held.get(model.layer_of[(b, g)], 0)  # noqa: E731
    if k(0, 0) != S:
        raise Corrupt("layer 0 does not hold every segment")
    for b in range(model.L + 1):
        for g in range(1, model.G):
            if k(b, g) > k(b, g - 1):
                raise Corrupt("a refinement reaches past its anchor")
        if b >= 1 and k(b, 0) > 0 and not (k(b - 1, 0) == S or k(b, 0) <= k(b - 1, 0) - 1):
            raise Corrupt("a band's anchor reaches past the band above's")


def decode_segmented(model, units, n: int, C: int, rate: int, last: bool):
    """units: the frame's units (first, count, state, payload). Lossless: every layer
    complete. Returns (pcm, envelope q per channel)."""
    L, G = model.L, model.G
    sigma = model.config["segment_length"]
    S = max(1, -(-n // sigma))
    readers = {}
    all_readers = []
    held = {}
    for u in units:
        if u.first + u.count > model.num_layers:
            raise Corrupt("a unit beyond the model's layers")
        rd = Reader(u.payload)
        all_readers.append((u, rd))
        segs = S if u.state <= 1 else u.state - 1
        if u.count > 1 and segs != S:
            raise Corrupt("a unit of several layers that does not hold every segment")
        for k in range(u.first, u.first + u.count):
            if k in readers:
                raise Corrupt("a layer covered twice")
            readers[k] = rd
            held[k] = segs
    for k in range(model.num_layers):
        if k not in readers:
            # lossless: a layer no unit covers is empty and complete (UNLISTED_EMPTY; the
            # container checked that a complete stream's frames have it or cover all)
            readers[k] = Reader(b"")
            held[k] = S
    check_segments(model, held, S)
    if any(v != S for v in held.values()):
        raise Corrupt("a truncated layer: not a lossless stream")
    r0 = readers[0]
    mode, wasted, blocks = read_frame_parameters(r0, model, n, C)
    sizes = band_sizes(n, L)
    planes = [[0] * (L + 1) for _ in range(C)]
    classes = [[None] * (L + 1) for _ in range(C)]
    for c in range(C):
        for b, size in enumerate(sizes):
            planes[c][b] = r0.uniform(PLANES_BITS)
            classes[c][b] = read_classes(r0, model, -(-size // model.block(b)))
    if C and max(max(p) for p in planes) > model.A:
        raise Corrupt("more anchor planes than the model has")
    env = model.config["envelope"]
    H, _, levels = envelope_grid(rate, L, float(env["slot_ms"]), float(env["erb_per_band"]))
    slots = -(-n // H) + (1 if last else 0)
    envelope = [read_envelope(r0, model, levels, slots) for _ in range(C)]
    s_anchor = [None] * C
    s_value = [None] * C
    for b, size in enumerate(sizes):
        beta = L if b == 0 else L - b + 1
        bounds = [min((j * sigma) >> beta, size) for j in range(S + 1)]
        per = [_classes_per_coefficient(model, b, classes[c][b], size) for c in range(C)]
        ra = [np.zeros(size, np.int64) for _ in range(C)]
        rx = [np.zeros(size, np.int64) for _ in range(C)]
        group_readers = [readers[model.layer_of[(b, g)]] for g in range(G)]
        for j in range(S):
            lo, hi = bounds[j], bounds[j + 1]
            for c in range(C):
                ra[c][lo:hi], rx[c][lo:hi] = read_slice(group_readers, model, per[c][lo:hi], planes[c][b])
        anchors = []
        for c in range(C):
            ref = anchors[c - 1] if (c >= 1 and model.config["cross_channel"]) else None
            F = features(model, b, s_anchor[c], size, ref)
            anchor = run_cascade(model, b, ra[c], F, per[c] == 0)
            value = anchor + (rx[c] - ra[c])
            anchors.append(anchor)
            if b == 0:
                s_anchor[c], s_value[c] = anchor, value
            else:
                s_anchor[c] = synthesise_level(model, L - b + 1, s_anchor[c], anchor)
                s_value[c] = synthesise_level(model, L - b + 1, s_value[c], value)
    for u, rd in all_readers:
        if not rd.at_end():
            raise Corrupt(f"unit of layers {u.first} .. {u.first + u.count - 1}: data left over")
    return undo_channels(model, s_value, mode, wasted, blocks, n), envelope


def check_layered_v4(model, units) -> dict:
    """Version 4 units of a payload 2 model: single-layer, complete units (a unit of
    several layers only if empty); the carried layers a prefix of the order with layer 0."""
    layers = {}
    for u in units:
        if u.state >= 2:
            raise Corrupt("a truncated unit in a layered payload")
        if u.count > 1 and u.payload:
            raise Corrupt("a non-empty unit of several layers in a layered payload")
        for k in range(u.first, u.first + u.count):
            layers[k] = u.payload if u.count == 1 else b""
    return layers
