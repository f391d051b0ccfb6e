"""The TTS engine per language (Open JTalk for Japanese, espeak-ng for English), the
fallback to espeak-ng, the cache key, and Asterisk's sounds rendered in Japanese."""

from __future__ import annotations

import ctypes.util
import json
import logging
import os
from pathlib import Path

import pytest

from ivr.asterisk.sounds import SoundFileError, link_share_dir, load_sound_texts
from ivr.audio.engines import ENGINE_SCRIPTS, probe_engine, resolve_engines
from ivr.audio.prompts import (
    _cache_key,
    _Segment,
    load_prompt_texts,
    render_prompts,
    render_sound_set,
)
from ivr.audio.wav import active_ratio, is_silent, read_wav, read_wav_info
from ivr.config import ConfigError, load_config

PROJECT = Path(__file__).resolve().parents[2]
HAVE_ESPEAK = ctypes.util.find_library("espeak-ng") is not None
HAVE_OPENJTALK = probe_engine("openjtalk") is None
needs_espeak = pytest.mark.skipif(not HAVE_ESPEAK, reason="apt-get install espeak-ng")
needs_openjtalk = pytest.mark.skipif(not HAVE_OPENJTALK, reason="pip install pyopenjtalk-plus")

KANJI = {"notice": {"ja": "この通話は、品質向上のため録音させていただいております。"}}


def manifest(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())["entries"]


@needs_openjtalk
def test_kanji_text_renders_as_speech_of_plausible_length(tmp_path: Path) -> None:
    paths = render_prompts(KANJI, tmp_path)
    path = paths[("notice", "ja")]
    info = read_wav_info(path)
    assert (info.rate, info.bits, info.channels) == (8000, 16, 1)
    # 28 morae read at about 7-8 per second, plus 0.3 s of edges: not "Chinese letter" x 8.
    assert 3.0 < info.duration < 7.0, info.duration
    samples = read_wav(path).samples
    assert not is_silent(samples, 8000)
    assert active_ratio(samples, 8000) > 0.6
    entry = manifest(tmp_path)["ja/notice.wav"]
    assert entry["engines"] == ["openjtalk"]


@needs_openjtalk
@needs_espeak
def test_engine_is_chosen_per_language(tmp_path: Path) -> None:
    texts = {"bye": {"ja": "ありがとうございました。", "en": "Goodbye."},
             "lang": {"ja": "日本語は1を。 For English, press 2."}}
    render_prompts(texts, tmp_path / "default")
    entries = manifest(tmp_path / "default")
    assert entries["ja/bye.wav"]["engines"] == ["openjtalk"]
    assert entries["en/bye.wav"]["engines"] == ["espeak"]
    # A bilingual text: each part to its own language's engine.
    assert entries["ja/lang.wav"]["engines"] == ["openjtalk", "espeak"]
    render_prompts({"bye": {"ja": "ありがとー ございました。"}}, tmp_path / "espeak",
                   engines={"ja": "espeak"})
    assert manifest(tmp_path / "espeak")["ja/bye.wav"]["engines"] == ["espeak"]


def test_unknown_or_unfit_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown TTS engine 'festival'"):
        resolve_engines({"ja": "festival"})
    with pytest.raises(ValueError, match="Open JTalk cannot speak 'en'"):
        resolve_engines({"en": "openjtalk"})
    assert resolve_engines(None) == {"ja": "openjtalk", "en": "espeak"}


def test_cache_key_includes_the_engine() -> None:
    text = "ありがとうございました。"
    jtalk = _Segment("ja", "openjtalk", "default", 1.0, text)
    espeak = _Segment("ja", "espeak", "jpx/ja", 170, text)
    assert _cache_key([jtalk], 150.0) != _cache_key([espeak], 150.0)
    assert _cache_key([jtalk], 150.0) == _cache_key([jtalk], 150.0)


