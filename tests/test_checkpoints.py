import pytest
import torch

from repflow.families.image.models import ProjectionHead, build_encoder
from repflow.checkpoints import (CheckpointError, TrainingProgress, flatten_optimizer, load_state_strict, load_tensors,
                                 save_tensors, unflatten_optimizer)


def test_tensors_and_config_round_trip(tmp_path):
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
    save_tensors(tmp_path / "m.safetensors", enc.state_dict(), {"name": "small_cnn", "width": 4})
    state, cfg = load_tensors(tmp_path / "m.safetensors")
    assert cfg == {"name": "small_cnn", "width": 4}
    other = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
    load_state_strict(other, state, "m")
    assert all(torch.equal(a, b) for a, b in zip(enc.state_dict().values(), other.state_dict().values()))


def test_mismatched_checkpoint_names_both_shapes(tmp_path):
    encoder = build_encoder({"name": "small_cnn", "in_channels": 3, "width": 4})
    save_tensors(tmp_path / "m.safetensors", encoder.state_dict(), {})
    state, _ = load_tensors(tmp_path / "m.safetensors")
    with pytest.raises(CheckpointError, match=r"m.safetensors: does not fit SmallCNN: .*shape mismatch "
                                              r"features.0.weight: checkpoint \(4, 3, 3, 3\) vs model \(4, 1, 3, 3\)"):
        load_state_strict(build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4}), state,
                          tmp_path / "m.safetensors")


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x80\x04 pickled? no")
    with pytest.raises(CheckpointError, match="x.safetensors: not a readable safetensors file"):
        load_tensors(tmp_path / "x.safetensors")
    with pytest.raises(CheckpointError, match="missing"):
        load_tensors(tmp_path / "absent.safetensors")


@pytest.mark.slow
def test_optimizer_state_round_trips_without_pickle(tmp_path):
    enc = build_encoder({"name": "small_cnn", "in_channels": 1, "width": 4})
    head = ProjectionHead(enc.out_dim, 4)
    opt = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=0.01)
    head(enc(torch.rand(4, 1, 8, 8))).pow(2).sum().backward()
    opt.step()
    tensors, meta = flatten_optimizer(opt)
    save_tensors(tmp_path / "o.safetensors", tensors, meta)
    t2, m2 = load_tensors(tmp_path / "o.safetensors")
    opt2 = torch.optim.Adam(list(enc.parameters()) + list(head.parameters()), lr=0.5)
    opt2.load_state_dict(unflatten_optimizer(t2, m2))
    assert opt2.param_groups[0]["lr"] == 0.01
    for pid, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            assert torch.equal(opt2.state_dict()["state"][pid][k], v)


def test_training_progress_checkpoints_every_k_epochs_and_resumes_after_the_last_one(tmp_path):
    def fresh_model():
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2)

    path = tmp_path / ".train.progress" / "model.safetensors"
    model = fresh_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    progress = TrainingProgress(path, "key-a", {"model": model}, every=2, epochs=5)
    assert (progress.resumed, progress.start, progress.history, progress.optimizer_state()) == (False, 0, [], None)
    saved = []
    for epoch in range(1, 4):  # killed during epoch 4: epochs 2 is the last checkpoint
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        progress.history.append({"epoch": epoch})
        if progress.epoch_done(epoch, {"model": opt}, extra={"picked": torch.tensor([epoch])}):
            saved.append(epoch)
            weights = {k: v.clone() for k, v in model.state_dict().items()}
    assert saved == [2] and not progress.epoch_done(3, {"model": opt}) and path.is_file()

    again = fresh_model()
    resumed = TrainingProgress(path, "key-a", {"model": again}, every=2, epochs=5)
    assert resumed.resumed and resumed.start == 2 and resumed.history == [{"epoch": 1}, {"epoch": 2}]
    assert all(torch.equal(again.state_dict()[k], v) for k, v in weights.items())
    assert torch.equal(resumed.extra["picked"], torch.tensor([2])) and resumed.optimizer_state()["state"]
    assert resumed.epoch_done(5, {"model": opt})  # the last epoch is always checkpointed

    other = fresh_model()
    ignored = TrainingProgress(path, "key-b", {"model": other}, fresh={"done": []})  # other params or code
    assert not ignored.resumed and ignored.meta == {"done": []}
    assert all(torch.equal(other.state_dict()[k], v) for k, v in fresh_model().state_dict().items())


@pytest.mark.slow
def test_killed_training_stage_resumes_from_its_checkpoint(tiny_shards, mlflow_tmp, monkeypatch):
    """The train stage dies after its first epoch's checkpoint; the rerun continues from it and ends with the
    same weights as an uninterrupted run. In-process with an injected crash (the real SIGKILL of a whole
    `repflow run` is tests/test_resume.py's scenario)."""
    from repflow.families.image.stages import train as train_stage
    from repflow.family import parse_params
    from repflow.stage import run_stage
    from tests.conftest import crash_after_first_epoch, tiny_params

    params = parse_params(tiny_params(train={"epochs": 4, "checkpoint_every": 1}))
    inputs = {"shards": tiny_shards, "views": None}
    selection = run_stage("image.select", params, inputs, mlflow_tmp / "select")
    inputs["selection"] = selection
    straight = run_stage("image.train", params, inputs, mlflow_tmp / "straight")
    real = train_stage.train_contrastive
    monkeypatch.setattr(train_stage, "train_contrastive", crash_after_first_epoch(real))
    with pytest.raises(KeyboardInterrupt):
        run_stage("image.train", params, inputs, mlflow_tmp / "train")
    progress = mlflow_tmp / ".train.progress" / "last.safetensors"
    assert not (mlflow_tmp / "train").exists()
    assert load_tensors(progress)[1]["epoch"] == 1
    monkeypatch.setattr(train_stage, "train_contrastive", real)
    resumed = run_stage("image.train", params, inputs, mlflow_tmp / "train")
    assert not progress.parent.exists()
    a, _ = load_tensors(resumed / "encoder.safetensors")
    b, _ = load_tensors(straight / "encoder.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
