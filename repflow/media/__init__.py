"""Decoders and encoders that two or more families use: :mod:`repflow.media.speech` (in-process espeak-ng speech
synthesis, with phoneme timing) and :mod:`repflow.media.video` (video files in and out through PyAV, and the
in-memory H.264 round trip). They know no family: numpy arrays in and out, importable with numpy, PyAV and the
espeakng-loader wheel alone (no runtime, no tracking, no orchestration).
"""
