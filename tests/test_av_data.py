"""The av family's data: espeak phoneme timing → visemes → a drawn talking face, static identity and emotion
in both modalities, frame-aligned spectra, the speaker split, and a user's own video clips read with PyAV."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from repflow.families.audio.pitch import median_f0
from repflow.families.av.clips import frame_spectra
from repflow.families.av.emotions import EMOTION_NAMES, emotion
from repflow.families.av.faces import BACKGROUND, MOUTH_OPENING, face_identity, render_face
from repflow.families.av.speakers import MAX_SPEAKERS, make_speakers, split_speakers
from repflow.families.av.synthetic import make_clip, make_corpus
from repflow.families.av.user_clips import read_user_clip
from repflow.families.av.visemes import NEUTRAL, SILENCE, VISEME_IDS, VISEMES, viseme_of
from repflow.media import speech
from repflow.media.video import write_video

SPEAKERS = make_speakers(6, seed=5)


def mouth_box(face) -> tuple[slice, slice]:
    """Rows and columns of a 64x64 frame that hold the mouth of ``face`` at any viseme or emotion."""
    y = int(face.mouth_height * 64)
    return slice(y - 6, y + 10), slice(18, 46)


def cavity_pixels(frame: np.ndarray, face, mood: str = "neutral") -> int:
    """Pixels of the mouth box close to the colour of the mouth opening, beyond those that are so in the face
    at rest (a dark skin's nose line can come close to that colour): 0 for a closed mouth."""
    rows, cols = mouth_box(face)

    def dark(image: np.ndarray) -> int:
        return int((np.abs(image[rows, cols].astype(int) - MOUTH_OPENING).sum(-1) < 60).sum())

    return dark(frame) - dark(render_face(face, mood, SILENCE))


# --- visemes and faces ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("phoneme,expected", [
    ("'a", "open"), (",aI", "open"), ("'E", "mid"), ("i:", "close-spread"), ("'O2", "mid-round"),
    ("u:", "close-round"), ("p", "bilabial"), ("b", "bilabial"), ("m", "bilabial"), ("f", "labiodental"),
    ("t2", "alveolar"), ("tS", "postalveolar"), ("_:", "silence"), ("@L", "central"), ("i@3", "close-spread")])
def test_espeak_mnemonics_map_to_their_viseme_with_stress_and_variant_marks_dropped(phoneme, expected):
    assert VISEMES[viseme_of(phoneme)].name == expected


@pytest.mark.parametrize("phoneme", ["", "Q!", "ñ", "'", "*"])
def test_unknown_phonemes_give_the_neutral_mouth(phoneme):
    assert viseme_of(phoneme) == NEUTRAL


def test_the_mouth_opens_on_vowels_and_closes_on_p_b_m_and_nothing_else_moves():
    face = SPEAKERS[0].face
    frames = {p: render_face(face, "neutral", viseme_of(p)) for p in ("'a", "'E", "u:", "p", "b", "m", "_")}
    for vowel in ("'a", "'E", "u:"):
        assert cavity_pixels(frames[vowel], face) > 4, vowel
    for closed in ("p", "b", "m", "_"):
        assert cavity_pixels(frames[closed], face) == 0, closed
    assert cavity_pixels(frames["'a"], face) > cavity_pixels(frames["'E"], face) > cavity_pixels(frames["u:"], face)
    rows, cols = mouth_box(face)
    outside = np.ones((64, 64), bool)
    outside[rows, cols] = False
    assert np.array_equal(frames["'a"][outside], frames["p"][outside])
    assert not np.array_equal(frames["'a"][rows, cols], frames["p"][rows, cols])


def test_emotion_moves_brows_and_mouth_corners_identity_changes_the_whole_face():
    face = SPEAKERS[1].face
    faces = {name: render_face(face, name, SILENCE).astype(int) for name in EMOTION_NAMES}
    brow_rows = slice(int((face.eye_height - 2.8 * face.eye_size) * 64), int((face.eye_height - 0.7 * face.eye_size)
                                                                             * 64))
    rows, cols = mouth_box(face)
    for name in ("happy", "sad", "angry"):
        assert np.abs(faces[name][brow_rows] - faces["neutral"][brow_rows]).sum() > 500, name
    assert np.abs(faces["happy"][rows, cols] - faces["sad"][rows, cols]).sum() > 500
    other = render_face(SPEAKERS[2].face, "neutral", SILENCE).astype(int)
    assert (np.abs(other - faces["neutral"]).sum(-1) > 30).mean() > 0.2
    skin = np.abs(faces["neutral"] - np.array(face.skin)).sum(-1) < 8
    assert skin.mean() > 0.2 and (np.abs(faces["neutral"] - BACKGROUND).sum(-1) == 0).mean() > 0.2


