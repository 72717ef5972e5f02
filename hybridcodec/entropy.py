"""Entropy layer: integer residuals <-> bytes with constriction's ANS coder.

A band's residuals are coded with a discretized logistic (mixture) whose scale comes
from a *scale class*: an integer index into a table set that the model file carries
(CompressAI's scale-table idea), so only integers decide which probabilities the coder
sees. The encoder picks one class per block of coefficients (forward adaptation, sent as
side information); all coefficients of a class share one fixed table, so a band is coded
by a handful of vectorized constriction calls, not a per-sample loop.

Large scales would need huge alphabets, so class k codes ``q = r >> b_k`` with a table
and the ``b_k`` low bits as uniform symbols: at ``scale / 2**b_k >= 8`` the distribution
is flat inside a bin to within a few thousandths of a bit. Values beyond the table's
range take an escape symbol followed by an Elias-gamma code.
"""

from __future__ import annotations

from dataclasses import dataclass

import constriction
import numpy as np

from .errors import CorruptStreamError

_model = constriction.stream.model
_UNIFORM = _model.Uniform()
_BINARY = _model.Categorical(perfect=False)  # a family: weights per symbol
_BERNOULLI = _model.Bernoulli(perfect=False)
UNIFORM_MAX_BITS = 16
ZERO_CLASS = 0  # a block whose residuals are all zero: costs no bits but its class index
TABLE_PRECISION = 24
ESCAPE_MAX_BITS = 48


@dataclass(frozen=True)
class TableSpec:
    """Parameters of the scale-class table set (stored in the model file)."""

    classes_per_octave: int = 8
    min_log2_scale: float = -3.0
    num_classes: int = 249  # class 0 = all-zero block; classes 1.. span 2**-3 .. 2**28
    range_in_scales: float = 20.0
    mixture_weights: tuple[float, ...] = (1.0,)
    mixture_scales: tuple[float, ...] = (1.0,)  # relative to the class scale


def _binary_weights(p1: np.ndarray) -> np.ndarray:
    """constriction weights (see :func:`integer_model`) for integer P(1) = p1 / 2**24."""
    p1 = np.asarray(p1, np.int64)
    return np.stack([(1 << TABLE_PRECISION) - p1 - 1, p1 - 1], axis=1).astype(np.float64)


def integer_model(freq: np.ndarray):
    """A constriction model whose frequencies are exactly the integers ``freq``.

    ``freq`` must hold at least two entries, each >= 1, summing to 2**TABLE_PRECISION.
    constriction's ``Categorical(perfect=False)`` turns weights ``p`` into the fixed-point
    CDF ``floor(cum(p) * (2**24 - K) / sum(p)) + i``; with ``p = freq - 1`` the scale is
    exactly 1 and that CDF is exactly the cumulative sum of ``freq``, so the integers the
    format defines are the ones that reach the coder.
    """
    f = np.asarray(freq, np.int64)
    if f.ndim != 1 or f.size < 2 or f.min() < 1 or int(f.sum()) != 1 << TABLE_PRECISION:
        raise ValueError("an integer model needs >= 2 frequencies >= 1 summing to 2**24")
    return _model.Categorical((f - 1).astype(np.float64), perfect=False)


def logistic_mixture_cdf(x: np.ndarray, scale: float, spec: TableSpec) -> np.ndarray:
    """CDF of a zero-mean logistic mixture; only used when *building* tables."""
    total = np.zeros_like(x, dtype=np.float64)
    wsum = sum(spec.mixture_weights)
    for w, rel in zip(spec.mixture_weights, spec.mixture_scales):
        total += (w / wsum) * 0.5 * (1.0 + np.tanh(x / (2.0 * scale * rel)))
    return total


