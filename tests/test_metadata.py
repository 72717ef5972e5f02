"""Metadata through encode and decode (hybridcodec/metadata.py, docs/format.md "Metadata").

Sources are real files: audio written by libsndfile, then FLAC blocks and RIFF / AIFF
chunks put in by mutagen, by ``metaflac`` (where installed) or by hand, byte by byte as
their specs say. What comes back is compared block by block and chunk by chunk with
small walkers written here, independently of the codec's own.
"""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC, CueSheet, Picture, VCFLACDict

import hybridcodec
from hybridcodec import cli
from hybridcodec import metadata as md
from hybridcodec.container import StreamReader, StreamWriter
from hybridcodec.errors import CorruptStreamError, UnsupportedAudioError

RATE = 8000
N = 3000  # samples: a fraction of one frame, so that each encode is quick


# --------------------------------------------------------------------------- file builders


def pcm(channels: int = 2, bits: int = 16, n: int = N, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    x = 0.3 * np.sin(2 * np.pi * 220 * t / RATE + np.arange(channels)) \
        + 0.01 * rng.standard_normal((n, channels))
    return np.round(x * (2 ** (bits - 1) - 1)).astype(np.int32)


def png(width: int, height: int, seed: int = 0) -> bytes:
    """A real PNG (8-bit RGB, noise, so that it stays a few kB)."""
    rng = np.random.default_rng(seed)
    rows = b"".join(b"\0" + rng.integers(0, 256, width * 3, dtype=np.uint8).tobytes()
                    for _ in range(height))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))


def flac_blocks(path) -> list[tuple[int, bytes]]:
    """Every metadata block of a FLAC file, (type, body), in order."""
    data = Path(path).read_bytes()
    assert data[:4] == b"fLaC"
    pos, out = 4, []
    while True:
        head = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 4], "big")
        out.append((head & 0x7F, data[pos + 4:pos + 4 + length]))
        pos += 4 + length
        if head & 0x80:
            return out


def kept_blocks(path) -> list[tuple[int, bytes]]:
    return [(t, b) for t, b in flac_blocks(path) if t not in (0, 1, 3)]


def set_flac_blocks(path, blocks: list[tuple[int, bytes]]) -> None:
    """Replace a FLAC file's blocks after STREAMINFO by ``blocks``."""
    data = Path(path).read_bytes()
    original = flac_blocks(path)
    pos = 4 + sum(4 + len(b) for _, b in original)
    all_blocks = [original[0]] + blocks
    head = b"fLaC" + b"".join(
        bytes([t | (0x80 if i == len(all_blocks) - 1 else 0)]) + len(b).to_bytes(3, "big") + b
        for i, (t, b) in enumerate(all_blocks))
    Path(path).write_bytes(head + data[pos:])


def vorbis(vendor: str, pairs) -> bytes:
    vc = VCFLACDict()
    vc.vendor = vendor
    for pair in pairs:
        vc.append(pair)
    return vc.write()


def picture(kind: int, mime: str, desc: str, data: bytes, size=(0, 0)) -> bytes:
    pic = Picture()
    pic.type, pic.mime, pic.desc, pic.data = kind, mime, desc, data
    pic.width, pic.height, pic.depth = size[0], size[1], 24
    return pic.write()


def cuesheet(tracks: list[int]) -> bytes:
    """A CUESHEET block body (FLAC format, "METADATA_BLOCK_CUESHEET"): CD-DA, one index
    per track, then the lead-out track 170."""
    body = b"1234567890123".ljust(128, b"\0") + struct.pack(">Q", 88200) + b"\x80" + bytes(258)
    body += bytes([len(tracks) + 1])
    for number, offset in enumerate(tracks, 1):
        body += struct.pack(">QB", offset, number) + b"ABCDE1234567" + b"\0" + bytes(13)
        body += b"\x01" + struct.pack(">QB", 0, 1) + bytes(3)
    body += struct.pack(">QB", N, 170) + bytes(12) + b"\0" + bytes(13) + b"\0"
    return body


TAGS = [("TITLE", "A title with ünïcödé"), ("ARTIST", "First"), ("ARTIST", "Second"),
        ("ALBUM", "Album"), ("REPLAYGAIN_TRACK_GAIN", "-3.20 dB"), ("title", "lower-case key"),
        ("COMMENT", "line one\nline two")]


