"""The audio family's sources: in-process espeak-ng synthesis, the asterisk prompt folders and class folders."""
from __future__ import annotations

import re

import numpy as np
import pytest
import soundfile

from repflow.families.audio.pitch import median_f0
from repflow.families.audio.sources import SOURCE_LABELS, SourceError, read_audio_source
from repflow.media import speech

WORDS = ("zero", "seven", "go")


def _tone(seconds: float, rate: int, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


# --- espeak -------------------------------------------------------------------------------------------------

def test_synthesize_is_byte_identical_across_calls_and_other_voices_in_between():
    first, rate = speech.synthesize("seven", voice="en-gb-scotland+f3", rate=160, pitch=42)
    speech.synthesize("left", voice="en-us+klatt2", rate=300, pitch=90)
    again, _ = speech.synthesize("seven", voice="en-gb-scotland+f3", rate=160, pitch=42)
    other, _ = speech.synthesize("seven", voice="en-gb-scotland+f3", rate=160, pitch=43)
    assert rate == 22050 and first.dtype == np.float32 and first.ndim == 1
    assert 0.2 < len(first) / rate < 1.5 and 0.05 < np.abs(first).max() <= 1.0
    assert first.tobytes() == again.tobytes()
    assert first.tobytes() != other.tobytes()


def test_pitch_parameter_raises_measured_f0_for_male_and_female_variants():
    for voice in ("en-us+m3", "en-gb+f3"):
        f0 = [median_f0(*speech.synthesize("zero", voice=voice, rate=160, pitch=p)) for p in (10, 50, 90)]
        assert f0[0] * 1.15 < f0[1] and f0[1] * 1.15 < f0[2], (voice, f0)


@pytest.mark.parametrize("kwargs, message", [
    ({"voice": "en-xx+m3"}, r"'en-xx\+m3'.*unknown accent 'en-xx'"),
    ({"voice": "en-us+nosuchvariant"}, r"unknown variant 'nosuchvariant'"),
    ({"voice": "en-us+m3+f1"}, r"'accent\+variant'"),
    ({"rate": 500}, r"rate 500 is outside 80\.\.450"),
    ({"rate": 79}, r"rate 79 is outside 80\.\.450"),
    ({"pitch": 100}, r"pitch 100 is outside 0\.\.99"),
    ({"pitch": 2.5}, r"pitch must be an integer in 0\.\.99"),
    ({"pitch": True}, r"pitch must be an integer"),
])
def test_synthesize_rejects_bad_voice_rate_pitch(kwargs, message):
    args = {"voice": "en-us+m3", "rate": 160, "pitch": 50, **kwargs}
    with pytest.raises(ValueError, match=message):
        speech.synthesize("go", **args)


def test_variants_and_accents_come_from_the_bundled_data():
    variants = speech.available_variants()
    assert {"m1", "m8", "f5", "whisper"} <= set(variants) and variants == sorted(variants)
    assert set(speech.ENGLISH_ACCENTS) <= set(speech.available_accents())


@pytest.mark.slow
def test_espeak_source_is_deterministic_per_seed_and_labels_match_the_draws():
    a = read_audio_source("espeak", sample_rate=16000, seed=3, words=WORDS, clips_per_word=4)
    b = read_audio_source("espeak", sample_rate=16000, seed=3, words=WORDS, clips_per_word=4)
    c = read_audio_source("espeak", sample_rate=16000, seed=4, words=WORDS, clips_per_word=4)
    assert a.names == b.names and a.labels == b.labels
    assert all(x.tobytes() == y.tobytes() for x, y in zip(a.waveforms, b.waveforms))
    assert a.names != c.names
    n = len(WORDS) * 4
    assert len(a.waveforms) == len(a.names) == n and set(a.labels) == set(SOURCE_LABELS["espeak"])
    assert all(len(v) == n for v in a.labels.values())
    assert a.labels["word"] == [w for w in WORDS for _ in range(4)]
    for i, name in enumerate(a.names):
        word, accent, variant, rate, pitch = re.fullmatch(r"\d+_(\w+)_([\w-]+)\+(\w+)_r(\d+)_p(\d+)", name).groups()
        assert (word, accent, variant) == (a.labels["word"][i], a.labels["accent"][i], a.labels["voice"][i])
        assert 120 <= int(rate) <= 220
        expected_band = "low" if int(pitch) <= 33 else "mid" if int(pitch) <= 66 else "high"
        assert a.labels["pitch_band"][i] == expected_band, name
        # the clip is the synthesis its name describes, resampled 22050 -> 16000 Hz
        native, _ = speech.synthesize(word, voice=f"{accent}+{variant}", rate=int(rate), pitch=int(pitch))
        assert len(a.waveforms[i]) == int(np.ceil(len(native) * 16000 / 22050))
        assert a.waveforms[i].dtype == np.float32 and np.abs(a.waveforms[i]).max() <= 1.0
    assert a.sample_rate == 16000 and "espeak-ng 1.52" in a.origin


@pytest.mark.slow
def test_espeak_source_higher_pitch_band_has_higher_f0():
    clips = read_audio_source("espeak", sample_rate=16000, seed=0, words=WORDS, clips_per_word=15)
    log_f0 = np.log([median_f0(w, clips.sample_rate) for w in clips.waveforms])
    bands = np.array(clips.labels["pitch_band"])
    means = [log_f0[bands == b].mean() for b in ("low", "mid", "high")]
    assert means[0] < means[1] < means[2], np.exp(means)


@pytest.mark.slow
def test_espeak_source_other_band_counts_and_cut():
    clips = read_audio_source("espeak", sample_rate=8000, seed=1, words=("seven",), clips_per_word=12,
                              pitch_bands=5, max_seconds=0.1)
    assert set(clips.labels["pitch_band"]) <= {f"band{i}" for i in range(5)}
    assert all(len(w) <= 800 for w in clips.waveforms)


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "nope"}, r"unknown audio source 'nope'; allowed: espeak, asterisk, audiofolder"),
    ({"sample_rate": 4000}, r"sample_rate 4000 must be an integer in 8000\.\.48000"),
    ({"sample_rate": 96000}, r"sample_rate 96000"),
    ({"words": ("go", "go")}, r"words repeat"),
    ({"clips_per_word": 0}, r"clips_per_word 0"),
    ({"pitch_bands": 0}, r"pitch_bands 0 must be an integer in 1\.\.100"),
    ({"max_seconds": 0}, r"max_seconds 0"),
    ({"path": "/tmp"}, r"espeak: .* reads no folder"),
])
def test_read_audio_source_rejects_bad_arguments_before_work(kwargs, message):
    args = {"source": "espeak", "sample_rate": 16000, "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        read_audio_source(args.pop("source"), **args)


# --- audiofolder --------------------------------------------------------------------------------------------

def _folder(tmp_path):
    root = tmp_path / "clips"
    (root / "cat").mkdir(parents=True)
    (root / "dog").mkdir()
    soundfile.write(root / "cat" / "a.wav", _tone(0.5, 16000), 16000)
    stereo = np.stack([_tone(0.25, 44100, 330), 0.5 * _tone(0.25, 44100, 330)], axis=1)
    soundfile.write(root / "cat" / "b.FLAC", stereo, 44100)
    soundfile.write(root / "dog" / "c.ogg", _tone(0.4, 22050, 440), 22050, format="OGG")
    (root / "dog" / "broken.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    soundfile.write(root / "dog" / "empty.wav", np.zeros(0, np.float32), 16000)
    (root / "dog" / "notes.txt").write_text("not audio")
    return root


def test_audiofolder_reads_wav_flac_ogg_and_lists_undecodable(tmp_path):
    root = _folder(tmp_path)
    clips = read_audio_source("audiofolder", sample_rate=16000, seed=0, path=str(root))
    assert clips.names == ["cat/a.wav", "cat/b.FLAC", "dog/c.ogg"]
    assert clips.labels == {"label": ["cat", "cat", "dog"]}
    assert sorted(s["file"].rsplit("/", 1)[1] for s in clips.skipped) == ["broken.wav", "empty.wav"]
    assert all(s["error"] for s in clips.skipped)
    assert [len(w) for w in clips.waveforms] == [8000, 4000, int(np.ceil(0.4 * 22050 * 16000 / 22050))]
    assert all(w.dtype == np.float32 and w.ndim == 1 and np.abs(w).max() <= 1.0 for w in clips.waveforms)
    assert clips.origin == str(root) and clips.sample_rate == 16000


@pytest.mark.slow
def test_audiofolder_averages_stereo_and_resamples_to_the_asked_rate(tmp_path):
    root = _folder(tmp_path)
    native = read_audio_source("audiofolder", sample_rate=44100, seed=0, path=str(root))
    mono = native.waveforms[native.names.index("cat/b.FLAC")]
    np.testing.assert_allclose(mono, 0.75 * _tone(0.25, 44100, 330), atol=2e-4)
    for rate in (8000, 48000):
        clips = read_audio_source("audiofolder", sample_rate=rate, seed=0, path=str(root))
        assert len(clips.waveforms[0]) == round(0.5 * rate)
        f0 = median_f0(clips.waveforms[0], rate)
        assert abs(f0 - 220) < 5, f0
    cut = read_audio_source("audiofolder", sample_rate=16000, seed=0, path=str(root), max_seconds=0.1)
    assert [len(w) for w in cut.waveforms] == [1600, 1600, 1600]


def test_audiofolder_with_only_undecodable_files_names_the_folder(tmp_path):
    root = tmp_path / "bad"
    (root / "x").mkdir(parents=True)
    for name in ("one.wav", "two.flac"):
        (root / "x" / name).write_bytes(b"RIFF....garbage" * 10)
    with pytest.raises(SourceError, match=rf"none of the 2 audio files under {re.escape(str(root))}.*first error"):
        read_audio_source("audiofolder", sample_rate=16000, seed=0, path=str(root))


def test_audiofolder_missing_or_flat_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        read_audio_source("audiofolder", sample_rate=16000, seed=0, path=str(tmp_path / "nope"))
    soundfile.write(tmp_path / "loose.wav", _tone(0.1, 8000), 8000)
    with pytest.raises(SourceError, match="no class sub-folders"):
        read_audio_source("audiofolder", sample_rate=16000, seed=0, path=str(tmp_path))


# --- asterisk -----------------------------------------------------------------------------------------------

def test_asterisk_labels_word_and_language_and_skips_alias_links(tmp_path):
    root = tmp_path / "sounds"
    for voice, files in {"en_US_f_Allison": ["digits/7", "letters/a", "goodbye"],
                         "es_MX_f_Allison": ["digits/7"]}.items():
        for f in files:
            (root / voice / f).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(root / voice / f"{f}.wav", _tone(0.3, 8000), 8000, subtype="PCM_16")
    (root / "en").symlink_to(root / "en_US_f_Allison")
    clips = read_audio_source("asterisk", sample_rate=16000, seed=0, path=str(root))
    assert clips.names == ["en_US_f_Allison/digits/7.wav", "en_US_f_Allison/goodbye.wav",
                           "en_US_f_Allison/letters/a.wav", "es_MX_f_Allison/digits/7.wav"]
    assert clips.labels == {"word": ["digits/7", "goodbye", "letters/a", "digits/7"],
                            "language": ["en", "en", "en", "es"]}
    assert all(len(w) == 4800 for w in clips.waveforms)


def test_asterisk_missing_folder_says_what_to_install(tmp_path):
    with pytest.raises(SourceError, match=r"nope.*apt-get install asterisk-core-sounds-en-wav"):
        read_audio_source("asterisk", sample_rate=16000, seed=0, path=str(tmp_path / "nope"))