def build_tables(spec: TableSpec, normalise: bool = False) -> dict[str, np.ndarray]:
    """Integer frequency tables for every class, as arrays to store in a model file.

    ``normalise``: every class's frequencies sum to exactly 2**TABLE_PRECISION (the
    largest entry absorbs the rounding), as format 4's integer models require.
    """
    shifts, halfwidths, offsets, freqs = [0], [0], [0], []
    pos = 0
    for k in range(1, spec.num_classes):
        scale = 2.0 ** (spec.min_log2_scale + (k - 1) / spec.classes_per_octave)
        b = max(0, int(np.floor(np.log2(scale))) - 3)
        m = int(np.ceil(spec.range_in_scales * scale / 2**b)) + 1
        q = np.arange(-m, m + 1, dtype=np.float64)
        edges = np.concatenate([q * 2**b - 0.5, [(m + 1) * 2**b - 0.5]])
        cdf = logistic_mixture_cdf(edges, scale, spec)
        p = np.concatenate([[cdf[0]], np.diff(cdf), [1.0 - cdf[-1]]])
        f = np.maximum(1, np.round(p * 2**TABLE_PRECISION)).astype(np.int64)
        if normalise:
            f[np.argmax(f)] += (1 << TABLE_PRECISION) - int(f.sum())
        offsets.append(pos)
        shifts.append(b)
        halfwidths.append(m)
        freqs.append(f)
        pos += f.size
    return {
        "table_shift": np.array(shifts, np.int64),
        "table_halfwidth": np.array(halfwidths, np.int64),
        "table_offset": np.array(offsets, np.int64),
        "table_freq": np.concatenate(freqs),
    }


