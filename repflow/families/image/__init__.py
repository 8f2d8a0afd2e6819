"""The image family: GenRep, RCS, ACL/DynACL, SVD-SSA, GLaD and the survey's pretexts on one image DAG.

prep → generate → distill / select → train → evaluate; zoo → transfer; register; compare (on demand). Its
params sections sit at the top level of ``params.yaml`` (it is the default family).

The declaration is read on first use of ``FAMILY`` (the registry's discovery does that), so importing an
algorithm of this package (``repflow.families.image.coreset``) needs torch alone, as on a GPU box.
"""


def __getattr__(name: str):
    if name == "FAMILY":
        from repflow.families.image.declaration import FAMILY

        return FAMILY
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
