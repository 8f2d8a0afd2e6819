"""Built-in families, one sub-package each (found by the registry in :mod:`repflow.family`, not imported here)."""
