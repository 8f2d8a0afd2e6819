"""The video watermarking family (issue 16, ItoV, arXiv 2305.02781): an image watermarking network (HiDDeN
style) adapted to video by merging time into channels, against a per-frame image model and a 3-D conv model.

``models`` (encoders, decoders, watermarkers, critic), ``distortions`` (the noise layer between embedding and
extraction), ``losses`` (fidelity, message, frame loss, bit accuracy, per-frame PSNR) and ``costs``
(parameters and MACs) are pure torch: tensors in, tensors out.
"""
