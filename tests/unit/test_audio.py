"""Tests for ivr.audio: WAV I/O, resampling, analysis, prompt texts, rendering, import."""

from __future__ import annotations

import ctypes.util
import json
import math
import os
import struct
import subprocess
import textwrap
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.audio import (
    AudioError,
    ImportResult,
    PromptEngineError,
    PromptFileError,
    active_ratio,
    check_engine,
    frame_levels_dbfs,
    import_prompt,
    is_silent,
    load_prompt_texts,
    normalize_peak,
    peak_dbfs,
    read_wav,
    read_wav_info,
    render_prompts,
    resample,
    rms_dbfs,
    trim_silence,
    wav_duration,
    write_wav,
)
from ivr.audio.prompts import split_by_script

REPO = Path(__file__).resolve().parents[2]
PROMPTS_YAML = REPO / "prompts" / "prompts.yaml"
REQUIRED_PROMPTS = {
    "notice",
    "welcome",
    "please_wait",
    "failsafe",
    "goodbye",
    "closed",
    "invalid",
    "no_input",
    "language_select",
    "refused",
    "time_warning",
    "time_closing",
}
HAVE_ESPEAK = ctypes.util.find_library("espeak-ng") is not None
needs_espeak = pytest.mark.skipif(
    not HAVE_ESPEAK, reason="libespeak-ng not installed: apt-get install espeak-ng"
)


# --------------------------------------------------------------------------- helpers


def tone(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_hz(x: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * rate / len(x)


def write_pcm(path: Path, frames: np.ndarray, rate: int, bits: int) -> Path:
    """Write (n, channels) float frames as integer PCM with the stdlib writer."""
    frames = np.atleast_2d(frames.T).T
    scale = float(1 << (bits - 1)) - 1
    ints = np.round(frames * scale).astype(np.int64)
    if bits == 8:
        raw = (ints + 128).astype(np.uint8).tobytes()
    elif bits == 24:
        le = ints.astype("<i4").reshape(-1, 1).view(np.uint8).reshape(-1, 4)
        raw = le[:, :3].tobytes()
    else:
        raw = ints.astype(f"<i{bits // 8}").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frames.shape[1])
        w.setsampwidth(bits // 8)
        w.setframerate(rate)
        w.writeframes(raw)
    return path


def write_riff(
    path: Path,
    *,
    tag: int,
    channels: int,
    rate: int,
    bits: int,
    payload: bytes,
    extensible: bool = False,
    data_size: int | None = None,
    extra_chunk: bytes = b"",
) -> Path:
    """Hand-built RIFF/WAVE, for formats the stdlib writer cannot produce."""
    block = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", 0xFFFE if extensible else tag, channels, rate, rate * block, block, bits
    )
    if extensible:
        guid = struct.pack("<H", tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt += struct.pack("<HHI", 22, bits, 0) + guid
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if extra_chunk:  # an odd-sized chunk, to exercise the word-alignment padding
        body += b"LIST" + struct.pack("<I", len(extra_chunk)) + extra_chunk
        body += b"\x00" * (len(extra_chunk) & 1)
    body += b"data" + struct.pack("<I", size) + payload
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


# --------------------------------------------------------------------------- resampling


@pytest.mark.parametrize("src", [22050, 44100, 48000, 16000, 8000])
def test_resample_keeps_1khz_tone(src: int) -> None:
    x = tone(1000, src, 1.0)
    y = resample(x, src, 8000)
    assert y.dtype == np.float32
    assert len(y) == math.ceil(len(x) * 8000 / src)
    body = y[400:-400]  # away from the filter's edge transients
    assert dominant_hz(body, 8000) == pytest.approx(1000, abs=2)
    assert rms_dbfs(body) == pytest.approx(rms_dbfs(x), abs=0.1)


@pytest.mark.parametrize(
    ("src", "freq"), [(22050, 6000), (44100, 6000), (48000, 6000), (48000, 4400), (16000, 5000)]
)
def test_resample_rejects_energy_above_nyquist(src: int, freq: float) -> None:
    x = tone(freq, src, 1.0)
    y = resample(x, src, 8000)[400:-400]
    # Without a low-pass this would alias to a full-level tone in the voice band.
    assert rms_dbfs(y) - rms_dbfs(x) < -40.0


def test_resample_passband_is_flat_up_to_telephone_band() -> None:
    for freq in (300, 2000, 3300):
        x = tone(freq, 22050, 1.0)
        y = resample(x, 22050, 8000)[400:-400]
        assert rms_dbfs(y) == pytest.approx(rms_dbfs(x), abs=0.2), freq


def test_resample_identity_and_empty() -> None:
    x = tone(440, 8000, 0.1)
    assert np.array_equal(resample(x, 8000, 8000), x)
    assert resample(np.zeros(0, dtype=np.float32), 22050, 8000).size == 0


def test_resample_is_time_aligned() -> None:
    t = np.arange(22050 * 2) / 22050
    burst = np.sin(2 * np.pi * 500 * t) * np.exp(-(((t - 1.0) / 0.01) ** 2))
    y = resample(burst.astype(np.float32), 22050, 8000)
    envelope_peak = np.argmax(np.convolve(np.abs(y), np.ones(8), "same")) / 8000
    assert envelope_peak == pytest.approx(1.0, abs=0.002)


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="positive"):
        resample(np.zeros(10), 0, 8000)


# --------------------------------------------------------------------------- WAV I/O


@pytest.mark.parametrize("bits", [8, 16, 24, 32])
@pytest.mark.parametrize("channels", [1, 2])
def test_read_integer_pcm_every_width(tmp_path: Path, bits: int, channels: int) -> None:
    left = tone(440, 11025, 0.2, amp=0.6)
    frames = left[:, None] if channels == 1 else np.stack([left, left * 0.5], axis=1)
    path = write_pcm(tmp_path / "in.wav", frames, 11025, bits)
    audio = read_wav(path)
    expected = left if channels == 1 else left * 0.75  # channels are averaged
    assert audio.rate == 11025
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert np.max(np.abs(audio.samples - expected)) < 2.0 / (1 << (bits - 1)) + 1e-6
    info = read_wav_info(path)
    assert (info.channels, info.bits, info.format) == (channels, bits, "pcm")


def test_write_read_round_trip(tmp_path: Path) -> None:
    x = tone(1000, 8000, 0.5, amp=0.9)
    path = write_wav(tmp_path / "out.wav", x)
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    audio = read_wav(path)
    assert audio.rate == 8000
    assert np.max(np.abs(audio.samples - x)) <= 0.5 / 32768 + 1e-7
    assert wav_duration(path) == pytest.approx(0.5)


def test_write_wav_clips(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.5]), rate=16000)
    samples = read_wav(path).samples
    assert samples[0] == pytest.approx(1.0, abs=1e-4)
    assert samples[1] == pytest.approx(-1.0, abs=1e-4)
    assert read_wav(path).rate == 16000


