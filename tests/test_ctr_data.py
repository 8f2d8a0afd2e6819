"""The CTR family's data: sources (ml-100k from the recbole wheel, the user's own table and its bad inputs),
the time split, behaviour histories checked against a brute-force recomputation, train-only features, the
user lookup for recommendations, and parquet persistence. Tiny tables the tests write themselves."""
from __future__ import annotations


import numpy as np
import polars as pl
import pytest
import torch

from repflow.families.ctr.features import (
    CTR_PRIOR_IMPRESSIONS, PAD, UNKNOWN, UnknownUser, build_examples, build_feature_space, examples_to_tensors,
    load_space, save_space, time_split, tokenize_title, user_request, user_row)
from repflow.families.ctr.tables import (
    SourceError, read_ctr_source, read_interaction_table, read_movielens, write_parquet_atomic)
from tests.ctr_tiny import COLUMNS, tiny_frame, write_tiny


@pytest.fixture
def tiny(tmp_path):
    tables = read_interaction_table(write_tiny(tmp_path), COLUMNS)
    split, cuts = time_split(tables.interactions)
    return tables, split, cuts


def test_movielens_from_the_recbole_wheel():
    tables = read_movielens()
    inter, items = tables.interactions, tables.items
    assert inter.height == 100_000 and inter["user"].n_unique() == 943 and items.height == 1682
    assert abs(inter["click"].cast(pl.Float64).mean() - 0.554) < 0.001
    assert set(inter["item"].unique().to_list()) <= set(items["item"].to_list())
    assert items["year"].null_count() == 2
    toy = items.filter(pl.col("item") == "1").row(0, named=True)
    assert toy["title"] == "Toy Story" and toy["genres"] == ["Animation", "Children's", "Comedy"]


def test_own_table_csv_and_parquet_agree(tmp_path):
    csv = read_interaction_table(write_tiny(tmp_path, ".csv"), COLUMNS)
    parquet = read_ctr_source("table", path=write_tiny(tmp_path, ".parquet"), columns=COLUMNS)
    assert csv.interactions.equals(parquet.interactions) and csv.items.equals(parquet.items)
    frame = tiny_frame()
    assert csv.interactions["click"].to_list() == (frame["stars"] >= 4).cast(pl.Int8).to_list()
    assert csv.items.filter(pl.col("item") == "m0")["genres"].to_list()[0] == sorted(
        frame.filter(pl.col("movie") == "m0")["kinds"][0].split("|"))


def test_a_datetime_timestamp_becomes_epoch_seconds(tmp_path):
    frame = tiny_frame().with_columns(pl.from_epoch("when", time_unit="s").alias("when"))
    frame.write_parquet(tmp_path / "t.parquet")
    tables = read_interaction_table(tmp_path / "t.parquet", COLUMNS)
    assert tables.interactions["timestamp"].to_list() == tiny_frame()["when"].to_list()


@pytest.mark.parametrize("change, message", [
    (lambda f: f.drop("stars"), "no column 'stars' (mapped as 'rating')"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("lots")).otherwise(
        pl.col("stars").cast(pl.String)).alias("stars")),
     "row 4 ('lots'): 'stars' (rating) not a number"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 5).then(pl.lit("yesterday")).otherwise(
        pl.col("when").cast(pl.String)).alias("when")), "row 6 ('yesterday'): 'when' (timestamp) not a number"),
    (lambda f: f.with_columns(pl.when(pl.int_range(pl.len()) == 2).then(None).otherwise(pl.col("uid")).alias("uid")),
     "row 3 (None): 'uid' (user) empty"),
])
def test_bad_tables_name_file_and_column(tmp_path, change, message):
    """With no share of bad rows allowed, one bad row is an error naming the file, the row and the column."""
    path = tmp_path / "bad.csv"
    change(tiny_frame()).write_csv(path)
    with pytest.raises(SourceError) as err:
        read_interaction_table(path, COLUMNS, max_skipped_share=0.0)
    assert str(path) in str(err.value) and message in str(err.value)


def test_a_bad_row_is_skipped_and_counted_and_a_bad_year_becomes_missing(tmp_path):
    """The one bad-input policy: a row whose rating is not a number is skipped and counted by reason (not the
    whole table refused); a year of 'V' (as MovieLens-100K has for one film) becomes missing."""
    frame = tiny_frame().with_columns(pl.col("stars").cast(pl.String), pl.col("released").cast(pl.String))
    movie = frame["movie"][7]
    frame = frame.with_columns(pl.when(pl.int_range(pl.len()) == 3).then(pl.lit("lots")).otherwise(pl.col("stars"))
                               .alias("stars"),
                               pl.when(pl.col("movie") == movie).then(pl.lit("V")).otherwise(pl.col("released"))
                               .alias("released"))
    frame.write_csv(tmp_path / "dirty.csv")
    tables = read_interaction_table(tmp_path / "dirty.csv", COLUMNS)
    assert tables.interactions.height == frame.height - 1
    assert dict(tables.report.skipped) == {"'stars' (rating) not a number": 1}
    assert tables.report.manifest()["first_bad"] == [["4 ('lots')", "'stars' (rating) not a number"]]
    assert tables.items.filter(pl.col("item") == movie)["year"].is_null().all()
    assert tables.items["year"].is_not_null().any()