def tagged_flac(path, *, with_cuesheet: bool = True) -> list[tuple[int, bytes]]:
    """A FLAC file with every kind of block; returns the blocks a decode must restore."""
    sf.write(path, pcm() << 16, RATE, subtype="PCM_16", format="FLAC")
    pictures = [picture(3, "image/png", "front", png(40, 30, 1), (40, 30)),
                picture(4, "image/png", "back", png(24, 24, 2), (24, 24))]
    blocks = [(4, vorbis("some encoder 1.0", TAGS)), (1, bytes(100)), (6, pictures[0]),
              (2, b"tEst" + b"application data"), (6, pictures[1]), (9, b"\x01\x02\x03"),
              (3, bytes(18))]
    if with_cuesheet:
        blocks.insert(4, (5, cuesheet([0, 1500])))
    set_flac_blocks(path, blocks)
    assert len(pictures[0]) > 3000
    return [(t, b) for t, b in blocks if t not in (1, 3)]


def riff_chunks(path) -> list[tuple[bytes, bytes]]:
    data = Path(path).read_bytes()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    pos, out = 12, []
    while pos < len(data):
        cid, length = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        out.append((cid, data[pos + 8:pos + 8 + length]))
        pos += 8 + length + (length & 1)
    assert pos == len(data)
    return out


def riff(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(cid + struct.pack("<I", len(b)) + b + b"\0" * (len(b) & 1)
                    for cid, b in chunks)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WAVE" + body


def info_list(pairs) -> bytes:
    out = b"INFO"
    for cid, text in pairs:
        value = text.encode() + b"\0"
        out += cid + struct.pack("<I", len(value)) + value + b"\0" * (len(value) & 1)
    return out


def bext() -> bytes:
    """A BWF bext chunk (EBU Tech 3285 v1): description, originator, date, time, ..."""
    return (b"A description".ljust(256, b"\0") + b"hybridcodec tests".ljust(32, b"\0")
            + b"REF-0001".ljust(32, b"\0") + b"2024-01-02" + b"12:34:56"
            + struct.pack("<QH", 123456789, 1) + bytes(64) + bytes(190) + b"A=PCM,F=8000\r\n")


def nonmeta(chunks):
    return [(c, b) for c, b in chunks if c not in (b"fmt ", b"fact", b"data", b"JUNK")]


def tagged_wav(path) -> list[tuple[bytes, bytes]]:
    """A WAV file with LIST/INFO, bext, iXML, cue, smpl, an unknown chunk, JUNK and two
    chunks after the data; returns all chunks in order."""
    plain = Path(path).with_suffix(".plain.wav")
    sf.write(plain, pcm() << 16, RATE, subtype="PCM_16", format="WAV")
    fmt, data = dict(riff_chunks(plain))[b"fmt "], dict(riff_chunks(plain))[b"data"]
    chunks = [
        (b"JUNK", bytes(28)),
        (b"bext", bext()),
        (b"fmt ", fmt),
        (b"LIST", info_list([(b"INAM", "Wave title"), (b"IART", "Wave artist"),
                             (b"ICMT", "odd"), (b"IENG", "An engineer")])),
        (b"iXML", b"<?xml version='1.0'?><BWFXML><PROJECT>p</PROJECT></BWFXML>"),
        (b"cue ", struct.pack("<I", 1) + struct.pack("<II4sIII", 1, 0, b"data", 0, 0, 1000)),
        (b"smpl", bytes(36)),
        (b"abcd", b"unknown chunk, odd size"),
        (b"data", data),
        (b"LIST", b"adtl" + b"labl" + struct.pack("<I", 8) + struct.pack("<I", 1) + b"cue\0"),
        (b"id3 ", b"ID3\x03\x00\x00\x00\x00\x00\x00"),
    ]
    Path(path).write_bytes(riff(chunks))
    return chunks


def aiff_chunks(path) -> list[tuple[bytes, bytes]]:
    data = Path(path).read_bytes()
    assert data[:4] == b"FORM" and data[8:12] in (b"AIFF", b"AIFC")
    assert struct.unpack_from(">I", data, 4)[0] == len(data) - 8
    pos, out = 12, []
    while pos < len(data):
        cid, length = data[pos:pos + 4], struct.unpack_from(">I", data, pos + 4)[0]
        out.append((cid, data[pos + 8:pos + 8 + length]))
        pos += 8 + length + (length & 1)
    assert pos == len(data)
    return out


def tagged_aiff(path) -> list[tuple[bytes, bytes]]:
    plain = Path(path).with_suffix(".plain.aiff")
    sf.write(plain, pcm() << 16, RATE, subtype="PCM_16", format="AIFF")
    found = dict(aiff_chunks(plain))
    chunks = [
        (b"COMM", found[b"COMM"]),
        (b"NAME", b"Aiff name"),
        (b"AUTH", b"Aiff author"),
        (b"(c) ", b"2024 someone"),
        (b"ANNO", b"first annotation"),
        (b"ANNO", b"second"),
        (b"MARK", struct.pack(">HHI", 1, 1, 100) + b"\x04mark\0"),
        (b"SSND", found[b"SSND"]),
        (b"APPL", b"test" + b"application specific"),
        (b"ID3 ", b"ID3\x03\x00\x00\x00\x00\x00\x00"),
    ]
    body = b"".join(c + struct.pack(">I", len(b)) + b + b"\0" * (len(b) & 1) for c, b in chunks)
    Path(path).write_bytes(b"FORM" + struct.pack(">I", 4 + len(body)) + b"AIFF" + body)
    return chunks


def extensible_wav(path, mask: int = 0x60F, channels: int = 6, bits: int = 24) -> bytes:
    """A WAVE_FORMAT_EXTENSIBLE file (5.1 side by default); returns its fmt body."""
    x = pcm(channels, bits)
    width = bits // 8
    fmt = struct.pack("<HHIIHHHHI16s", 0xFFFE, channels, RATE, RATE * channels * width,
                      channels * width, bits, 22, bits, mask,
                      bytes.fromhex("0100000000001000800000aa00389b71"))
    data = x.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :width].tobytes()
    Path(path).write_bytes(riff([(b"fmt ", fmt), (b"data", data)]))
    assert sf.info(str(path)).format == "WAVEX"
    return fmt