def test_faces_are_deterministic_and_bad_arguments_are_named():
    assert face_identity(7) == face_identity(7) != face_identity(8)
    assert render_face(face_identity(7), 2, 8).tobytes() == render_face(face_identity(7), "sad", VISEMES[8]).tobytes()
    with pytest.raises(ValueError, match="emotion 'bored' is not one of neutral, happy, sad, angry"):
        render_face(face_identity(7), "bored", 0)
    with pytest.raises(ValueError, match=r"viseme 99 must be a Viseme or an id in 0\.\.14"):
        render_face(face_identity(7), 0, 99)
    assert emotion(np.int64(3)).name == "angry"


# --- espeak phoneme timing --------------------------------------------------------------------------------------

def test_phoneme_events_come_in_order_inside_the_wave_and_leave_it_unchanged():
    wave, rate, events = speech.synthesize_with_phonemes("seven", voice="en-gb-scotland+m3", rate=160, pitch=40)
    plain, _ = speech.synthesize("seven", voice="en-gb-scotland+m3", rate=160, pitch=40)
    assert np.array_equal(wave, plain) and rate == 22050
    names = [e.phoneme.lstrip("'") for e in events]
    assert names[:5] == ["s", "E", "v", "@", "n"]
    starts = [e.start for e in events]
    assert starts == sorted(starts) and 0 <= starts[0] and starts[-1] <= len(wave)
    flat, _, _ = speech.synthesize_with_phonemes("seven", voice="en-gb-scotland+m3", rate=160, pitch=40, pitch_range=0)
    lively, _, _ = speech.synthesize_with_phonemes("seven", voice="en-gb-scotland+m3", rate=160, pitch=40,
                                                   pitch_range=99)
    assert abs(median_f0(lively, rate) - median_f0(flat, rate)) > 5
    with pytest.raises(ValueError, match="pitch_range 120 is outside 0..99"):
        speech.synthesize_with_phonemes("seven", voice="en-us", rate=160, pitch=40, pitch_range=120)


# --- synthetic clips -------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_clips_are_deterministic_and_shaped_for_batching():
    a = make_clip("three seven", SPEAKERS[0], "happy", blink_at=0.4)
    b = make_clip("three seven", SPEAKERS[0], "happy", blink_at=0.4)
    for field in ("frames", "audio", "spectra", "visemes"):
        assert getattr(a, field).tobytes() == getattr(b, field).tobytes(), field
    assert a.frames.shape == (30, 64, 64, 3) and a.frames.dtype == np.uint8
    assert a.audio.shape == (30 * 640,) and a.audio.dtype == np.float32 and a.sample_rate == 16000
    assert a.spectra.shape == (30, 257) and a.spectra.dtype == np.float32 and (a.spectra > 0).all()
    assert a.visemes.shape == (30,) and (a.speaker, a.emotion, a.fps) == (0, 1, 25.0)
    other = make_clip("three seven", SPEAKERS[0], "happy", onset=0.15)
    assert not np.array_equal(a.audio, other.audio)


def test_identity_and_emotion_are_static_across_a_clip_only_the_mouth_and_blink_move():
    speaker = SPEAKERS[3]
    clip = make_clip("four, nine", speaker, "angry", blink_at=0.6)
    rows, cols = mouth_box(speaker.face)
    eye_rows = slice(int((speaker.face.eye_height - 0.08) * 64), int((speaker.face.eye_height + 0.05) * 64))
    still = np.ones((64, 64), bool)
    still[rows, cols] = False
    still[eye_rows] = False
    assert all(np.array_equal(frame[still], clip.frames[0][still]) for frame in clip.frames)
    assert len({frame[rows, cols].tobytes() for frame in clip.frames}) >= 4
    eyes = [frame[eye_rows].tobytes() for frame in clip.frames]
    blinking = [i for i, e in enumerate(eyes) if e != eyes[0]]
    assert blinking and 0.55 <= blinking[0] / 25 <= 0.65 and len(blinking) <= 5


