"""The image family's methods as `repflow families` lists them (interim list until the method registries land)."""
from __future__ import annotations

from repflow.family import Method


def listed_methods() -> list[Method]:
    return [Method("simclr", "train", "contrastive", "Chen et al. 2020, SimCLR"),
            Method("genrep", "train", "contrastive", "Jahanian et al. 2022, GenRep"),
            Method("acl", "train", "contrastive", "Jiang et al. 2020, ACL"),
            Method("dynacl", "train", "contrastive", "Luo et al. 2023, DynACL"),
            Method("rcs", "select", None, "Xu et al. 2023, RCS"),
            Method("glad", "distill", None, "Cazenavette et al. 2023, GLaD")]