@pytest.fixture
def no_openjtalk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Open JTalk child finds a pyopenjtalk that cannot be imported."""
    site = tmp_path / "broken_site" / "pyopenjtalk"
    site.mkdir(parents=True)
    (site / "__init__.py").write_text("raise ImportError('simulated: no Open JTalk here')\n")
    monkeypatch.setenv("PYTHONPATH", str(site.parent))


def test_unusable_engine_is_reported_by_the_probe(no_openjtalk: None) -> None:
    problem = probe_engine("openjtalk")
    assert problem is not None and "simulated: no Open JTalk here" in problem


@needs_espeak
def test_falls_back_to_espeak_with_a_warning_then_back_to_openjtalk(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_openjtalk: None,
) -> None:
    kana = {"bye": {"ja": "ありがとー ございました。"}}
    with caplog.at_level(logging.WARNING, logger="ivr.audio.prompts"):
        paths = render_prompts(kana, tmp_path / "out")
    assert "Open JTalk is unavailable, rendering ja with espeak-ng" in caplog.text
    assert "simulated: no Open JTalk here" in caplog.text
    assert not is_silent(read_wav(paths[("bye", "ja")]).samples, 8000)
    fallback = manifest(tmp_path / "out")["ja/bye.wav"]
    assert fallback["engines"] == ["espeak"]
    # Cached as the fallback: a second run without Open JTalk renders nothing again.
    mtime = paths[("bye", "ja")].stat().st_mtime_ns
    render_prompts(kana, tmp_path / "out")
    assert paths[("bye", "ja")].stat().st_mtime_ns == mtime
    if not HAVE_OPENJTALK:
        return
    # Once Open JTalk is back, the key (engine included) differs and it is rendered again.
    monkeypatch.delenv("PYTHONPATH")
    render_prompts(kana, tmp_path / "out")
    again = manifest(tmp_path / "out")["ja/bye.wav"]
    assert again["engines"] == ["openjtalk"] and again["key"] != fallback["key"]


def test_engine_scripts_exist() -> None:
    for script in ENGINE_SCRIPTS.values():
        assert script.is_file(), script


# --------------------------------------------------------------------------- configuration


def config_with(tmp_path: Path, prompts: str) -> Path:
    path = tmp_path / "ivr.toml"
    path.write_text(f'[prompts]\ntexts = "{PROJECT / "prompts" / "prompts.yaml"}"\n{prompts}\n'
                    f'[journey]\ndir = "{PROJECT / "dialplan"}"\n')
    return path


def test_engines_setting_is_validated_with_its_line(tmp_path: Path) -> None:
    config = load_config(config_with(tmp_path, 'engines = { ja = "openjtalk", en = "espeak" }'))
    assert config.prompts.engines == {"ja": "openjtalk", "en": "espeak"}
    assert config.sounds_path == PROJECT / "prompts" / "asterisk-sounds.yaml"
    for bad, says in (('engines = { en = "openjtalk" }', "Open JTalk speaks only Japanese"),
                      ('engines = { ja = "festival" }', "Input should be 'openjtalk' or")):
        with pytest.raises(ConfigError) as info:
            load_config(config_with(tmp_path, bad))
        (problem,) = info.value.problems
        assert problem.startswith("line 3: prompts.engines"), problem
        assert says in problem


def test_kanji_texts_need_open_jtalk(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"contains kanji"):
        load_config(config_with(tmp_path, 'engines = { ja = "espeak" }'))
    assert load_prompt_texts(PROJECT / "prompts" / "prompts.yaml")["notice"]["ja"].startswith(
        "このお電話は")


# --------------------------------------------------------------------------- Asterisk sounds


def test_sound_texts_cover_what_app_queue_and_say_ja_play() -> None:
    sounds = load_sound_texts(PROJECT / "prompts" / "asterisk-sounds.yaml")
    ja = sounds["ja"]
    for name in ("queue-youarenext", "queue-thereare", "queue-callswaiting", "queue-holdtime",
                 "queue-minute", "queue-minutes", "queue-seconds", "queue-thankyou",
                 "queue-quantity1", "queue-quantity2", "queue-reporthold"):
        assert name in ja, name
    # ast_say_number_full_ja: digits/0..19, the tens, hundred, thousand, million, minus.
    wanted = {f"digits/{n}" for n in [*range(20), *range(20, 100, 10)]}
    wanted |= {"digits/hundred", "digits/thousand", "digits/million", "digits/minus"}
    assert wanted <= set(ja)


def test_sound_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("ja:\n  queue-thereare: ただいま\n  digits/1:\n")
    with pytest.raises(SoundFileError, match=r"s\.yaml:3: ja\.digits/1: expected a text"):
        load_sound_texts(path)
    path.write_text("fr:\n  queue-thereare: Il y a\n")
    with pytest.raises(SoundFileError, match=r"s\.yaml:1: unknown language 'fr'"):
        load_sound_texts(path)


@needs_openjtalk
def test_sound_set_renders_into_language_folders(tmp_path: Path) -> None:
    done = render_sound_set({"digits/2": "に", "queue-thereare": "ただいま、お客様は"}, "ja",
                            tmp_path)
    assert done["digits/2"] == tmp_path / "ja" / "digits" / "2.wav"
    short = read_wav(done["digits/2"]).samples
    assert 0.2 < len(short) / 8000 < 1.0  # 60 ms edges: Asterisk chains these fragments
    assert not short[:400].any() and short[480:640].any()
    with pytest.raises(ValueError, match="not a safe file name"):
        render_sound_set({"../x": "に"}, "ja", tmp_path)


def test_share_dir_links_system_data_and_our_sounds(tmp_path: Path) -> None:
    chroot = tmp_path / "root"
    system = chroot / "usr" / "share" / "asterisk"
    for folder in ("moh", "documentation", "sounds/en", "sounds/en_US"):
        (system / folder).mkdir(parents=True)
    share, ours = tmp_path / "data" / "share", tmp_path / "data" / "prompts" / "asterisk"
    link_share_dir(share, ours, ["ja"], chroot)
    assert os.readlink(share / "moh") == "/usr/share/asterisk/moh"
    assert os.readlink(share / "sounds" / "en") == "/usr/share/asterisk/sounds/en"
    assert os.readlink(share / "sounds" / "ja") == str(ours / "ja")
    link_share_dir(share, ours, [], chroot)  # the language's sounds gone: link removed
    assert not (share / "sounds" / "ja").is_symlink()
    assert (share / "sounds" / "en_US").is_symlink()
