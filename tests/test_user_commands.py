"""The pieces that keep the user commands' memory bounded and their outputs whole: a PNG written strip by strip,
embed-audio reading only the centre window of a long file (giving the samples the whole file's resampling gives),
and watermark embed failing with no output on a decode error part-way."""
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


def test_a_decode_error_part_way_fails_the_embed_and_leaves_no_output(tmp_path, monkeypatch):
    """A video whose stream breaks off after 6 of 19 frames: ``watermark embed`` used to write the 6 frames and
    exit 0; now it is a SourceError naming the file, and no output (or temporary file) is left."""
    import av

    from repflow.media import video as video_io
    from repflow.families.video.watermark import embed_video, parse_message
    from repflow.sources import SourceError
    from tests.test_video_family import SpreadSpectrum
    from tests.test_video_io import make_video_with_audio, moving_frames

    src = tmp_path / "holiday.mp4"
    make_video_with_audio(src, moving_frames(19, 48, seed=3)[:, :40])
    real_open = video_io.av.open

    class BreaksOff:
        def __init__(self, container):
            self._container = container

        def __getattr__(self, name):
            return getattr(self._container, name)

        def decode(self, *args, **kwargs):
            for i, frame in enumerate(self._container.decode(*args, **kwargs)):
                if i == 6:
                    raise av.InvalidDataError(1094995529, "Invalid data found when processing input")
                yield frame

    monkeypatch.setattr(video_io.av, "open", lambda path, *a, **k: real_open(path, *a, **k) if a or k
                        else BreaksOff(real_open(path)))
    with pytest.raises(SourceError, match=r"holiday\.mp4 is not a decodable video.*after 6 frames"):
        embed_video(SpreadSpectrum(T=4, L=8, size=16), 16, 4, src, tmp_path / "marked.mp4", parse_message("a7", 8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.mp4"]
