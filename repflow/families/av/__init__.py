"""Audio-visual speech groundwork (family ``av``): synthetic talking-face clips, espeak-ng speech with phoneme-
driven mouths, static speaker identity and emotion in both modalities, and a reader for a user's own video clips;
the data for MDVAE-style multimodal dynamical VAEs."""