@pytest.mark.slow
def test_happy_speech_is_higher_and_faster_than_sad_speech_of_the_same_speaker():
    for speaker in SPEAKERS[:2]:
        happy = make_clip("nine", speaker, "happy", onset=0.0)
        sad = make_clip("nine", speaker, "sad", onset=0.0)
        assert median_f0(happy.audio, 16000) > 1.1 * median_f0(sad.audio, 16000), speaker.voice
        voiced = [np.flatnonzero(np.abs(c.audio) > 0.02) for c in (happy, sad)]
        assert voiced[0][-1] < voiced[1][-1], speaker.voice


@pytest.mark.slow
def test_spectra_follow_the_audio_frame_by_frame_and_pauses_close_the_mouth():
    speaker = SPEAKERS[4]
    clip = make_clip("one, two", speaker, "neutral", onset=0.1)
    assert len(clip.spectra) == len(clip.frames) == len(clip.visemes) == 30
    energy = np.log10(clip.spectra.sum(1))
    silent = clip.visemes == SILENCE
    inner = np.flatnonzero(silent & (np.arange(30) > np.flatnonzero(~silent)[0])
                           & (np.arange(30) < np.flatnonzero(~silent)[-1]))
    assert len(inner) >= 2, clip.visemes
    vowels = np.isin(clip.visemes, [VISEME_IDS[v] for v in ("open", "mid", "close-round", "close-spread")])
    assert energy[vowels].min() > energy[inner[1:-1] if len(inner) > 2 else inner].max() + 1.0
    assert energy[:2].max() < energy[vowels].min() - 3
    assert all(cavity_pixels(clip.frames[i], speaker.face) == 0 for i in np.flatnonzero(silent))
    assert all(cavity_pixels(clip.frames[i], speaker.face) > 4 for i in np.flatnonzero(vowels))
    later = make_clip("one, two", speaker, "neutral", onset=0.3)
    assert np.array_equal(later.visemes[5:], clip.visemes[:-5])
    np.testing.assert_allclose(later.spectra[6:-1], clip.spectra[1:-6], rtol=1e-3, atol=1e-8)
    assert np.array_equal(later.frames[5:], clip.frames[:-5])


@pytest.mark.parametrize("fps", [25.0, 29.97])
def test_frame_spectra_place_a_tone_burst_in_its_frames(fps):
    rate, n_frames = 16000, 40
    audio = np.zeros(int(round(n_frames * rate / fps)), np.float32)
    start, stop = int(round(10 * rate / fps)), int(round(20 * rate / fps))
    audio[start:stop] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(stop - start) / rate)
    spectra = frame_spectra(audio, rate, fps, n_frames)
    assert spectra.shape == (n_frames, 257)
    loud = spectra.sum(1) > 1.0
    assert loud[11:19].all() and not loud[:9].any() and not loud[21:].any()
    assert (spectra[11:19].argmax(1) == 32).all()


@pytest.mark.slow
def test_corpus_is_seeded_balanced_and_restricted_to_the_speakers_asked_for():
    clips = list(make_corpus(3, 4, seed=1, speaker_ids=[0, 2]))
    again = list(make_corpus(3, 4, seed=1, speaker_ids=[2]))
    assert [c.speaker for c in clips] == [0] * 4 + [2] * 4
    assert [c.name for c in clips] == [f"s{s:03d}-c{k:04d}" for s in (0, 2) for k in range(4)]
    assert sorted(c.emotion for c in clips[:4]) == [0, 1, 2, 3]
    assert all(a.audio.tobytes() == b.audio.tobytes() and a.text == b.text for a, b in zip(clips[4:], again))
    assert all(c.frames.shape == (30, 64, 64, 3) and c.spectra.shape == (30, 257) for c in clips)
    assert all(1 <= len(c.text.replace(",", "").split()) <= 2 for c in clips)
    assert len({c.emotion for c in make_corpus(12, 1, seed=1)}) > 1
    with pytest.raises(ValueError, match=r"speaker_ids \[5\] are not among the 3 speakers"):
        make_corpus(3, 1, seed=1, speaker_ids=[5])
    with pytest.raises(ValueError, match="max_onset 2.0 must be in"):
        make_corpus(3, 1, seed=1, max_onset=2.0)


# --- speakers --------------------------------------------------------------------------------------------------

def test_speakers_have_distinct_voices_and_a_prefix_is_stable():
    many = make_speakers(40, seed=2)
    assert len({s.voice for s in many}) == 40 and [s.id for s in many] == list(range(40))
    assert make_speakers(5, seed=2)[:5] == many[:5]
    assert make_speakers(5, seed=3)[0] != many[0]
    with pytest.raises(ValueError, match=f"n_speakers {MAX_SPEAKERS + 1} must be an integer in 1..{MAX_SPEAKERS}"):
        make_speakers(MAX_SPEAKERS + 1, seed=0)