def same_pcm(a, b) -> bool:
    return np.array_equal(sf.read(str(a), dtype="int32")[0], sf.read(str(b), dtype="int32")[0])


def roundtrip(src, out, tmp_path, **decode_kw):
    stream = tmp_path / "s.hyb"
    enc = hybridcodec.encode(src, stream, overwrite=True)
    dec = hybridcodec.decode(stream, out, overwrite=True, **decode_kw)
    assert dec.md5_ok is True and not dec.warnings and same_pcm(src, out)
    return enc, dec


def stream_metadata(path) -> md.Metadata | None:
    with open(path, "rb") as fp:
        blob = StreamReader(fp).header.metadata
    return None if blob is None else md.parse_metadata(blob)


def run_cli(argv):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main([str(a) for a in argv], stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


# --------------------------------------------------------------------------- same container


def test_flac_blocks_come_back_byte_identical(tmp_path):
    src = tmp_path / "in.flac"
    expected = tagged_flac(src)
    out = tmp_path / "out.flac"
    enc, dec = roundtrip(src, out, tmp_path)
    assert not enc.notes and not dec.notes
    assert kept_blocks(out) == expected  # order, duplicates, vendor string, pictures
    blocks = flac_blocks(out)
    assert blocks[0][0] == 0 and [t for t, _ in blocks].count(0) == 1
    tags = FLAC(out).tags
    assert tags.vendor == "some encoder 1.0" and list(tags) == TAGS
    assert [p.data for p in FLAC(out).pictures] == [png(40, 30, 1), png(24, 24, 2)]
    assert len(CueSheet(dict(kept_blocks(out))[5]).tracks) == 3


@pytest.mark.skipif(shutil.which("flac") is None or shutil.which("metaflac") is None,
                    reason="flac / metaflac not installed")
def test_metaflac_tags_survive_and_the_output_is_valid_flac(tmp_path):
    src = tmp_path / "in.flac"
    sf.write(tmp_path / "in.wav", pcm(), RATE, subtype="PCM_16")
    subprocess.run(["flac", "-s", "-f", "-o", src, tmp_path / "in.wav"], check=True)
    cue = tmp_path / "a.cue"
    cue.write_text('FILE "in.wav" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n'
                   '  TRACK 02 AUDIO\n    INDEX 01 1500\n')
    (tmp_path / "cover.png").write_bytes(png(50, 40, 3))
    subprocess.run(["metaflac", "--set-tag=TITLE=metaflac title", "--set-tag=ARTIST=a",
                    "--set-tag=ARTIST=b", f"--import-cuesheet-from={cue}",
                    f"--import-picture-from={tmp_path / 'cover.png'}", src], check=True)
    out = tmp_path / "out.flac"
    roundtrip(src, out, tmp_path)
    assert kept_blocks(out) == kept_blocks(src)
    subprocess.run(["flac", "-s", "-t", out], check=True)
    listed = subprocess.run(["metaflac", "--export-tags-to=-", out], check=True,
                            capture_output=True, text=True).stdout
    assert listed.splitlines() == ["TITLE=metaflac title", "ARTIST=a", "ARTIST=b"]


def test_wav_chunks_come_back_byte_identical_around_the_data(tmp_path):
    src = tmp_path / "in.wav"
    chunks = tagged_wav(src)
    out = tmp_path / "out.wav"
    roundtrip(src, out, tmp_path)
    got = riff_chunks(out)
    assert nonmeta(got) == nonmeta(chunks)
    ids = [c for c, _ in got]
    assert ids.index(b"data") == ids.index(b"abcd") + 1  # same side of the data as before
    assert dict(got)[b"fmt "] == dict(chunks)[b"fmt "]


def test_aiff_chunks_come_back_byte_identical(tmp_path):
    src = tmp_path / "in.aiff"
    chunks = tagged_aiff(src)
    out = tmp_path / "out.aif"
    roundtrip(src, out, tmp_path)
    got = aiff_chunks(out)
    strip = lambda cs: [(c, b) for c, b in cs if c not in (b"COMM", b"SSND")]  # noqa: E731
    assert strip(got) == strip(chunks)
    assert [c for c, _ in got].index(b"SSND") == len(got) - 3  # APPL, ID3 after it


@pytest.mark.parametrize("to_pipe", [False, True])
def test_extensible_fmt_and_channel_mask_come_back(tmp_path, to_pipe):
    src = tmp_path / "in.wav"
    fmt = extensible_wav(src)
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    if to_pipe:
        buf = io.BytesIO()
        hybridcodec.decode(stream, buf)
        (tmp_path / "out.wav").write_bytes(buf.getvalue())
    else:
        hybridcodec.decode(stream, tmp_path / "out.wav")
    got = dict(riff_chunks(tmp_path / "out.wav"))
    assert got[b"fmt "] == fmt  # WAVE_FORMAT_EXTENSIBLE, 24 valid bits, mask 0x60F
    assert same_pcm(src, tmp_path / "out.wav")
    # without the metadata the mask is libsndfile's default for 6 channels
    hybridcodec.decode(stream, tmp_path / "plain.wav", metadata=False)
    assert struct.unpack_from("<I", dict(riff_chunks(tmp_path / "plain.wav"))[b"fmt "], 20)[0] \
        != 0x60F


def test_plain_pcm_wav_stores_no_metadata(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, pcm(), RATE, subtype="PCM_16")
    hybridcodec.encode(src, tmp_path / "s.hyb")
    assert stream_metadata(tmp_path / "s.hyb") is None


def test_stdout_wav_carries_chunks_before_the_data_only(tmp_path):
    src = tmp_path / "in.wav"
    chunks = tagged_wav(src)
    hybridcodec.encode(src, tmp_path / "s.hyb")
    buf = io.BytesIO()
    report = hybridcodec.decode(tmp_path / "s.hyb", buf)
    (tmp_path / "out.wav").write_bytes(buf.getvalue())
    before = nonmeta(chunks[:chunks.index((b"data", dict(chunks)[b"data"]))])
    got = riff_chunks(tmp_path / "out.wav")
    assert nonmeta(got) == before and got[-1][0] == b"data"
    assert len(report.notes) == 1 and not report.warnings
    assert report.notes[0].startswith("chunks after the audio data not carried to standard "
                                      "output: LIST (")
    assert "id3 " in report.notes[0]


def test_wave64_chunks_go_to_wav(tmp_path):
    """Wave64 names chunks by GUID; those that stand for a FOURCC become RIFF chunks."""
    src = tmp_path / "in.w64"
    sf.write(src, pcm() << 16, RATE, subtype="PCM_16", format="W64")
    data = src.read_bytes()

    def chunk(guid: bytes, body: bytes) -> bytes:
        return guid + struct.pack("<Q", 24 + len(body)) + body + bytes(-len(body) % 8)

    suffix = bytes.fromhex("f3acd3118cd100c04f8edb8a")
    fmt_end = 40 + struct.unpack_from("<Q", data, 56)[0]
    info = info_list([(b"INAM", "w64 title")])
    extra = (chunk(bytes.fromhex("6c6973742f91cf11a5d628db04c10000"), info)
             + chunk(b"bext" + suffix, bext()) + chunk(bytes(range(16)), b"abc"))
    data = data[:fmt_end] + extra + data[fmt_end:]
    src.write_bytes(data[:16] + struct.pack("<Q", len(data)) + data[24:])
    out = tmp_path / "out.wav"
    _, report = roundtrip(src, out, tmp_path)
    assert nonmeta(riff_chunks(out)) == [(b"LIST", info), (b"bext", bext())]
    assert report.notes == ["metadata not carried to WAV: Wave64 chunks with no RIFF id "
                            "000102030405060708090a0b0c0d0e0f"]


# --------------------------------------------------------------------------- across containers


def test_flac_to_wav_and_aiff_carries_tags_and_names_the_rest(tmp_path):
    src = tmp_path / "in.flac"
    tagged_flac(src)
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    report = hybridcodec.decode(stream, tmp_path / "out.wav")
    info = dict(md._info_pairs(dict(riff_chunks(tmp_path / "out.wav"))[b"LIST"]))
    assert info == {b"INAM": "A title with ünïcödé; lower-case key", b"IART": "First; Second",
                    b"IPRD": "Album", b"ICMT": "line one\nline two"}
    assert report.notes == [
        "metadata not carried to WAV: tags REPLAYGAIN_TRACK_GAIN (no LIST/INFO field)",
        "metadata not carried to WAV: 2 pictures (only FLAC holds pictures)",
        "metadata not carried to WAV: the cue sheet (FLAC CUESHEET block)",
        "metadata not carried to WAV: APPLICATION blocks tEst",
        "metadata not carried to WAV: FLAC metadata blocks block type 9",
    ]
    assert report.clean  # nothing damaged: notes are not warnings
    report = hybridcodec.decode(stream, tmp_path / "out.aiff")
    got = aiff_chunks(tmp_path / "out.aiff")
    assert (b"NAME", "A title with ünïcödé; lower-case key".encode()) in got
    assert (b"AUTH", b"First; Second") in got and (b"ANNO", b"line one\nline two") in got
    assert report.notes[0] == ("metadata not carried to AIFF: tags ALBUM, REPLAYGAIN_TRACK_GAIN "
                               "(no AIFF text chunk)")


def test_wav_to_flac_carries_info_fields_and_channel_mask(tmp_path):
    src = tmp_path / "in.wav"
    tagged_wav(src)
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    report = hybridcodec.decode(stream, tmp_path / "out.flac")
    tags = FLAC(tmp_path / "out.flac").tags
    assert list(tags) == [("TITLE", "Wave title"), ("ARTIST", "Wave artist"),
                          ("COMMENT", "odd")]
    assert report.notes == [
        "metadata not carried to FLAC: WAV fields IENG (no common tag name)",
        "metadata not carried to FLAC: WAV chunks bext, iXML, cue , smpl, abcd, LIST/adtl, ID3",
    ]
    # a 4-channel quad mask is not FLAC's default for 4 channels: it becomes flac's tag
    quad = tmp_path / "quad.wav"
    extensible_wav(quad, mask=0x107, channels=4, bits=16)
    hybridcodec.encode(quad, stream, overwrite=True)
    hybridcodec.decode(stream, tmp_path / "quad.flac")
    assert FLAC(tmp_path / "quad.flac").tags["WAVEFORMATEXTENSIBLE_CHANNEL_MASK"] == ["0x0107"]
    # ... and back into a WAV file, as WAVE_FORMAT_EXTENSIBLE with that mask
    hybridcodec.encode(tmp_path / "quad.flac", stream, overwrite=True)
    hybridcodec.decode(stream, tmp_path / "quad-again.wav")
    fmt = dict(riff_chunks(tmp_path / "quad-again.wav"))[b"fmt "]
    assert struct.unpack_from("<HHI", fmt, 0)[0] == 0xFFFE
    assert struct.unpack_from("<I", fmt, 20)[0] == 0x107


def test_aiff_to_wav_carries_text_and_id3(tmp_path):
    src = tmp_path / "in.aiff"
    tagged_aiff(src)
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    report = hybridcodec.decode(stream, tmp_path / "out.wav")
    got = riff_chunks(tmp_path / "out.wav")
    assert dict(md._info_pairs(dict(got)[b"LIST"])) == {
        b"INAM": "Aiff name", b"IART": "Aiff author", b"ICOP": "2024 someone",
        b"ICMT": "first annotation; second"}
    assert dict(got)[b"id3 "] == b"ID3\x03\x00\x00\x00\x00\x00\x00"
    assert report.notes == ["metadata not carried to WAV: AIFF chunks MARK, APPL"]


# --------------------------------------------------------------------------- options


def test_no_metadata_both_ways(tmp_path):
    src = tmp_path / "in.flac"
    tagged_flac(src)
    stream, bare = tmp_path / "s.hyb", tmp_path / "bare.hyb"
    assert run_cli(["encode", src, "-o", stream])[0] == 0
    assert run_cli(["encode", "--no-metadata", src, "-o", bare])[0] == 0
    assert stream_metadata(stream) is not None and stream_metadata(bare) is None
    assert os.path.getsize(bare) < os.path.getsize(stream) - 5000  # the pictures
    code, _, err = run_cli(["decode", "--no-metadata", stream, "-o", tmp_path / "a.flac"])
    assert code == 0 and err == ""
    assert all(t in (0, 4) for t, _ in flac_blocks(tmp_path / "a.flac"))  # libsndfile's own
    assert FLAC(tmp_path / "a.flac").tags.keys() == []
    code, _, err = run_cli(["decode", "--no-metadata", stream, "-o", tmp_path / "a.wav"])
    assert code == 0 and err == ""  # nothing restored, so nothing to report
    code, _, err = run_cli(["decode", stream, "-o", tmp_path / "b.wav"])
    assert code == 0 and err.count("warning: metadata not carried to WAV") == 5


def test_truncate_and_tiers_keep_the_metadata(tmp_path):
    src = tmp_path / "in.flac"
    expected = tagged_flac(src, with_cuesheet=False)
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    code, _, _ = run_cli(["truncate", stream, tmp_path / "low.hyb", "--tier", "low"])
    assert code == 0
    hybridcodec.encode(src, tmp_path / "tier.hyb", tier="low")
    assert (tmp_path / "tier.hyb").read_bytes() == (tmp_path / "low.hyb").read_bytes()
    assert stream_metadata(tmp_path / "low.hyb") == stream_metadata(stream)
    hybridcodec.decode(tmp_path / "low.hyb", tmp_path / "low.flac")
    assert kept_blocks(tmp_path / "low.flac") == expected


def test_info_shows_the_metadata(tmp_path):
    src = tmp_path / "in.flac"
    tagged_flac(src)
    hybridcodec.encode(src, tmp_path / "f.hyb")
    code, text, _ = run_cli(["info", tmp_path / "f.hyb"])
    assert code == 0
    assert "  metadata    from FLAC: 6 blocks," in text
    assert "    VORBIS_COMMENT  vendor 'some encoder 1.0', 7 tags\n" in text
    assert "      COMMENT=line one line two\n" in text  # one line
    assert "    PICTURE  front cover, image/png, 40x30, " in text
    assert "    CUESHEET  3 tracks, " in text
    assert "    APPLICATION  id 'tEst', 20 B\n" in text
    assert "    block type 9  3 B\n" in text
    assert "metadata chunk" in text
    tagged_wav(tmp_path / "in.wav")
    hybridcodec.encode(tmp_path / "in.wav", tmp_path / "w.hyb")
    text = run_cli(["info", tmp_path / "w.hyb"])[1]
    assert "  metadata    from WAV: 8 chunks," in text
    assert "    bext  " in text and "      INAM=Wave title\n" in text
    assert "    id3   10 B (after the audio)\n" in text
    extensible_wav(tmp_path / "x.wav")
    hybridcodec.encode(tmp_path / "x.wav", tmp_path / "x.hyb")
    text = run_cli(["info", tmp_path / "x.hyb"])[1]
    assert ("    fmt   WAVE_FORMAT_EXTENSIBLE, 6 ch, 24-bit container, 24 valid bits, "
            "channel mask 0x60F\n") in text


def test_long_tag_values_are_cut_to_one_line():
    meta = md.Metadata(md.FLAC, (md.Entry(md.FLAC_BLOCK, b"\x04",
                                          vorbis("v", [("LYRICS", "la " * 200 + "\x07")])),))
    lines = md.describe_metadata(meta)
    assert all(len(line) < 100 and "\n" not in line and line.isprintable() for line in lines)
    assert lines[2].endswith("...")


# --------------------------------------------------------------------------- damaged metadata


def _header_len(data: bytes) -> int:
    """Bytes of the header chunk (its length depends on the format version's layout)."""
    reader = StreamReader(io.BytesIO(data))
    return reader.header_bytes - reader.metadata_bytes


def _metadata_chunk_span(data: bytes) -> tuple[int, int]:
    header_len = _header_len(data)
    assert data[header_len:header_len + 2] == b"HM"
    return header_len, header_len + 10 + struct.unpack_from("<I", data, header_len + 2)[0]


@pytest.mark.parametrize("where", ["blob", "length"])
def test_corrupt_metadata_chunk_is_detected_and_survived(tmp_path, where):
    src = tmp_path / "in.flac"
    tagged_flac(src)
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    data = bytearray(stream.read_bytes())
    start, end = _metadata_chunk_span(data)
    data[start + 300 if where == "blob" else start + 3] ^= 0x10
    bad = tmp_path / "bad.hyb"
    bad.write_bytes(data)
    out = tmp_path / "out.flac"
    code, _, err = run_cli(["decode", bad, "-o", out])
    assert code == 4 and not out.exists()
    assert err.count("\n") == 1 and "metadata chunk" in err
    assert run_cli(["verify", bad])[0] == 4
    code, _, err = run_cli(["decode", "--ignore-errors", bad, "-o", out])
    assert code == 6 and same_pcm(src, out)
    assert "metadata not restored" in err and "MD5" not in err
    assert kept_blocks(out) == [(4, flac_blocks(out)[1][1])]  # libsndfile's vendor only
    # the default output name is found without reading the damaged chunk
    code, _, err = run_cli(["decode", "--ignore-errors", bad])
    assert code == 6 and (tmp_path / "bad.flac").exists()


def test_malformed_blob_with_a_good_crc_is_corrupt(tmp_path):
    """A blob that passes its CRC but breaks the blob rules (a buggy writer) is refused
    in strict mode and ignored, with a warning, when recovering."""
    src = tmp_path / "in.wav"
    sf.write(src, pcm(), RATE, subtype="PCM_16")
    stream = tmp_path / "s.hyb"
    hybridcodec.encode(src, stream)
    blob = md.Metadata(md.WAV, (md.Entry(md.RIFF_BEFORE, b"data", b"x"),)).to_bytes()
    # the container does not look inside the blob: a writer can store a bad one
    with open(stream, "rb") as fp:
        reader = StreamReader(fp)
        frames = list(reader.frames())
    bad = tmp_path / "bad.hyb"
    with open(bad, "wb") as out:
        writer = StreamWriter(out, dataclasses.replace(reader.header, metadata=blob))
        for frame in frames:
            writer.write_frame(frame)
        writer.finish(reader.footer.md5)
    with pytest.raises(CorruptStreamError, match="metadata chunk: entry 0: RIFF chunk id"):
        hybridcodec.decode(bad, tmp_path / "out.wav")
    report = hybridcodec.decode(bad, tmp_path / "out.wav", ignore_errors=True)
    assert report.warnings == ["metadata chunk: entry 0: RIFF chunk id b'data' is not stored: "
                               "metadata not restored"]
    assert run_cli(["info", bad])[0] == 4


# --------------------------------------------------------------------------- the blob


def _entries():
    return (md.Entry(md.RIFF_BEFORE, b"bext", b"b" * 7), md.Entry(md.RIFF_FMT, b"fmt ", bytes(40)),
            md.Entry(md.RIFF_AFTER, b"id3 ", b""))


def test_blob_layout_is_as_documented():
    blob = md.Metadata(md.WAV, _entries()).to_bytes()
    assert blob == (b"\x01\x02" + struct.pack("<I", 3)
                    + b"\x02\x04bext" + struct.pack("<I", 7) + b"b" * 7
                    + b"\x04\x04fmt " + struct.pack("<I", 40) + bytes(40)
                    + b"\x03\x04id3 " + struct.pack("<I", 0))
    assert md.parse_metadata(blob) == md.Metadata(md.WAV, _entries())


@pytest.mark.parametrize("blob, words", [
    (b"", "too short"),
    (b"\x02\x02\x01\x00\x00\x00", "unknown blob version 2"),
    (b"\x01\x09\x01\x00\x00\x00", "unknown source container 9"),
    (b"\x01\x02\x00\x00\x00\x00", "no entries"),
    (b"\x01\x02\xff\xff\xff\xff" + bytes(12), "cannot fit"),
    (b"\x01\x02\x01\x00\x00\x00\x63\x04bext" + bytes(4), "unknown kind 99"),
    (b"\x01\x02\x01\x00\x00\x00\x01\x01\x04" + bytes(4), "does not belong in a WAV source"),
    (b"\x01\x02\x01\x00\x00\x00\x02\x03bex" + bytes(4), "name of 3 bytes"),
    (b"\x01\x02\x01\x00\x00\x00\x02\x04bext\xff\xff\xff\x7f", "declares 2147483647 bytes"),
    (b"\x01\x02\x01\x00\x00\x00\x02\x04bext" + bytes(4) + b"x", "1 bytes after the last"),
    (b"\x01\x01\x01\x00\x00\x00\x01\x01\x00" + bytes(4), "FLAC block type 0 is not stored"),
    (b"\x01\x02\x02\x00\x00\x00" + (b"\x03\x04abcd" + bytes(4)) + (b"\x02\x04abcd" + bytes(4)),
     "listed after one that follows it"),
    (b"\x01\x02\x01\x00\x00\x00\x04\x04fmt " + struct.pack("<I", 3) + b"abc", "fmt chunk of 3"),
])
def test_malformed_blobs_are_refused_in_one_line(blob, words):
    with pytest.raises(CorruptStreamError) as info:
        md.parse_metadata(blob)
    message = str(info.value)
    assert message.startswith("corrupt stream: metadata chunk: ") and words in message
    assert "\n" not in message


def test_random_damage_to_a_blob_never_escapes_as_another_error(tmp_path):
    src = tmp_path / "in.flac"
    tagged_flac(src)
    meta = md.scan_container(src).metadata
    blob = meta.to_bytes()
    assert md.parse_metadata(blob) == meta
    rng = np.random.default_rng(5)
    for _ in range(400):
        damaged = bytearray(blob[: rng.integers(0, 400)] if rng.random() < 0.3 else blob)
        for _ in range(rng.integers(1, 4)):
            if damaged:
                damaged[rng.integers(0, len(damaged))] ^= 1 << rng.integers(0, 8)
        try:
            md.parse_metadata(bytes(damaged))
        except CorruptStreamError as exc:
            assert "\n" not in str(exc)


# --------------------------------------------------------------------------- inconsistent inputs


def _set_streaminfo_total(path, total: int) -> None:
    data = bytearray(Path(path).read_bytes())
    packed = int.from_bytes(data[18:26], "big")
    data[18:26] = ((packed & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    Path(path).write_bytes(data)


def _flac(tmp_path, name="in.flac"):
    src = tmp_path / name
    sf.write(src, pcm() << 16, RATE, subtype="PCM_16", format="FLAC")
    return src


@pytest.mark.parametrize("declared", [N + 5000, N - 1000, 0])
def test_flac_whose_frames_disagree_with_streaminfo(tmp_path, declared):
    src = _flac(tmp_path)
    _set_streaminfo_total(src, declared)
    stream = tmp_path / "s.hyb"
    code, _, err = run_cli(["encode", src, "-o", stream])
    assert code == 0 and stream.exists()
    if declared:  # 0 says "unknown" (a FLAC written to a pipe): nothing to warn about
        assert err == (f"hybridcodec: {src}: warning: FLAC STREAMINFO declares {declared} "
                       f"samples, its frames hold {N}; encoded the {N} samples present\n")
    else:
        assert err == ""
    hybridcodec.decode(stream, tmp_path / "out.wav")
    assert np.array_equal(sf.read(tmp_path / "out.wav", dtype="int32")[0], pcm() << 16)
    stream.unlink()
    code, _, err = run_cli(["encode", "--strict", src, "-o", stream])
    if declared:
        assert code == 3 and not stream.exists()
        assert err.endswith("(refused: --strict)\n") and err.count("\n") == 1
    else:
        assert code == 0


def test_flac_with_a_wrong_md5(tmp_path):
    src = _flac(tmp_path)
    data = bytearray(src.read_bytes())
    data[26] ^= 0xFF  # first byte of STREAMINFO's MD5
    src.write_bytes(data)
    stream = tmp_path / "s.hyb"
    code, _, err = run_cli(["encode", src, "-o", stream])
    assert code == 0 and stream.exists()
    assert "warning: FLAC STREAMINFO MD5" in err and f"does not match the {N} samples" in err
    assert err.count("\n") == 1
    stream.unlink()
    for argv in (["encode", "--strict", src, "-o", stream],
                 ["encode", "--strict", "--tier", "low", src, "-o", stream]):
        code, _, err = run_cli(argv)
        assert code == 3 and not stream.exists() and "(refused: --strict)" in err
    with pytest.raises(UnsupportedAudioError):
        hybridcodec.encode(src, stream, strict=True)


def test_good_flac_is_quiet_even_when_strict(tmp_path):
    src = _flac(tmp_path)
    code, _, err = run_cli(["encode", "--strict", src, "-o", tmp_path / "s.hyb"])
    assert code == 0 and err == ""


@pytest.mark.parametrize("claim", ["4GB", "double"])
def test_wav_header_claiming_more_than_the_file_holds(tmp_path, claim):
    src = tmp_path / "in.wav"
    sf.write(src, pcm(), RATE, subtype="PCM_16")
    data = bytearray(src.read_bytes())
    size = 0xFFFFFFFF - 1 if claim == "4GB" else 2 * N * 4
    data[40:44] = struct.pack("<I", size)
    src.write_bytes(data)
    stream = tmp_path / "s.hyb"
    code, _, err = run_cli(["encode", src, "-o", stream])
    assert code == 0
    assert err == (f"hybridcodec: {src}: warning: WAV header declares {size // 4} samples, "
                   f"the file holds {N}; encoded the {N} samples present\n")
    stream.unlink()
    code, _, err = run_cli(["encode", "--strict", src, "-o", stream])
    assert code == 3 and not stream.exists() and "WAV header declares" in err


def test_truncated_aiff_warns(tmp_path):
    src = tmp_path / "in.aiff"
    sf.write(src, pcm(), RATE, subtype="PCM_16", format="AIFF")
    data = src.read_bytes()
    src.write_bytes(data[: len(data) - 4 * 1000])
    code, _, err = run_cli(["encode", src, "-o", tmp_path / "s.hyb"])
    assert code == 0 and f"AIFF header declares {N} samples, the file holds" in err
