"""A run's trained model: its weights at a saved epoch, rebuilt as the checkpoint recorded it."""

from __future__ import annotations

from .store import RunSnapshot


def load_model(run: RunSnapshot, epoch: int | None = None):
    """The run's model (eval mode) with the weights of `epoch` (default: the latest) and their meta."""
    from .. import models
    from ..models.checkpoints import CheckpointError, load_checkpoint, load_into

    ckpts = run.checkpoints
    if epoch is None:
        ckpt_path = run.last_checkpoint or (ckpts[max(ckpts)] if ckpts else None)
    else:
        ckpt_path = ckpts.get(int(epoch))
        if ckpt_path is None:
            raise CheckpointError(f"Run {run.run_id} has no checkpoint for epoch {epoch}; "
                                  f"saved epochs: {sorted(ckpts) or 'none'}.")
    if ckpt_path is None:
        raise CheckpointError(f"Run {run.run_id} has no checkpoint yet.")
    ckpt = load_checkpoint(ckpt_path)
    meta = dict(ckpt.meta)
    name = meta.get("model") or run.config.get("model")
    # a design is rebuilt from the JSON its checkpoint recorded, so editing the file later breaks nothing
    model = models.design.create_for_checkpoint(name, meta, int(meta.get("num_classes", 10)),
                                                int(meta.get("in_channels", 3)))
    load_into(model, ckpt, name)
    model.eval()
    return model, meta
