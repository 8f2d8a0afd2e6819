"""The super-resolution family: SHSR (Liu et al., "Sequential Hierarchical Learning with Distribution
Transformation for Image Super-Resolution", ACM TOMM 2023, arXiv 2007.09552) against an EDSR baseline of
similar size and bicubic interpolation.

Networks and their registry live in :mod:`.models`; self-ensemble, MAC / parameter counts and tiled
upscaling of images of any size in :mod:`.inference`. Both need torch alone.
"""
