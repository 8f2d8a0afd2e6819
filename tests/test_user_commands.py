"""The pieces that keep the user commands' memory bounded: a PNG written strip by strip, and embed-audio reading
only the centre window of a long file (giving the samples the whole file's resampling gives)."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

from repflow.families.sr.png import PngRowWriter


def test_a_png_written_strip_by_strip_reads_back_exactly(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (37, 23, 3), dtype=np.uint8)
    with PngRowWriter(tmp_path / "out.png", 23, 37) as png:
        for start in range(0, 37, 10):
            png.write(pixels[start:start + 10])
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png")), pixels)
    with pytest.raises(ValueError, match="10 of 37 rows"):
        with PngRowWriter(tmp_path / "short.png", 23, 37) as png:
            png.write(pixels[:10])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # nothing half-written is left


@pytest.mark.parametrize("rate, seconds", [(44100, 7.3), (16000, 3.0), (8000, 0.5), (22050, 11.0)])
def test_embed_audio_reads_the_centre_window_as_the_whole_file_gives_it(tmp_path, rate, seconds):
    import torchaudio

    from repflow.families.audio.commands import read_centre
    from repflow.families.audio.features import fix_length

    wave = np.random.default_rng(1).normal(0, 0.1, (int(rate * seconds), 2)).astype(np.float32)
    soundfile.write(tmp_path / "a.wav", wave, rate, subtype="FLOAT")
    window, length = read_centre(tmp_path / "a.wav", 16000, 16000)
    whole = torch.from_numpy(wave.mean(axis=1))
    if rate != 16000:
        whole = torchaudio.functional.resample(whole, rate, 16000)
    assert length == pytest.approx(seconds, abs=1e-3)
    assert torch.allclose(fix_length(window[None], 16000), fix_length(whole[None], 16000), atol=1e-5)
