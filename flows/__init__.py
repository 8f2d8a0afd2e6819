"""Prefect flows: they wire stages into DAGs. No math, no file formats here."""
