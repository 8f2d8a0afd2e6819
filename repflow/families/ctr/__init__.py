"""The CTR family (issue 17, MARN on MovieLens-100K), in progress: its sources (``tables``), split, behaviour
histories and item modalities (``features``), models (``models``), training loop (``training``), metrics
(``metrics``), top-k recommendation for a user (``recommend``) and the DeepCTR-Torch peer (``peer``) are
written and tested; its params, stages, flow, registry and ``repflow recommend`` command are not, so it
declares no ``FAMILY`` yet."""
