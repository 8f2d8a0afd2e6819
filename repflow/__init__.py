"""repflow: an orchestrated pipeline for robust and generative representation learning.

Users touch ``params.yaml``, ``dvc.yaml``, the flows in ``flows/`` and the ``repflow`` command;
everything else is internal. The runtime (config, shards, tracking, cluster) and the pure
algorithms live in this package and need only torch to import the algorithms.
"""
__version__ = "0.1.0"
