"""Top items for one user from a trained CTR model (what ``repflow recommend USER_ID --top K`` prints)."""
from __future__ import annotations

import polars as pl

from repflow.families.ctr.features import FeatureSpace, user_request
from repflow.families.ctr.models import CtrModel
from repflow.families.ctr.training import predict

__all__ = ["recommend"]


def recommend(model: CtrModel, space: FeatureSpace, interactions: pl.DataFrame, items: pl.DataFrame, user: str | int,
              *, top: int = 10, history_len: int = 20, exclude_seen: bool = True) -> pl.DataFrame:
    """The ``top`` items ``user`` has not interacted with (unless ``exclude_seen`` is False), by the model's click
    probability, highest first (ties by item row): columns ``rank`` (1-based), ``item``, ``title``, ``score``.
    ``items`` is the source's items table (for titles). A user the space does not know raises
    :class:`~repflow.families.ctr.features.UnknownUser` naming it."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top must be an int >= 1, got {top!r}")
    request = user_request(space, interactions, user, history_len=history_len, exclude_seen=exclude_seen)
    scores = predict(model, request).double()
    order = sorted(range(len(request)), key=lambda i: (-float(scores[i]), int(request.item[i])))[:top]
    picked = pl.DataFrame({"rank": list(range(1, len(order) + 1)),
                           "row": [int(request.item[i]) for i in order],
                           "score": [float(scores[i]) for i in order]})
    named = picked.join(space.items.select("row", "item"), on="row", how="left").join(
        items.select("item", "title"), on="item", how="left")
    return named.sort("rank").select("rank", "item", pl.col("title").fill_null(""), "score")