class ScaleTables:
    """The table set in coding form: constriction models and per-symbol costs."""

    def __init__(self, arrays: dict[str, np.ndarray], spec: TableSpec,
                 exact: bool = False) -> None:
        self.spec = spec
        # exact (format 4): each class's integers reach the coder unchanged (they sum to
        # 2**TABLE_PRECISION); else constriction rescales them (formats 1-3).
        self.exact = exact
        self.shift = arrays["table_shift"].astype(np.int64)
        self.halfwidth = arrays["table_halfwidth"].astype(np.int64)
        self.offset = arrays["table_offset"].astype(np.int64)
        self.freq = arrays["table_freq"].astype(np.int64)
        self.num_classes = self.shift.size
        self._models: dict[int, object] = {}
        sizes = 2 * self.halfwidth + 3
        sizes[0] = 0
        self.size = sizes
        # Bits per table entry, used by the encoder only (to choose classes).
        self._cost = np.empty(self.freq.size, np.float64)
        for k in range(1, self.num_classes):
            f = self.freq[self.offset[k]: self.offset[k] + sizes[k]]
            self._cost[self.offset[k]: self.offset[k] + sizes[k]] = (
                np.log2(f.sum()) - np.log2(f) + self.shift[k])
        if exact:  # format 4: the model file carries the class-difference table
            self._delta_model = integer_model(arrays["table_delta"])
        else:
            self._delta_model = _model.Categorical(
                _delta_probabilities(self.num_classes), perfect=False)

    def model(self, k: int):
        """The constriction model of class k (built once)."""
        m = self._models.get(k)
        if m is None:
            f = self.freq[self.offset[k]: self.offset[k] + self.size[k]]
            m = integer_model(f) if self.exact else _model.Categorical(
                f.astype(np.float64), perfect=False)
            self._models[k] = m
        return m

    def symbol_index(self, r: np.ndarray, classes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(table index clipped to the escapes, q) of residuals r under their classes."""
        q = r >> self.shift[classes]
        m = self.halfwidth[classes]
        return np.clip(q + m + 1, 0, 2 * m + 2), q

    def block_costs(self, r: np.ndarray, classes: np.ndarray) -> np.ndarray:
        """Approximate bits of each residual under its class (escapes priced at 2x)."""
        idx, q = self.symbol_index(r, classes)
        cost = self._cost[self.offset[classes] + idx]
        esc = (idx == 0) | (idx == 2 * self.halfwidth[classes] + 2)
        if esc.any():
            cost[esc] += 2 * np.log2(2.0 + np.abs(q[esc]))
        return cost


def delta_frequencies(num_classes: int) -> np.ndarray:
    """Format 4's integer table for class differences (sum 2**TABLE_PRECISION)."""
    p = _delta_probabilities(num_classes)
    total = 1 << TABLE_PRECISION
    f = np.maximum(1, np.floor(p / p.sum() * (total - p.size))).astype(np.int64)
    f[np.argmax(f)] += total - int(f.sum())
    return f


def _delta_probabilities(num_classes: int) -> np.ndarray:
    d = np.abs(np.arange(-(num_classes - 1), num_classes, dtype=np.float64))
    return 1.0 / (1.0 + d) ** 2.5


class SymbolWriter:
    """Collects coding operations in *decode* order; ``finish`` runs them reversed (ANS is LIFO)."""

    def __init__(self) -> None:
        self._ops: list[tuple] = []
        self._marks: list[int] = []

    def mark(self) -> None:
        """A truncation point: what was written before it can be decoded on its own."""
        self._marks.append(len(self._ops))

    def extend(self, other: "SymbolWriter") -> None:
        """Append another writer's operations (its marks are dropped)."""
        self._ops.extend(other._ops)

    def categorical(self, symbols: np.ndarray, model) -> None:
        if symbols.size:
            self._ops.append((symbols.astype(np.int32), model, None))

    def binary(self, bits: np.ndarray, p1: np.ndarray) -> None:
        """Binary symbols with per-symbol P(1) = p1 / 2**TABLE_PRECISION, p1 an integer in
        1 .. 2**TABLE_PRECISION - 1 (exactly these integers reach the coder)."""
        if bits.size:
            self._ops.append((bits.astype(np.int32), _BINARY, _binary_weights(p1)))

    def bernoulli(self, bits: np.ndarray, p: np.ndarray) -> None:
        """Binary symbols with per-symbol P(1) (floats derived from integers only)."""
        if bits.size:
            self._ops.append((bits.astype(np.int32), _BERNOULLI, np.asarray(p, np.float64)))

    def uniform(self, values: np.ndarray, bits: np.ndarray) -> None:
        """Values < 2**bits (per symbol, any bits up to 48), as 16-bit uniform chunks."""
        values = values.astype(np.int64)
        bits = np.asarray(bits, np.int64)
        if bits.ndim == 0:
            bits = np.full(values.size, int(bits), np.int64)
        while values.size:
            keep = bits > 0
            values, bits = values[keep], bits[keep]
            if not values.size:
                break
            chunk = np.minimum(bits, UNIFORM_MAX_BITS)
            self._ops.append(((values & ((1 << chunk) - 1)).astype(np.int32), _UNIFORM,
                              (1 << chunk).astype(np.int32)))
            values, bits = values >> chunk, bits - chunk

    def finish(self) -> bytes:
        return self.finish_with_cuts()[0]

    def finish_with_cuts(self) -> tuple[bytes, tuple[int, ...]]:
        """(payload, cuts): ``cuts[j - 1]`` is the word offset at which the suffix of the
        payload that decodes everything written before mark j starts (j = 1 .. marks).

        ANS is a stack: the operations are encoded last first, so the words that the
        first operations need are the last ones written, and a suffix of the words,
        taken where the encoder stood just after encoding the first operation past the
        mark, decodes the operations before it (the two words of the coder's final
        state are not yet in the word buffer at that point, hence the ``- 2``).
        """
        coder = constriction.stream.stack.AnsCoder()
        marks = sorted(set(self._marks))
        before = {}
        for i in range(len(self._ops) - 1, -1, -1):
            symbols, model, params = self._ops[i]
            if params is None:
                coder.encode_reverse(symbols, model)
            else:
                coder.encode_reverse(symbols, model, params)
            before[i] = coder.num_words()
        words = coder.get_compressed()
        total = len(words)
        cuts = []
        for m in self._marks:
            # words in the buffer once every operation at index >= m was encoded
            n = before.get(m, 0) if m < len(self._ops) else 0
            cuts.append(min(max(0, n - 2), total))
        return words.astype("<u4").tobytes(), tuple(cuts)


class SymbolReader:
    """Decodes what a :class:`SymbolWriter` wrote, in the same order."""

    def __init__(self, payload: bytes, what: str) -> None:
        if len(payload) % 4:
            raise CorruptStreamError(f"{what}: payload length {len(payload)} is not whole words")
        self.what = what
        words = np.frombuffer(payload, "<u4").astype(np.uint32)
        # constriction refuses some word streams outright (one that ends in a zero
        # word): damage behind a valid CRC, so a corrupt payload like any other.
        self._coder = self._guard(lambda: constriction.stream.stack.AnsCoder(words))

    def categorical(self, count: int, model) -> np.ndarray:
        if count == 0:
            return np.zeros(0, np.int64)
        return self._guard(lambda: self._coder.decode(model, count)).astype(np.int64)

    def binary(self, p1: np.ndarray) -> np.ndarray:
        if p1.size == 0:
            return np.zeros(0, np.int64)
        return self._guard(lambda: self._coder.decode(_BINARY, _binary_weights(p1))).astype(
            np.int64)

    def bernoulli(self, p: np.ndarray) -> np.ndarray:
        if p.size == 0:
            return np.zeros(0, np.int64)
        return self._guard(lambda: self._coder.decode(_BERNOULLI, p)).astype(np.int64)

    def uniform(self, count: int, bits) -> np.ndarray:
        bits = np.asarray(bits, np.int64)
        if bits.ndim == 0:
            bits = np.full(count, int(bits), np.int64)
        out = np.zeros(count, np.int64)
        done = np.zeros(count, np.int64)
        active = np.flatnonzero(bits > 0)
        while active.size:
            chunk = np.minimum(bits[active] - done[active], UNIFORM_MAX_BITS)
            sizes = (1 << chunk).astype(np.int32)
            vals = self._guard(lambda: self._coder.decode(_UNIFORM, sizes)).astype(np.int64)
            out[active] |= vals << done[active]
            done[active] += chunk
            active = active[done[active] < bits[active]]
        return out

    def finish(self) -> None:
        """Every word must have been consumed: leftovers mean a damaged or foreign payload."""
        if not self._coder.is_empty() or self._coder.num_words():
            raise CorruptStreamError(f"{self.what}: data left over after decoding")

    def _guard(self, fn):
        try:
            return fn()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # constriction panics derive from BaseException
            raise CorruptStreamError(f"{self.what}: undecodable payload ({type(exc).__name__})") from None


def choose_classes(r: np.ndarray, block: int, tables: ScaleTables) -> np.ndarray:
    """Encoder: the cheapest class for every block of ``block`` residuals."""
    n = r.size
    if n == 0:
        return np.zeros(0, np.int64)
    nb = -(-n // block)
    pad = nb * block - n
    rb = np.concatenate([r, np.zeros(pad, np.int64)]).reshape(nb, block)
    counts = np.full(nb, block)
    counts[-1] = block - pad
    mean_abs = np.abs(rb).sum(axis=1) / counts
    # E|r| = 2 ln2 * scale for a logistic: start there and search the neighbourhood.
    guess = np.log2(np.maximum(mean_abs, 1e-9) / (2 * np.log(2)))
    spec = tables.spec
    k0 = np.rint((guess - spec.min_log2_scale) * spec.classes_per_octave).astype(np.int64) + 1
    best = np.zeros(nb, np.int64)
    best_cost = np.full(nb, np.inf)
    valid = (np.arange(block)[None, :] < counts[:, None])
    for delta in range(-3, 4):
        k = np.clip(k0 + delta, 1, tables.num_classes - 1)
        cost = tables.block_costs(rb.ravel(), np.repeat(k, block)).reshape(nb, block)
        total = (cost * valid).sum(axis=1)
        better = total < best_cost
        best[better], best_cost[better] = k[better], total[better]
    best[np.abs(rb).max(axis=1) == 0] = ZERO_CLASS
    return best


def write_classes(w: SymbolWriter, classes: np.ndarray, tables: ScaleTables) -> None:
    """A band's scale envelope: the first class, then deltas (count known to the decoder)."""
    if classes.size == 0:
        return
    k = tables.num_classes
    w.uniform(classes[:1], int(k - 1).bit_length())
    w.categorical(np.diff(classes) + (k - 1), tables._delta_model)


def read_classes(rd: SymbolReader, num_blocks: int, tables: ScaleTables) -> np.ndarray:
    """Inverse of :func:`write_classes`."""
    if num_blocks == 0:
        return np.zeros(0, np.int64)
    k = tables.num_classes
    first = rd.uniform(1, int(k - 1).bit_length())
    deltas = rd.categorical(num_blocks - 1, tables._delta_model) - (k - 1)
    classes = np.cumsum(np.concatenate([first, deltas]))
    if classes.min() < 0 or classes.max() >= k:
        raise CorruptStreamError(f"{rd.what}: scale class out of range")
    return classes


def write_escapes(w: SymbolWriter, idx, q, m) -> None:
    esc = np.flatnonzero((idx == 0) | (idx == 2 * m + 2))
    if not esc.size:
        return
    v = np.where(idx[esc] == 0, -m[esc] - 1 - q[esc], q[esc] - m[esc] - 1) + 1
    nbits = np.array([int(x).bit_length() for x in v], np.int64)
    w.uniform(nbits, 6)
    w.uniform(v - (1 << (nbits - 1)), nbits - 1)


def read_escapes(rd: SymbolReader, idx, q, m):
    esc = np.flatnonzero((idx == 0) | (idx == 2 * m + 2))
    if not esc.size:
        return q
    nbits = rd.uniform(esc.size, 6)
    if nbits.min() < 1 or nbits.max() > ESCAPE_MAX_BITS:
        raise CorruptStreamError(f"{rd.what}: escape code out of range")
    v = rd.uniform(esc.size, nbits - 1) + (1 << (nbits - 1)) - 1
    q = q.copy()
    q[esc] = np.where(idx[esc] == 0, -m[esc] - 1 - v, m[esc] + 1 + v)
    return q
