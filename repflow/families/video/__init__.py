"""The video watermarking family (issue 16): hide a bit string in a video so that it survives real H.264
compression and other distortions, and read it back.

So far this package holds the video I/O (:mod:`repflow.families.video.video_io`: PyAV decode, atomic H.264
write keeping the audio, in-memory H.264 round trip) and the clip sources
(:mod:`repflow.families.video.clips`: fixed-size clips of T frames from real videos and pan/zoom clips from
real photos). The family is not declared yet.
"""