def test_bad_column_maps_and_files(tmp_path):
    path = write_tiny(tmp_path)
    with pytest.raises(SourceError, match="no 'timestamp' entry"):
        read_interaction_table(path, {k: v for k, v in COLUMNS.items() if k != "timestamp"})
    with pytest.raises(SourceError, match="'rating' or a 'click'"):
        read_interaction_table(path, {k: v for k, v in COLUMNS.items() if k != "rating"})
    with pytest.raises(SourceError, match="unknown column role 'price'"):
        read_interaction_table(path, {**COLUMNS, "price": "stars"})
    with pytest.raises(SourceError, match="does not exist"):
        read_interaction_table(tmp_path / "absent.csv", COLUMNS)
    with pytest.raises(SourceError, match="'stars' \\(click\\) not 0 or 1"):
        read_interaction_table(path, {**{k: v for k, v in COLUMNS.items() if k != "rating"}, "click": "stars"})
    with pytest.raises(SourceError, match="unknown CTR source 'criteo'"):
        read_ctr_source("criteo")


def test_time_split_puts_no_future_interaction_in_training(tiny):
    _, split, cuts = tiny
    times = {s: split.filter(pl.col("split") == s)["timestamp"] for s in ("train", "val", "test")}
    assert times["train"].max() < cuts["val_from"] <= times["val"].min()
    assert times["val"].max() < cuts["test_from"] <= times["test"].min()
    assert 0.7 < len(times["train"]) / split.height <= 0.8
    with pytest.raises(ValueError, match="summing to 1"):
        time_split(split, (0.8, 0.3, 0.1))
    with pytest.raises(ValueError, match="split 'train' is empty"):
        time_split(split.with_columns(pl.lit(7).cast(pl.Int64).alias("timestamp")))


def test_histories_hold_only_earlier_clicks(tiny):
    """Brute force: the H latest clicks of the user strictly before the interaction's second, most recent first
    (ties in time by descending row, the builder's documented order)."""
    tables, split, _ = tiny
    space = build_feature_space(split, tables.items)
    examples = build_examples(split, space, history_len=4)
    row_of = dict(zip(space.items["item"], space.items["row"]))
    user_of = dict(zip(space.users["row"], space.users["user"]))
    raw = split.with_columns(pl.col("item").replace_strict(row_of).alias("row"))
    nonempty = 0
    for ex in examples.iter_rows(named=True):
        before = raw.filter((pl.col("user") == user_of[ex["user_row"]]) & (pl.col("timestamp") < ex["timestamp"])
                            & (pl.col("click") == 1))
        expected = before.sort("timestamp", "row", descending=True)["row"].head(4).to_list()
        assert ex["history"] == expected and ex["history_len"] == len(expected)
        nonempty += bool(expected)
    assert nonempty > examples.height // 2


def test_features_come_from_training_data_only(tiny):
    tables, split, _ = tiny
    catalogue_only = pl.DataFrame({"item": ["extra"], "title": ["zebra night"], "genres": [["Drama"]], "year": [1990]},
                                  schema=tables.items.schema)
    items = pl.concat([tables.items, catalogue_only])
    space = build_feature_space(split, items, min_word_count=1)
    future = split.with_columns(pl.when(pl.col("split") != "train").then(1 - pl.col("click")).otherwise(
        pl.col("click")).alias("click"))
    again = build_feature_space(future, items, min_word_count=1)
    assert space.items.equals(again.items) and space.words == again.words
    train_items = set(split.filter(pl.col("split") == "train")["item"].to_list())
    unseen = space.items.filter(~pl.col("item").is_in(list(train_items)))
    assert unseen.height > 0 and set(unseen["token"]) == {UNKNOWN} and set(unseen["popularity"]) == {UNKNOWN}
    seen_words = {w for i, t in zip(tables.items["item"], tables.items["title"]) if i in train_items
                  for w in tokenize_title(t)}
    assert set(space.words) == seen_words and "zebra" not in space.words
    tensors = space.tensors()
    assert tensors.title[0].eq(PAD).all() and tensors.genres[0].eq(0).all() and tensors.item_token[0] == PAD
    assert tensors.genres.sum(1)[1:].ge(1).all()


