"""The one walk over a user's folder (:func:`repflow.sources.folder_files`) every folder source uses: links that
loop or leave the folder are skipped and listed, a file reached twice is read once; an audio folder holding a
link to itself (the issue-31 case: it became a third class with a copy of every clip) reads two
classes; label defaults follow the source."""
from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile

from repflow.sources import folder_files


def _tree(tmp_path):
    root = tmp_path / "sounds"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            soundfile.write(root / label / f"{label}{i}.wav", np.full(800, 0.1 * (i + 1), np.float32), 8000)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    soundfile.write(outside / "stray.wav", np.zeros(800, np.float32), 8000)
    os.symlink(root, root / "everything")  # a link to the folder itself
    os.symlink(outside, root / "more")  # a folder link that leaves
    os.symlink(root / "cat" / "cat0.wav", root / "dog" / "also-cat0.wav")  # a file reached twice
    os.symlink(tmp_path / "gone.wav", root / "dog" / "broken.wav")
    return root


def test_links_that_loop_or_leave_are_skipped_and_a_file_reached_twice_is_read_once(tmp_path):
    root = _tree(tmp_path)
    walk = folder_files(root, {".wav"})
    assert [p.relative_to(root).as_posix() for p in walk.files] == ["cat/cat0.wav", "cat/cat1.wav", "dog/dog0.wav",
                                                                   "dog/dog1.wav"]
    reasons = {os.path.relpath(s["file"], root): s["reason"] for s in walk.skipped}
    assert set(reasons) == {"everything", "more", "dog/also-cat0.wav", "dog/broken.wav"}
    assert "loops back" in reasons["everything"] and "leaves the folder" in reasons["more"]
    assert "same file as" in reasons["dog/also-cat0.wav"] and "broken" in reasons["dog/broken.wav"]
    flat = folder_files(root / "dog", {".wav"}, recursive=False)
    assert [p.name for p in flat.files] == ["dog0.wav", "dog1.wav"]  # its link into ../cat leaves dog/
    assert any("leaves the folder" in s["reason"] for s in flat.skipped)


def test_an_audio_folder_linking_to_itself_reads_two_classes_once(tmp_path):
    from repflow.families.audio.sources import read_audiofolder

    root = _tree(tmp_path)
    clips = read_audiofolder(root, sample_rate=8000, max_seconds=1.0)
    assert sorted(set(clips.labels["label"])) == ["cat", "dog"]
    assert len(clips.waveforms) == 4
    assert {os.path.relpath(s["file"], root) for s in clips.skipped} >= {"everything", "more", "dog/also-cat0.wav"}


def test_label_defaults_follow_the_source():
    """The README's audio example (an audiofolder, stratified by its only label) loads with the shipped
    params.yaml: the attacked probe task defaults to a label the source has."""
    from repflow.config import ParamsError
    from repflow.family import load_params
    from repflow.families.audio.sources import attack_task, stratify_label
    from tests.conftest import REPO

    folder = load_params(REPO / "params.yaml", ["audio.prep.source=audiofolder", "audio.prep.path=/tmp",
                                                "audio.prep.stratify=label"])
    assert (attack_task(folder), stratify_label(folder)) == ("label", "label")
    assert stratify_label(load_params(REPO / "params.yaml", ["audio.prep.source=audiofolder"])) == "label"
    espeak = load_params(REPO / "params.yaml", [])
    assert (attack_task(espeak), stratify_label(espeak)) == ("word", "word")
    with pytest.raises(ParamsError, match="audio.evaluate.attack_task"):
        load_params(REPO / "params.yaml", ["audio.prep.source=audiofolder", "audio.evaluate.attack_task=word"])
