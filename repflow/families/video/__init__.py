"""The video watermarking family (issue 16, ItoV), in progress: its networks, distortions, losses and cost
counters (``models``, ``distortions``, ``losses``, ``costs``) and its video I/O and clip sources (``video_io``,
``clips``) are written and tested; its params, stages, flow, registry and ``repflow watermark`` command are
not, so it declares no ``FAMILY`` yet and the registry does not list it."""