def test_write_wav_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_wav(tmp_path / "p.wav", tone(440, 8000, 0.1))
    before = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_wav(path, tone(880, 8000, 0.3))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.wav"]  # no temp file left


def test_read_float32_and_extensible(tmp_path: Path) -> None:
    x = tone(300, 16000, 0.1, amp=0.7)
    f32 = write_riff(
        tmp_path / "f.wav",
        tag=3,
        channels=1,
        rate=16000,
        bits=32,
        payload=x.astype("<f4").tobytes(),
    )
    assert np.allclose(read_wav(f32).samples, x, atol=1e-7)
    assert read_wav_info(f32).format == "float"

    stereo = np.stack([x, -x], axis=1)  # downmix cancels exactly
    ext = write_riff(
        tmp_path / "e.wav",
        tag=1,
        channels=2,
        rate=16000,
        bits=16,
        payload=np.round(stereo * 32767).astype("<i2").tobytes(),
        extensible=True,
    )
    audio = read_wav(ext)
    assert audio.rate == 16000 and np.max(np.abs(audio.samples)) < 1e-4

    ext_float = write_riff(
        tmp_path / "ef.wav",
        tag=3,
        channels=1,
        rate=16000,
        bits=32,
        payload=x.astype("<f4").tobytes(),
        extensible=True,
    )
    assert np.allclose(read_wav(ext_float).samples, x, atol=1e-7)


def test_read_skips_unknown_chunks(tmp_path: Path) -> None:
    x = tone(300, 8000, 0.1)
    path = write_riff(
        tmp_path / "list.wav",
        tag=1,
        channels=1,
        rate=8000,
        bits=16,
        payload=np.round(x * 32768).astype("<i2").tobytes(),
        extra_chunk=b"INFOabc",
    )
    assert np.allclose(read_wav(path).samples, x, atol=1 / 32768)


