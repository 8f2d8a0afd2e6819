"""The audio family: self-supervised audio representations with adversarial positional negatives.

prep (espeak speech synthesised in-process, Debian's asterisk recordings, or a user's class folders → flac
shards) → train (an AudioNTT-style CNN on normalised log-mel: ``baseline`` SimCLR on BYOL-A views, or
``advneg`` with positional negatives) → evaluate (linear probes per label, position sensitivity, PGD on
waveforms) → register (``repflow-audio-encoder``; alias gated on the mean probe accuracy).
Its params live under ``audio:`` in ``params.yaml``; ``repflow embed-audio FILE.wav`` uses the registered encoder.

The declaration is read on first use of ``FAMILY`` (the registry's discovery does that), so importing an
algorithm of this package (``repflow.families.audio.advneg``) needs torch alone, as on a GPU box.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.audio.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
