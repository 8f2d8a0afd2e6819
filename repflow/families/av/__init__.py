"""The audio-visual family (issue 19, MDVAE: a multimodal dynamical VAE of talking faces with speech), in
progress: synthetic talking-face clips with espeak-ng speech and phoneme-driven mouths, static speaker identity
and emotion in both modalities, a reader for a user's own clips (``visemes``, ``emotions``, ``faces``,
``speakers``, ``clips``, ``synthetic``, ``user_clips``); per-modality VQ-VAEs, MDVAE and its unimodal and
per-frame baselines, one training loop, few-label and information probes, latent swaps and face denoising
(``vqvae``, ``blocks``, ``mdvae``, ``baselines``, ``training``, ``probes``, ``swaps``) are written and tested;
its params, stages, flow and benchmark are not, so it declares no ``FAMILY`` yet."""
