"""torch.nn.Modules only. Encoders are built from a JSON-able config (see :func:`build_encoder`)."""
from repflow.families.image.models.classifiers import CLASSIFIERS, Classifier, build_classifier
from repflow.families.image.models.encoders import (ENCODERS, DualBatchNorm, ProbedEncoder, ProjectionHead, bn_branch,
                                                    build_encoder)
from repflow.families.image.models.generator import ConditionalEncoder, ConditionalGenerator, GeneratorSampler

__all__ = ["CLASSIFIERS", "Classifier", "build_classifier", "ENCODERS", "DualBatchNorm", "bn_branch", "ProbedEncoder",
           "ProjectionHead", "build_encoder", "ConditionalGenerator", "ConditionalEncoder", "GeneratorSampler"]