def test_split_puts_every_speaker_in_exactly_one_split():
    speakers = make_speakers(20, seed=0)
    split = split_speakers(speakers, seed=4)
    assert [len(split[k]) for k in ("train", "val", "test")] == [14, 2, 4]
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(20))
    assert split == split_speakers(range(20), seed=4) != split_speakers(range(20), seed=5)
    assert split_speakers(range(3), seed=0, val_fraction=0.0, test_fraction=0.1)["val"] == ()
    with pytest.raises(ValueError, match="2 speakers cannot fill val"):
        split_speakers(range(2), seed=0)
    with pytest.raises(ValueError, match="speakers must be distinct"):
        split_speakers([1, 1, 2, 3], seed=0)


# --- a user's clips --------------------------------------------------------------------------------------------

def write_aac(path: Path, audio: np.ndarray, rate: int) -> Path:
    """``audio`` (float mono) as AAC in an .m4a, the sound a phone video carries."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        frame = av.AudioFrame.from_ndarray(audio[None, :].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.mark.slow
def test_a_user_clip_round_trips_through_an_mp4_with_aac_sound(tmp_path):
    clip = make_clip("zero, six", SPEAKERS[5], "sad", n_frames=36)
    m4a = write_aac(tmp_path / "sound.m4a", clip.audio, 16000)
    video = write_video(tmp_path / "mine.mp4", clip.frames, clip.fps, audio_from=m4a)
    back = read_user_clip(video)
    assert back.frames.shape == (36, 64, 64, 3) and back.spectra.shape == (36, 257) and back.fps == 25.0
    assert back.audio.shape == clip.audio.shape and (back.visemes == -1).all() and back.name == str(video)
    assert float(np.mean(np.abs(back.frames.astype(int) - clip.frames))) < 4.0
    assert np.corrcoef(back.audio, clip.audio)[0, 1] > 0.9
    loud, loud_back = (np.log10(s.sum(1)) > -2 for s in (clip.spectra, back.spectra))
    assert (loud == loud_back).mean() > 0.9
    shorter = read_user_clip(video, max_frames=32, sample_rate=8000, size=32)
    assert shorter.frames.shape == (32, 32, 32, 3) and shorter.audio.shape == (32 * 320,)


def test_user_clip_audio_is_aligned_at_another_frame_and_sample_rate(tmp_path):
    fps, rate, n_frames = 30, 48000, 30
    audio = np.zeros(n_frames * rate // fps, np.float32)
    audio[10 * 1600:20 * 1600] = 0.5 * np.sin(2 * np.pi * 1000 * np.arange(10 * 1600) / rate)
    frames = np.zeros((n_frames, 48, 80, 3), np.uint8)
    video = write_video(tmp_path / "wide.mov", frames, fps, audio_from=write_aac(tmp_path / "t.m4a", audio, rate))
    clip = read_user_clip(video)
    assert clip.frames.shape == (30, 64, 64, 3) and clip.audio.shape == (16000,)
    loud = clip.spectra.sum(1) > 1.0
    assert loud[11:19].all() and not loud[:9].any() and not loud[21:].any()


def test_user_clips_without_sound_too_short_or_not_video_are_errors_naming_the_file(tmp_path):
    frames = np.zeros((40, 64, 64, 3), np.uint8)
    silent = write_video(tmp_path / "silent.mp4", frames, 25)
    with pytest.raises(ValueError, match=f"{silent} has no audio stream"):
        read_user_clip(silent)
    m4a = write_aac(tmp_path / "s.m4a", np.zeros(8000, np.float32), 16000)
    short = write_video(tmp_path / "short.mp4", frames[:12], 25, audio_from=m4a)
    with pytest.raises(ValueError, match=f"{short} has 12 video frames, fewer than min_frames=30"):
        read_user_clip(short)
    assert read_user_clip(short, min_frames=12).frames.shape[0] == 12
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    with pytest.raises(ValueError, match=f"{text} is not a decodable video"):
        read_user_clip(text)
    with pytest.raises(ValueError, match=f"{m4a} is not a video: it has no video stream"):
        read_user_clip(m4a)
    with pytest.raises(ValueError, match="does not exist"):
        read_user_clip(tmp_path / "missing.mp4")
    with pytest.raises(ValueError, match="max_frames 5 must be None or an integer >= min_frames"):
        read_user_clip(short, max_frames=5)