def test_read_g711(tmp_path: Path) -> None:
    # mu-law 0xFF / A-law 0xD5 encode (near) zero; 0x80 / 0xAA the positive maximum.
    mu = write_riff(
        tmp_path / "mu.wav", tag=7, channels=1, rate=8000, bits=8, payload=bytes([0xFF, 0x80, 0x00])
    )
    assert read_wav(mu).samples.tolist() == pytest.approx([0.0, 32124 / 32768, -32124 / 32768])
    alaw = write_riff(
        tmp_path / "a.wav", tag=6, channels=1, rate=8000, bits=8, payload=bytes([0xD5, 0xAA, 0x2A])
    )
    peak = 32256 / 32768  # A-law's largest magnitude
    assert read_wav(alaw).samples.tolist() == pytest.approx([8 / 32768, peak, -peak])


def test_bad_files_are_reported_with_name_and_reason(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not audio\n")
    with pytest.raises(AudioError, match=r"notes\.txt: not a RIFF/WAVE file"):
        read_wav(text)

    good = write_pcm(tmp_path / "good.wav", tone(440, 8000, 0.1)[:, None], 8000, 16)
    cut = tmp_path / "cut.wav"
    cut.write_bytes(good.read_bytes()[:30])  # ends inside the fmt chunk
    with pytest.raises(AudioError, match=r"cut\.wav: truncated"):
        read_wav(cut)

    short_riff = tmp_path / "short.wav"
    short_riff.write_bytes(b"RIFF\x10\x00")
    with pytest.raises(AudioError, match=r"short\.wav: truncated"):
        read_wav(short_riff)

    lying = write_riff(
        tmp_path / "lying.wav",
        tag=1,
        channels=1,
        rate=8000,
        bits=16,
        payload=b"\x00\x01" * 10,
        data_size=4000,
    )
    with pytest.raises(AudioError, match=r"lying\.wav: truncated: data chunk declares 4000"):
        read_wav(lying)

    empty = write_pcm(tmp_path / "zero.wav", np.zeros((0, 1)), 8000, 16)
    with pytest.raises(AudioError, match=r"zero\.wav: empty"):
        read_wav(empty)
    with pytest.raises(AudioError, match=r"zero\.wav: empty"):
        wav_duration(empty)

    nothing = tmp_path / "nothing.wav"
    nothing.write_bytes(b"")
    with pytest.raises(AudioError, match=r"nothing\.wav: empty file"):
        read_wav(nothing)

    adpcm = write_riff(
        tmp_path / "adpcm.wav", tag=2, channels=1, rate=8000, bits=4, payload=b"\x00" * 64
    )
    with pytest.raises(AudioError, match=r"adpcm\.wav: unsupported format: .*0x0002"):
        read_wav(adpcm)

    with pytest.raises(AudioError, match=r"missing\.wav: cannot read file"):
        read_wav(tmp_path / "missing.wav")


def test_wav_duration_reads_only_the_header(tmp_path: Path) -> None:
    path = write_pcm(tmp_path / "s.wav", np.zeros((44100 * 3, 2)), 44100, 24)
    assert wav_duration(path) == pytest.approx(3.0)


# --------------------------------------------------------------------------- analysis


def test_levels_and_activity() -> None:
    full_sine = tone(1000, 8000, 1.0, amp=1.0)
    assert rms_dbfs(full_sine) == pytest.approx(-3.01, abs=0.02)
    assert peak_dbfs(full_sine) == pytest.approx(0.0, abs=0.01)
    assert rms_dbfs(np.zeros(100)) == -120.0
    assert rms_dbfs(np.zeros(0)) == -120.0

    half = np.concatenate([tone(500, 8000, 1.0, amp=0.3), np.zeros(8000, dtype=np.float32)])
    levels = frame_levels_dbfs(half, 8000, frame_ms=20)
    assert len(levels) == 100
    assert levels[0] == pytest.approx(rms_dbfs(half[:8000]), abs=0.1)
    assert levels[-1] == -120.0
    assert active_ratio(half, 8000) == pytest.approx(0.5)
    assert len(frame_levels_dbfs(np.ones(170), 8000, frame_ms=20)) == 2  # partial frame kept

    assert is_silent(np.zeros(8000), 8000)
    noise = np.random.default_rng(1).normal(0, 10 ** (-60 / 20), 8000)
    assert is_silent(noise, 8000)
    assert not is_silent(half, 8000)
    click = np.zeros(8000)
    click[4000:4040] = 0.9  # 5 ms: a click is not content
    assert is_silent(click, 8000)


def test_trim_and_normalise() -> None:
    speech = tone(700, 8000, 0.5, amp=0.1)
    padded = np.concatenate([np.zeros(8000), speech, np.zeros(16000)]).astype(np.float32)
    trimmed = trim_silence(padded, 8000, keep_ms=150)
    assert len(trimmed) / 8000 == pytest.approx(0.5 + 0.3, abs=0.011)
    assert trim_silence(np.zeros(800), 8000).size == 0
    louder = normalize_peak(trimmed, -3.0)
    assert peak_dbfs(louder) == pytest.approx(-3.0, abs=0.01)
    assert not normalize_peak(np.zeros(5), -3.0).any()


# --------------------------------------------------------------------------- import


def test_import_converts_any_wav_to_8k_mono(tmp_path: Path) -> None:
    speech = tone(700, 44100, 1.0, amp=0.2)
    silence = np.zeros(44100, dtype=np.float32)
    mono = np.concatenate([silence, speech, silence])
    src = write_pcm(tmp_path / "admin.wav", np.stack([mono, mono], axis=1), 44100, 24)

    result = import_prompt(src, tmp_path / "out" / "custom.wav")

    assert isinstance(result, ImportResult)
    assert result.source_format == "24-bit PCM, stereo, 44100 Hz"
    assert result.source_duration_s == pytest.approx(3.0)
    assert result.duration_s == pytest.approx(1.3, abs=0.02)  # 150 ms kept each side
    assert result.gain_db == pytest.approx(-3.0 - 20 * math.log10(0.2), abs=0.1)
    with wave.open(str(result.path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    assert peak_dbfs(read_wav(result.path).samples) == pytest.approx(-3.0, abs=0.05)


def test_import_refusals_name_the_reason(tmp_path: Path) -> None:
    dest = tmp_path / "dest.wav"

    not_audio = tmp_path / "letter.wav"
    not_audio.write_text("Dear admin, ...")
    with pytest.raises(AudioError, match=r"letter\.wav: not an audio file that can be "
                       r"imported \(WAV, FLAC, Ogg or MP3\)"):
        import_prompt(not_audio, dest)

    long_one = write_pcm(tmp_path / "long.wav", tone(440, 8000, 3.0)[:, None], 8000, 16)
    with pytest.raises(AudioError, match=r"long\.wav: too long: 3\.0 s, the limit is 2 s"):
        import_prompt(long_one, dest, max_seconds=2.0)

    quiet = write_pcm(tmp_path / "quiet.wav", tone(440, 16000, 1.0, amp=0.001)[:, None], 16000, 16)
    with pytest.raises(AudioError, match=r"quiet\.wav: silent: overall level -63\.\d dBFS"):
        import_prompt(quiet, dest)

    empty = write_pcm(tmp_path / "empty.wav", np.zeros((0, 2)), 48000, 16)
    with pytest.raises(AudioError, match=r"empty\.wav: empty"):
        import_prompt(empty, dest)

    adpcm = write_riff(
        tmp_path / "adpcm.wav", tag=0x11, channels=1, rate=8000, bits=4, payload=b"\x00" * 256
    )
    with pytest.raises(AudioError, match=r"adpcm\.wav: not an audio file .*Malformed 'fmt '"):
        import_prompt(adpcm, dest)

    aiff = tmp_path / "voice.aiff"  # libsndfile reads it; not one of the upload formats
    sf.write(aiff, tone(440, 8000, 1.0), 8000, format="AIFF")
    with pytest.raises(AudioError, match=r"voice\.aiff: unsupported format: AIFF.*upload WAV"):
        import_prompt(aiff, dest)

    assert not dest.exists()


@pytest.mark.parametrize(("fmt", "subtype", "suffix", "described"), [
    ("FLAC", "PCM_24", "flac", "FLAC 24-bit PCM"),
    ("OGG", "VORBIS", "ogg", "Ogg Vorbis"),
    ("OGG", "OPUS", "opus", "Ogg Opus"),
    ("MP3", "MPEG_LAYER_III", "mp3", "MP3"),
    ("WAV", "ALAW", "wav", "8-bit A-law"),
    ("WAV", "FLOAT", "wav", "32-bit float"),
])
def test_import_reads_flac_ogg_mp3_and_wav_variants(tmp_path: Path, fmt: str, subtype: str,
                                                     suffix: str, described: str) -> None:
    """Files made by libsndfile itself: a 700 Hz tone between two seconds of silence."""
    rate = 48000 if subtype == "OPUS" else 44100
    speech = tone(700, rate, 1.0, amp=0.2)
    silence = np.zeros(rate, dtype=np.float32)
    mono = np.concatenate([silence, speech, silence])
    src = tmp_path / f"admin-{subtype.lower()}.{suffix}"
    sf.write(src, np.stack([mono, mono], axis=1), rate, format=fmt, subtype=subtype)

    result = import_prompt(src, tmp_path / "out" / "custom.wav")

    assert described in result.source_format and "stereo" in result.source_format
    assert result.source_duration_s == pytest.approx(3.0, abs=0.06)  # MP3/Opus pad a frame
    assert result.duration_s == pytest.approx(1.3, abs=0.06)
    with wave.open(str(result.path)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
    out = read_wav(result.path).samples
    assert peak_dbfs(out) == pytest.approx(-3.0, abs=0.05)
    middle = out[int(0.4 * 8000):int(0.9 * 8000)]
    assert dominant_hz(middle, 8000) == pytest.approx(700, abs=10)


def test_damaged_uploads_are_refused_with_the_reason(tmp_path: Path) -> None:
    dest = tmp_path / "dest.wav"
    good = tmp_path / "good.flac"
    sf.write(good, tone(440, 16000, 3.0, amp=0.3), 16000, format="FLAC")
    cut = tmp_path / "cut.flac"
    cut.write_bytes(good.read_bytes()[:200])  # the header and hardly any audio
    with pytest.raises(AudioError, match=r"cut\.flac: (empty|damaged|not an audio file)"):
        import_prompt(cut, dest)
    text_mp3 = tmp_path / "song.mp3"
    text_mp3.write_bytes(b"<html>404 Not Found</html>" * 20)
    with pytest.raises(AudioError, match=r"song\.mp3: not an audio file that can be imported"):
        import_prompt(text_mp3, dest)
    with pytest.raises(AudioError, match=r"gone\.ogg: cannot read file"):
        import_prompt(tmp_path / "gone.ogg", dest)
    assert not dest.exists()


# --------------------------------------------------------------------------- prompt texts


def test_repository_prompts_file_is_complete() -> None:
    texts = load_prompt_texts(PROMPTS_YAML)
    assert REQUIRED_PROMPTS <= set(texts)
    for name, by_lang in texts.items():
        assert set(by_lang) == {"ja", "en"}, name
    # Bilingual prompt: the Japanese part must go to the ja voice, the rest to en.
    parts = split_by_script(texts["language_select"]["en"], "en")
    assert [lang for lang, _ in parts] == ["ja", "en"]


def test_split_by_script() -> None:
    assert split_by_script("にほんごわ 1を、 For English, press 2.", "en") == [
        ("ja", "にほんごわ 1を、"),
        ("en", "For English, press 2."),
    ]
    assert split_by_script("Press 1.", "ja") == [("en", "Press 1.")]
    assert split_by_script("123", "ja") == [("ja", "123")]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("- notice\n- welcome\n", r":1: top level must be a mapping"),
        (
            "notice:\n  ja: こんにちわ\n  en: Hello\nwelcome:\n  ja: はい\n  fr: Bonjour\n",
            r":6: prompt 'welcome': unknown language 'fr'",
        ),
        ("notice:\n  ja: こんにちわ\n  en: '   '\n", r":3: prompt 'notice' \[en\]: text is empty"),
        ("notice:\n  ja: こんにちわ\n  en:\n", r":3: prompt 'notice' \[en\]: text is empty"),
        (
            "notice:\n  ja: こんにちわ\n  en: 42\n",
            r":3: prompt 'notice' \[en\]: text must be a string, got an int \(42\)",
        ),
        ("notice:\n  ja: [a, b]\n  en: x\n", r":2: .*text must be a string, got a list"),
        ("\n\nnotice: hello\n", r":3: prompt 'notice' must be a mapping of language -> text"),
        ("notice:\n  ja: こんにちわ\n", r":1: prompt 'notice' has no text for: en"),
        (
            "a:\n  ja: あ\n  en: a\n\na:\n  ja: い\n  en: b\n",
            r":5: duplicate prompt 'a' \(first defined on line 1\)",
        ),
        ("Bad Name:\n  ja: あ\n  en: a\n", r":1: prompt name 'Bad Name' must be lower-case"),
        ("notice:\n  ja: 'unterminated\n  en: x\n", r":\d: invalid YAML"),
    ],
)
def test_load_prompt_texts_errors_name_file_and_line(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"prompts\.yaml" + expected):
        load_prompt_texts(path)


def test_kanji_refused_only_when_espeak_reads_japanese(tmp_path: Path) -> None:
    path = tmp_path / "prompts.yaml"
    path.write_text("notice:\n  en: Hi\n  ja: 録音します\n", encoding="utf-8")
    assert load_prompt_texts(path)["notice"]["ja"] == "録音します"  # Open JTalk by default
    with pytest.raises(PromptFileError, match=r"prompts\.yaml:3: .*contains kanji '録音'"):
        load_prompt_texts(path, engines={"ja": "espeak"})


def test_load_prompt_texts_normalises_whitespace(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "greet:\n  ja: >\n    おでんわ\n    ありがとー\n  en: '  Hello  there '\n", encoding="utf-8"
    )
    assert load_prompt_texts(path) == {"greet": {"ja": "おでんわ ありがとー", "en": "Hello there"}}
    path.write_text("", encoding="utf-8")
    with pytest.raises(PromptFileError, match=r"p\.yaml: empty"):
        load_prompt_texts(path)


# --------------------------------------------------------------------------- rendering

SHORT = {"thanks": {"en": "Thank you for calling.", "ja": "おでんわ ありがとー ございます。"}}


@needs_espeak
def test_render_real_prompts_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "prompts"
    paths = render_prompts(SHORT, out, {"ja": "jpx/ja", "en": "gmw/en-us"})

    for (name, lang), path in paths.items():
        assert path == out / lang / f"{name}.wav"
        info = read_wav_info(path)
        assert (info.rate, info.bits, info.channels, info.format) == (8000, 16, 1, "pcm")
        assert 0.8 < info.duration < 4.0, (lang, info.duration)
        samples = read_wav(path).samples
        assert not is_silent(samples, 8000)
        assert active_ratio(samples, 8000) > 0.5
        assert peak_dbfs(samples) == pytest.approx(-3.0, abs=0.1)
        # Exactly 150 ms of silence at each edge, not the engine's long trailing pause.
        assert not samples[:1200].any() and not samples[-1200:].any()
        assert rms_dbfs(samples[1200:1400]) > -60 and rms_dbfs(samples[-1400:-1200]) > -60

    manifest = json.loads((out / "manifest.json").read_text())
    before = {p: p.stat().st_mtime_ns for p in paths.values()}
    stamp = {k: v["rendered_at"] for k, v in manifest["entries"].items()}
    assert set(stamp) == {"en/thanks.wav", "ja/thanks.wav"}

    def no_child(*args: object, **kwargs: object) -> None:
        raise AssertionError("cache hit expected, but the TTS child was started")

    monkeypatch.setattr(subprocess, "run", no_child)
    again = render_prompts(SHORT, out, {"ja": "jpx/ja", "en": "gmw/en-us"})
    assert again == paths
    assert {p: p.stat().st_mtime_ns for p in again.values()} == before
    manifest = json.loads((out / "manifest.json").read_text())
    assert {k: v["rendered_at"] for k, v in manifest["entries"].items()} == stamp


@needs_espeak
def test_render_changed_text_rerenders_only_that_prompt(tmp_path: Path) -> None:
    texts = {"a": {"en": "Goodbye."}, "b": {"en": "Hello."}}
    first = render_prompts(texts, tmp_path)
    mtimes = {k: p.stat().st_mtime_ns for k, p in first.items()}
    texts["b"]["en"] = "Hello again."
    second = render_prompts(texts, tmp_path)
    assert second[("a", "en")].stat().st_mtime_ns == mtimes[("a", "en")]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["entries"]["en/b.wav"]["text"] == "Hello again."


@needs_espeak
def test_unknown_voice_is_an_engine_error(tmp_path: Path) -> None:
    with pytest.raises(PromptEngineError, match=r"voice 'gmw/xx-nowhere' is not available"):
        render_prompts({"a": {"en": "Hi."}}, tmp_path, {"en": "gmw/xx-nowhere"})
    assert not (tmp_path / "en" / "a.wav").exists()
    with pytest.raises(PromptEngineError, match="not available"):
        check_engine({"en": "gmw/xx-nowhere"})


FAKE_PYTTSX3 = textwrap.dedent(
    """
    import math, os, time, wave
    MODE = os.environ["FAKE_TTS_MODE"]

    class Voice:
        def __init__(self, id):
            self.id = id

    class Engine:
        def __init__(self):
            self.callbacks = {}
            self.target = None
        def getProperty(self, name):
            return [Voice("gmw/en-us"), Voice("jpx/ja")]
        def setProperty(self, name, value):
            pass
        def connect(self, topic, cb):
            self.callbacks.setdefault(topic, []).append(cb)
        def save_to_file(self, text, path):
            self.text, self.target = text, path
        def runAndWait(self):
            if MODE == "hang":
                time.sleep(60)
            if "CRASH" in self.text:
                os.abort()
            level = 0 if MODE == "silent" else 8000
            frames = b"".join(
                int(level * math.sin(i / 5)).to_bytes(2, "little", signed=True)
                for i in range(22050)
            )
            with wave.open(self.target, "wb") as w:
                w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
                w.writeframes(frames)
            for cb in self.callbacks.get("finished-utterance", []):
                cb(completed=True)

    def init(driver=None):
        if MODE == "missing":
            raise RuntimeError(
                "This means you probably do not have eSpeak or eSpeak-ng installed!")
        return Engine()
    """
)


@pytest.fixture
def fake_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Put a stand-in pyttsx3 first on the child's import path."""
    site = tmp_path / "fake_site"
    (site / "pyttsx3").mkdir(parents=True)
    (site / "pyttsx3" / "__init__.py").write_text(FAKE_PYTTSX3)
    monkeypatch.setenv("PYTHONPATH", str(site))

    def use(mode: str) -> None:
        monkeypatch.setenv("FAKE_TTS_MODE", mode)

    return use


def test_missing_espeak_gives_setup_message(tmp_path: Path, fake_engine) -> None:
    fake_engine("missing")
    out = tmp_path / "out"
    with pytest.raises(PromptEngineError, match=r"espeak-ng is not installed.*apt-get install"):
        render_prompts({"a": {"en": "Hi."}}, out)
    assert not (out / "en").exists()
    with pytest.raises(PromptEngineError, match="espeak-ng is not installed"):
        check_engine()


def test_engine_producing_silence_is_refused(tmp_path: Path, fake_engine) -> None:
    fake_engine("silent")
    with pytest.raises(PromptEngineError, match=r"en/a: .*produced no audible speech"):
        render_prompts({"a": {"en": "Hi."}}, tmp_path)
    assert not (tmp_path / "en" / "a.wav").exists()


def test_hung_engine_is_killed_and_reported(tmp_path: Path, fake_engine) -> None:
    fake_engine("hang")
    with pytest.raises(
        PromptEngineError,
        match=r"did not finish within 2 s while rendering en/a; the child process was killed",
    ):
        render_prompts({"a": {"en": "Hi."}}, tmp_path, timeout_s=2)
    assert not (tmp_path / "en" / "a.wav").exists()


def test_crash_keeps_finished_prompts_and_retry_renders_the_rest(
    tmp_path: Path, fake_engine
) -> None:
    fake_engine("tone")
    texts = {"a": {"en": "Hi."}, "b": {"en": "CRASH"}, "c": {"en": "Bye."}}
    with pytest.raises(PromptEngineError, match=r"killed by SIGABRT while rendering en/b"):
        render_prompts(texts, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["entries"]) == {"en/a.wav"}
    kept = (tmp_path / "en" / "a.wav").stat().st_mtime_ns
    assert not (tmp_path / "en" / "b.wav").exists()

    texts["b"]["en"] = "Fixed."
    render_prompts(texts, tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert set(manifest["entries"]) == {"en/a.wav", "en/b.wav", "en/c.wav"}
    assert (tmp_path / "en" / "a.wav").stat().st_mtime_ns == kept
