"""The container (Part 1 of docs/format.md): version 4 (normal and compact layouts) and
the version 1-3 container. A strict reader of a whole stream held in memory: it checks
every CRC, sync, count and the rules a lossless decode relies on, and returns the header
facts and every frame's layer payloads."""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field

from .ans import Corrupt

MAGIC = b"HYBC"
SUPPORTED_VERSIONS = (1, 2, 3, 4)
RATES = (None, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200,
         96000, 176400, 192000, 384000)
CONTAINERS = ("WAV", "FLAC", "AIFF", "AIFF-C", "W64", "RF64", "CAF", "RAW", "WAVEX")
SUBTYPES = ("PCM_16", "PCM_24", "PCM_S8", "PCM_U8", "PCM_32")
MODEL_REGISTRY = {1: "e40987291b5fd215", 2: "ccd651dbb62662d7", 3: "966f00cb4bbff40b"}
TIER_REGISTRY = {1: "high", 2: "medium", 3: "low", 4: "tiny"}
# version 4 frame flags
UNLISTED_EMPTY, ONE_UNIT, SIMPLE = 1, 2, 4
V4_END_SIZE = 42
LEGACY_END_SIZE = 34


@dataclass
class Header:
    version: int
    sample_rate: int
    channels: int
    bits_per_sample: int
    num_samples: int
    frame_length: int
    model_id: str
    levels: int
    groups: int  # G, precision groups per band
    num_layers: int  # version 4: (levels + 1) * G; versions 1-3: the prefix carried
    segment_length: int  # version 4 only (versions 1-3: frame_length)
    complete: bool  # lossless: every frame carries every layer in full
    tier: str
    container_name: str = ""
    subtype_name: str = ""
    extension: dict = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return -(-self.num_samples // self.frame_length)


@dataclass
class Unit:
    first: int
    count: int
    state: int
    cuts: list  # c_1 .. c_m (words)
    slopes: list
    payload: bytes

    def segments(self, S: int) -> int:
        return S if self.state <= 1 else self.state - 1


@dataclass
class Frame:
    index: int
    num_samples: int
    layers: dict | None = None  # versions 1-3: layer id -> payload
    units: list | None = None  # version 4
    flags: int = 0


@dataclass
class Stream:
    header: Header
    frames: list
    md5: bytes
    metadata: bytes | None = None
    compact: bool = False
    has_index: bool = False


class _Bytes:
    """A cursor over the stream's bytes; running out is a truncated stream."""

    def __init__(self, data: bytes, pos: int = 0):
        self.data, self.pos = data, pos

    def take(self, n: int, where: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Corrupt(f"truncated stream: {where}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def u(self, size: int, where: str) -> int:
        return int.from_bytes(self.take(size, where), "little")

    def varint(self, where: str, limit: int = (1 << 64) - 1) -> int:
        value = shift = 0
        for i in range(10):
            b = self.u(1, where)
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                if b == 0 and i > 0:
                    raise Corrupt(f"{where}: a varint that is not minimal")
                break
        else:
            raise Corrupt(f"{where}: a varint longer than 10 bytes")
        if value > (1 << 64) - 1 or value > limit:
            raise Corrupt(f"{where}: value {value} above its limit {limit}")
        return value

    def remaining(self) -> int:
        return len(self.data) - self.pos


def _crc(data: bytes) -> int:
    return zlib.crc32(data) & 0xFFFFFFFF


def _check_crc(buf: _Bytes, start: int, where: str) -> None:
    body = buf.data[start:buf.pos]
    stored = buf.u(4, where)
    if stored != _crc(body):
        raise Corrupt(f"CRC mismatch: {where}")


def _strict_json(text: bytes, where: str) -> dict:
    if text.startswith(b"\xef\xbb\xbf"):
        raise Corrupt(f"corrupt header: {where} starts with a byte-order mark")

    def no_dupes(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise Corrupt(f"corrupt header: duplicate key {k!r} in {where}")
            out[k] = v
        return out

    def bad_constant(name):
        raise Corrupt(f"corrupt header: {name} in {where}")

    try:
        obj = json.loads(text.decode("utf-8"), object_pairs_hook=no_dupes,
                         parse_constant=bad_constant)
    except Corrupt:
        raise
    except ValueError as exc:
        raise Corrupt(f"corrupt header: invalid {where} ({exc})") from None
    if type(obj) is not dict:
        raise Corrupt(f"corrupt header: {where} is not an object")
    return obj


# ------------------------------------------------------------------ version 4
def _v4_header_body(buf: _Bytes, version: int, flags: int) -> Header:
    w = "header chunk"
    code = buf.u(1, w)
    if code == 0:
        rate = buf.varint(w, 1_000_000)
        if rate == 0 or rate in RATES[1:]:
            raise Corrupt("corrupt header: rate")
    elif code <= 15:
        rate = RATES[code]
    else:
        raise Corrupt("corrupt header: rate code")
    fmt = buf.u(2, w)
    channels = (fmt & 7) + 1
    depth = (fmt >> 3) & 31
    ccode, scode = (fmt >> 8) & 15, (fmt >> 12) & 15
    names = []
    for code_, table in ((ccode, CONTAINERS), (scode, SUBTYPES)):
        if code_ == 15:
            n = buf.varint(w, 255)
            name = buf.take(n, w)
            if n == 0 or any(not 0x20 <= c <= 0x7E for c in name):
                raise Corrupt("corrupt header: a format name")
            name = name.decode("ascii")
            if name in table:
                raise Corrupt("corrupt header: a name written out that has a code")
            names.append(name)
        else:
            if code_ >= len(table):
                raise Corrupt("corrupt header: a reserved container or subtype code")
            names.append(table[code_])
    num_samples = buf.varint(w, (1 << 40) - 1)
    mnum = buf.u(1, w)
    if mnum == 0:
        model_id = buf.take(8, w).hex()
    else:
        model_id = None
    frame = buf.u(1, w)
    structure = buf.u(1, w)
    segment = buf.u(1, w)
    kind = buf.u(1, w)
    tier = "lossless"
    if kind == 1:
        tcode = buf.u(1, w)
        tier = TIER_REGISTRY.get(tcode, f"tier {tcode}")
    elif kind == 2:
        target = buf.varint(w, (1 << 32) - 1)
        if target == 0:
            raise Corrupt("corrupt header: tier rate target")
        tier = f"{target / 10:g}kbps"
    elif kind != 0:
        raise Corrupt("corrupt header: tier kind")
    ext_len = buf.varint(w, 65535)
    ext = buf.take(ext_len, w)
    # the caller checks the CRC; then every other constraint
    hdr = dict(rate=rate, depth=depth, frame=frame, structure=structure, segment=segment,
               kind=kind, mnum=mnum, model_id=model_id, ext=ext, channels=channels,
               names=names, num_samples=num_samples, tier=tier)
    return hdr


def _v4_finish_header(h: dict, version: int) -> Header:
    if h["depth"] > 16:
        raise Corrupt("corrupt header: bits per sample")
    if h["frame"] & 0xE0 or (h["frame"] & 31) > 20:
        raise Corrupt("corrupt header: frame")
    log_n = h["frame"] & 31
    frame_length = 1 << log_n
    levels, groups = h["structure"] & 15, h["structure"] >> 4
    if not 1 <= groups <= 15 or (levels + 1) * groups > 64:
        raise Corrupt("corrupt header: structure")
    if not log_n - 10 <= h["segment"] <= log_n:
        raise Corrupt("corrupt header: segment")
    if -(-h["num_samples"] // frame_length) > (1 << 32) - 1:
        raise Corrupt("corrupt header: num_samples")
    if h["mnum"]:
        if h["mnum"] not in MODEL_REGISTRY:
            raise Corrupt(f"unsupported: model number {h['mnum']} (upgrade)")
        model_id = MODEL_REGISTRY[h["mnum"]]
    else:
        model_id = h["model_id"]
    extension = _strict_json(h["ext"], "extension") if h["ext"] else {}
    return Header(version=version, sample_rate=h["rate"], channels=h["channels"],
                  bits_per_sample=h["depth"] + 8, num_samples=h["num_samples"],
                  frame_length=frame_length, model_id=model_id, levels=levels, groups=groups,
                  num_layers=(levels + 1) * groups, segment_length=1 << h["segment"],
                  complete=h["kind"] == 0, tier=h["tier"],
                  container_name=h["names"][0], subtype_name=h["names"][1], extension=extension)


def _cut_table(buf: _Bytes, m: int, where: str) -> list:
    """c_1 .. c_m from c_m, then c_j - c_{j+1} for j = m-1 down to 1."""
    if m <= 0:
        return []
    cuts = [0] * (m + 1)
    cuts[m] = buf.varint(where, (1 << 30) - 1)
    for j in range(m - 1, 0, -1):
        cuts[j] = cuts[j + 1] + buf.varint(where, (1 << 30) - 1)
    return cuts[1:]


def _state_and_cuts(buf, S, where, count):
    if count != 1:
        return 0, [], 1
    state = buf.varint(where, S)
    if state == 0:
        return 0, [], 1
    if state == 1:
        return 1, _cut_table(buf, S - 1, where), S
    k = state - 1
    if k >= S:
        raise Corrupt(f"{where}: state {state} with {S} segments")
    return state, _cut_table(buf, k - 1, where), k


def _unit_table(buf: _Bytes, flags: int, num_layers: int, S: int, where: str, compact: bool):
    """[(first, count, length or None, state, cuts, slopes)]; compact: the last unit's
    length is left out (None)."""
    if flags & ~7:
        raise Corrupt(f"{where}: reserved frame flags")
    units = []
    if flags & ONE_UNIT and flags & SIMPLE:
        length = None if compact else buf.varint(where, (1 << 30) - 1)
        units.append([0, num_layers, length, 0, [], [0]])
    elif flags & ONE_UNIT:
        length = None if compact else buf.varint(where, (1 << 30) - 1)
        state, cuts, nslopes = (_state_and_cuts(buf, S, where, 1) if num_layers == 1
                                else (0, [], 1))
        slopes = list(buf.take(nslopes, where))
        units.append([0, num_layers, length, state, cuts, slopes])
    elif flags & SIMPLE:
        mask = buf.varint(where, (1 << num_layers) - 1)
        ids = [k for k in range(num_layers) if mask >> k & 1]
        for i, k in enumerate(ids):
            last = compact and i == len(ids) - 1
            length = None if last else buf.varint(where, (1 << 30) - 1)
            units.append([k, 1, length, 0, [], [0]])
    else:
        n = buf.varint(where, num_layers)
        end = 0
        for i in range(n):
            first = end + buf.varint(where, num_layers)
            count = buf.varint(where, num_layers)
            if count < 1 or first + count > num_layers:
                raise Corrupt(f"{where}: unit layer range")
            last = compact and i == n - 1
            length = None if last else buf.varint(where, (1 << 30) - 1)
            state, cuts, nslopes = _state_and_cuts(buf, S, where, count)
            slopes = list(buf.take(nslopes, where))
            units.append([first, count, length, state, cuts, slopes])
            end = first + count
    return units


def _read_payloads(buf, table, where, last_length=None):
    units = []
    for first, count, length, state, cuts, slopes in table:
        if length is None:
            length = last_length
        payload = buf.take(4 * length, where)
        if cuts and cuts[0] > length:
            raise Corrupt(f"{where}: a cut beyond its payload")
        units.append(Unit(first, count, state, cuts, slopes, payload))
    return units


def _check_complete(units, flags, header, where):
    if not header.complete:
        return
    covered = set()
    for u in units:
        if u.state >= 2:
            raise Corrupt(f"{where}: a truncated unit in a complete stream")
        covered.update(range(u.first, u.first + u.count))
    if not flags & UNLISTED_EMPTY and len(covered) != header.num_layers:
        raise Corrupt(f"{where}: a complete stream's frame does not carry every layer")


def _read_v4(data: bytes) -> Stream:
    buf = _Bytes(data)
    buf.take(4, "header chunk")
    version = buf.u(1, "header chunk")
    flags = buf.u(1, "header chunk")
    if flags & ~3:
        raise Corrupt("corrupt header: reserved flag bits")
    compact, has_index = bool(flags & 1), bool(flags & 2)
    h = _v4_header_body(buf, version, flags)
    if compact:
        if has_index:
            raise Corrupt("corrupt header: COMPACT with HAS_INDEX")
        if len(data) < buf.pos + 4 or _crc(data[:-4]) != int.from_bytes(data[-4:], "little"):
            raise Corrupt("CRC mismatch: compact stream")
        header = _v4_finish_header(h, version)
        n = header.num_samples
        if not 0 < n <= header.frame_length:
            raise Corrupt("compact stream: not exactly one frame")
        body = _Bytes(data[:-4], buf.pos)
        md5 = body.take(16, "compact stream")
        fflags = body.u(1, "compact stream")
        S = -(-n // header.segment_length)
        table = _unit_table(body, fflags, header.num_layers, S, "compact stream", compact=True)
        rest = body.remaining() - sum(4 * t[2] for t in table if t[2] is not None)
        if table:
            if rest < 0 or rest % 4:
                raise Corrupt("compact stream: the last payload is not whole words")
            units = _read_payloads(body, table, "compact stream", rest // 4)
        elif rest:
            raise Corrupt("compact stream: bytes after a frame without units")
        else:
            units = []
        _check_complete(units, fflags, header, "compact stream")
        return Stream(header, [Frame(0, n, units=units, flags=fflags)], md5, compact=True)
    start = 0
    _check_crc(buf, start, "header")
    header = _v4_finish_header(h, version)
    metadata = None
    if data[buf.pos:buf.pos + 2] == b"HM":
        metadata = _read_metadata(buf)
    frames, offsets = [], []
    for i in range(header.num_frames):
        offsets.append(buf.pos)
        start = buf.pos
        where = f"frame {i}"
        if buf.take(2, where) != b"HF":
            raise Corrupt(f"{where}: bad sync")
        index = buf.varint(where, (1 << 32) - 2)
        n = buf.varint(where, header.frame_length)  # 1 .. frame_length (0: after the CRC)
        fflags = buf.u(1, where)
        S = max(1, -(-min(n, header.frame_length) // header.segment_length))
        table = _unit_table(buf, fflags, header.num_layers, S, where, compact=False)
        _check_crc(buf, start, f"frame {i} header")
        want = min(header.frame_length, header.num_samples - i * header.frame_length)
        if index != i or n != want:
            raise Corrupt(f"{where}: frame index or sample count")
        pstart = buf.pos
        units = _read_payloads(buf, table, where)
        _check_crc(buf, pstart, f"frame {i} payload")
        _check_complete(units, fflags, header, where)
        frames.append(Frame(i, n, units=units, flags=fflags))
    index_offset = 0
    if has_index:
        index_offset = buf.pos
        start = buf.pos
        if buf.take(2, "index chunk") != b"HI":
            raise Corrupt("index chunk: bad sync")
        count = buf.varint("index chunk", (1 << 32) - 1)
        if count != header.num_frames:
            raise Corrupt("index chunk: frame count")
        got = []
        if count:
            got.append(buf.varint("index chunk"))
            for _ in range(count - 1):
                got.append(got[-1] + buf.varint("index chunk", 1 << 40))
        _check_crc(buf, start, "index chunk")
        if got != offsets:
            raise Corrupt("index chunk: offsets are not where the frames are")
    start = buf.pos
    if buf.take(2, "end chunk") != b"HE":
        raise Corrupt("end chunk: bad sync")
    nf = buf.u(4, "end chunk")
    ns = buf.u(8, "end chunk")
    io_ = buf.u(8, "end chunk")
    md5 = buf.take(16, "end chunk")
    _check_crc(buf, start, "end chunk")
    if nf != header.num_frames or ns != header.num_samples or io_ != index_offset:
        raise Corrupt("end chunk: counts or index offset")
    if buf.remaining():
        raise Corrupt("trailing bytes after the end chunk")
    return Stream(header, frames, md5, metadata, compact=False, has_index=has_index)


def _read_metadata(buf: _Bytes) -> bytes:
    """The metadata chunk (versions 3 and 4): kept as bytes; a lossless decode of the PCM
    does not need it, so only its length and CRC are checked here."""
    start = buf.pos
    buf.take(2, "metadata chunk")
    length = buf.u(4, "metadata chunk")
    if not 1 <= length <= 1 << 26:
        raise Corrupt("metadata chunk: length out of range")
    blob = buf.take(length, "metadata chunk")
    _check_crc(buf, start, "metadata chunk")
    return blob


# ------------------------------------------------------------------ versions 1-3
def _text(obj, key):
    v = obj.get(key)
    if type(v) is not str or not 1 <= len(v) <= 255 or not v.isprintable():
        raise Corrupt(f"corrupt header: {key}")
    return v


def _integer(obj, key, lo, hi):
    v = obj.get(key)
    if type(v) is not int or not lo <= v <= hi:
        raise Corrupt(f"corrupt header: {key}")
    return v


def _read_legacy(data: bytes, version: int) -> Stream:
    buf = _Bytes(data)
    buf.take(6, "header chunk")
    json_len = buf.u(2, "header chunk")
    obj = _strict_json(buf.take(json_len, "header chunk"), "header JSON")
    _check_crc(buf, 0, "header")
    model_id = _text(obj, "model_id")
    if len(model_id) != 16 or any(c not in "0123456789abcdef" for c in model_id):
        raise Corrupt("corrupt header: model_id")
    frame_length = _integer(obj, "frame_length", 1, 1 << 20)
    num_samples = _integer(obj, "num_samples", 0, (1 << 40) - 1)
    if -(-num_samples // frame_length) > (1 << 32) - 1:
        raise Corrupt("corrupt header: num_samples")
    levels = _integer(obj, "levels", 0, 16)
    num_layers = _integer(obj, "num_layers", 1, 64)
    groups = obj.get("layer_groups", 1)
    if type(groups) is not int or not 1 <= groups <= 15 or num_layers > (levels + 1) * groups:
        raise Corrupt("corrupt header: layer_groups")
    tier = _text(obj, "tier")
    header = Header(version=version, sample_rate=_integer(obj, "sample_rate", 1, 1_000_000),
                    channels=_integer(obj, "channels", 1, 8),
                    bits_per_sample=_integer(obj, "bits_per_sample", 8, 24),
                    num_samples=num_samples, frame_length=frame_length, model_id=model_id,
                    levels=levels, groups=groups, num_layers=num_layers,
                    segment_length=frame_length,
                    complete=num_layers == (levels + 1) * groups,  # every layer carried
                    tier=tier, container_name=_text(obj, "source_format"),
                    subtype_name=_text(obj, "subtype"))
    metadata = None
    if version >= 3 and data[buf.pos:buf.pos + 2] == b"HM":
        metadata = _read_metadata(buf)
    frames = []
    for i in range(header.num_frames):
        where = f"frame {i}"
        start = buf.pos
        if buf.take(2, where) != b"HF":
            raise Corrupt(f"{where}: bad sync")
        index = buf.u(4, where)
        n = buf.u(4, where)
        nl = buf.u(1, where)
        if not 1 <= nl <= num_layers:
            raise Corrupt(f"{where}: num_layers")
        table = [(buf.u(1, where), buf.u(4, where)) for _ in range(nl)]
        _check_crc(buf, start, f"frame {i} header")
        want = min(frame_length, num_samples - i * frame_length)
        if index != i or n != want:
            raise Corrupt(f"{where}: frame index or sample count")
        ids = [k for k, _ in table]
        if ids[0] != 0 or any(b <= a for a, b in zip(ids, ids[1:])) or ids[-1] >= num_layers:
            raise Corrupt(f"{where}: layer table")
        layers = {}
        for k, length in table:
            p = buf.pos
            layers[k] = buf.take(length, where)
            _check_crc(buf, p, f"frame {i} layer id {k}")
        frames.append(Frame(i, n, layers=layers))
    start = buf.pos
    if buf.take(2, "end chunk") != b"HE":
        raise Corrupt("end chunk: bad sync")
    nf = buf.u(4, "end chunk")
    ns = buf.u(8, "end chunk")
    md5 = buf.take(16, "end chunk")
    _check_crc(buf, start, "end chunk")
    if nf != header.num_frames or ns != num_samples:
        raise Corrupt("end chunk: counts")
    if buf.remaining():
        raise Corrupt("trailing bytes after the end chunk")
    return Stream(header, frames, md5, metadata)


def read_stream(data: bytes) -> Stream:
    if len(data) < 4 or data[:4] != MAGIC:
        raise Corrupt("not a hybridcodec stream (bad magic)")
    if len(data) < 5:
        raise Corrupt("truncated stream: header chunk")
    version = data[4]
    if version not in SUPPORTED_VERSIONS:
        raise Corrupt(f"unsupported version {version}")
    return _read_v4(data) if version == 4 else _read_legacy(data, version)