def test_user_lookup_and_request(tiny):
    tables, split, _ = tiny
    space = build_feature_space(split, tables.items)
    with pytest.raises(UnknownUser, match="user 'nobody' is unknown to the model"):
        user_row(space, "nobody")
    request = user_request(space, tables.interactions, "u3", history_len=5)
    rated = set(tables.interactions.filter(pl.col("user") == "u3")["item"].to_list())
    candidates = set(space.items.filter(pl.col("row").is_in(request.item.tolist()))["item"].to_list())
    assert candidates.isdisjoint(rated) and len(candidates) == space.items.height - len(rated)
    assert (request.user == user_row(space, "u3")).all() and request.history_len[0] == 5
    row_of = dict(zip(space.items["item"], space.items["row"]))
    clicks = tables.interactions.filter((pl.col("user") == "u3") & (pl.col("click") == 1)).with_columns(
        pl.col("item").replace_strict(row_of).alias("row")).sort("timestamp", "row", descending=True)
    assert (request.history == torch.tensor(clicks["row"].head(5).to_list())).all()
    assert request.label.isnan().all()


def test_space_round_trip_and_atomic_parquet(tiny, tmp_path):
    tables, split, _ = tiny
    space = build_feature_space(split, tables.items)
    folder = save_space(space, tmp_path / "space")
    loaded = load_space(folder)
    assert loaded.items.equals(space.items) and loaded.users.equals(space.users) and loaded.config == space.config
    assert sorted(p.name for p in folder.iterdir()) == ["items.parquet", "space.json", "users.parquet"]
    (folder / "items.parquet").unlink()
    with pytest.raises(SourceError, match="items.parquet is missing"):
        load_space(folder)
    write_parquet_atomic(split, tmp_path / "split.parquet")
    assert pl.read_parquet(tmp_path / "split.parquet").equals(split)


def test_tensors_match_the_examples(tiny):
    tables, split, _ = tiny
    space = build_feature_space(split, tables.items)
    examples = build_examples(split, space, history_len=6)
    test = examples_to_tensors(examples, "test", history_len=6)
    rows = examples.filter(pl.col("split") == "test")
    assert len(test) == rows.height and test.history.shape == (rows.height, 6)
    lengths = test.history_len.numpy()
    assert np.array_equal((test.history > 0).sum(1).numpy(), lengths)
    assert np.array_equal(test.label.numpy(), rows["label"].to_numpy().astype(np.float32))


def test_training_click_rates_are_out_of_fold(tiny):
    """Direct computation: a training row's click-rate token is its item's smoothed rate over the other folds'
    training rows (prior: the other folds' mean), val / test rows get the item table's; flipping a training
    row's own label leaves its own token unchanged."""
    tables, split, _ = tiny
    buckets = 1000
    space = build_feature_space(split, tables.items, click_rate_buckets=buckets)
    examples = build_examples(split, space, history_len=3, folds=3, seed=1)
    train = examples.filter(pl.col("split") == "train")
    assert sorted(train["fold"].unique().to_list()) == [0, 1, 2]
    assert (examples.filter(pl.col("split") != "train")["fold"] == -1).all()
    prior = CTR_PRIOR_IMPRESSIONS
    for ex in train.iter_rows(named=True):
        others = train.filter(pl.col("fold") != ex["fold"])
        mine = others.filter(pl.col("item_row") == ex["item_row"])["label"].to_numpy().astype(float)
        if mine.size == 0:
            assert ex["click_rate"] == UNKNOWN
            continue
        rate = (mine.sum() + prior * others["label"].mean()) / (mine.size + prior)
        assert ex["click_rate"] == 2 + min(int(np.floor(rate * buckets)), buckets - 1)
    table = dict(zip(space.items["row"], space.items["click_rate"]))
    held = examples.filter(pl.col("split") != "train")
    assert held["click_rate"].to_list() == [table[r] for r in held["item_row"]]

    first = train.row(0, named=True)
    flipped = split.with_columns(
        pl.when((pl.col("timestamp") == first["timestamp"]) & (pl.col("item") == space.items.filter(
            pl.col("row") == first["item_row"])["item"][0]) & (pl.col("user") == space.users.filter(
                pl.col("row") == first["user_row"])["user"][0]))
        .then(1 - pl.col("click")).otherwise(pl.col("click")).cast(split["click"].dtype).alias("click"))
    again = build_examples(flipped, space, history_len=3, folds=3, seed=1).filter(pl.col("split") == "train")
    assert again["label"][0] != first["label"] and again["click_rate"][0] == first["click_rate"]
    tensors = examples_to_tensors(examples, "train", 3)
    assert tensors.click_rate.tolist() == train["click_rate"].to_list()
    with pytest.raises(ValueError, match="folds must be an int >= 2"):
        build_examples(split, space, folds=1)
