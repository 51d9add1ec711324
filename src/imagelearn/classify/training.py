"""The epoch loop shared by every training mode: checkpoints, resume, early stopping, history.

Every epoch reseeds PyTorch with ``random_state + epoch`` (shuffling, augmentation, dropout), so a run
resumed from its checkpoint continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from imagelearn.core.bundle import atomic_write_bytes, atomic_write_text
from imagelearn.core.errors import ParameterError
from imagelearn.core.plotting import integer_ticks, pyplot, save_figure
from imagelearn.core.progress import progress

log = logging.getLogger(__name__)

#: Columns of ``history.csv``.
HISTORY_COLUMNS = (
    "epoch",
    "phase",
    "loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "seconds",
)

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


@dataclass
class EpochLoop:
    """One training phase.

    Attributes
    ----------
    module : nn.Module
        What is optimized; maps a batch of inputs to logits.
    optimizer, scheduler
        The scheduler steps once per epoch.
    train_batches : callable (epoch) -> iterable of (inputs, labels)
        Called after reseeding, so shuffling and augmentation are reproducible.
    n_train_batches : int
        For the progress bar.
    evaluate : callable () -> (val_loss, val_accuracy), or None
        Validation after each epoch; None: no early stopping, the last epoch is kept.
    loss : nn.Module
        Loss on logits and integer labels.
    phase : str
        Name written in the history (``head``, ``finetune``, ``scratch``).
    prepare_epoch : callable (), optional
        Sets train/eval modes after ``module.train()`` (frozen batch norms).
    finish_epoch : callable (), optional
        Runs after the epoch's optimizer steps, before validation and the checkpoint
        (:func:`recalibrate_batch_norm`).
    """

    module: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_batches: Callable[[int], Batches]
    n_train_batches: int
    evaluate: Callable[[], tuple[float, float]] | None
    loss: nn.Module
    phase: str
    prepare_epoch: Callable[[], None] | None = None
    finish_epoch: Callable[[], None] | None = None

    def run(
        self,
        epochs: int,
        patience: int = 0,
        random_state: int = 0,
        checkpoint: Path | None = None,
        resume: bool = False,
        fingerprint: dict[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Train for up to ``epochs`` epochs; returns one history row per epoch.

        Parameters
        ----------
        patience : int
            Stop after this many epochs without a better validation accuracy (ties broken by
            loss); 0 never stops early. The best epoch's weights are restored at the end.
        random_state : int
            Epoch ``e`` runs with PyTorch seeded by ``random_state + e``.
        checkpoint : Path, optional
            Written atomically after every epoch: model, optimizer and scheduler states, the
            history, the best epoch's weights and the early-stopping count. Random state needs
            no saving: every epoch reseeds it.
        resume : bool
            Continue from ``checkpoint`` (a run killed at any point, even mid-epoch, loses
            only the epoch in progress); its ``fingerprint`` (the run's settings) must match.
        """
        state = self._resume(checkpoint, fingerprint) if resume and checkpoint else None
        history: list[dict[str, Any]] = state["history"] if state else []
        best_state = state["best_state"] if state else None
        best_key = tuple(state["best_key"]) if state else (-np.inf, -np.inf)
        stale = int(state["stale"]) if state else 0
        for epoch in range(len(history), epochs):
            if patience and stale >= patience:
                log.info(
                    "early stopping after epoch %d: no improvement for %d epochs", epoch, patience
                )
                break
            row = self._epoch(epoch, random_state)
            history.append(row)
            key = (row["val_accuracy"], -row["val_loss"]) if self.evaluate else (epoch, 0.0)
            if key > best_key:
                best_key, best_state, stale = key, copy.deepcopy(self.module.state_dict()), 0
            else:
                stale += 1
            if checkpoint is not None:
                self._save(checkpoint, history, best_state, best_key, stale, fingerprint)
        if best_state is not None:
            self.module.load_state_dict(best_state)
        return history

    def _epoch(self, epoch: int, random_state: int) -> dict[str, Any]:
        torch.manual_seed(random_state + epoch)
        started = time.perf_counter()
        self.module.train()
        if self.prepare_epoch:
            self.prepare_epoch()
        device = next(self.module.parameters()).device
        total_loss, correct, seen = 0.0, 0, 0
        batches = progress(
            self.train_batches(epoch),
            f"{self.phase} epoch {epoch + 1}",
            self.n_train_batches,
            "batch",
        )
        for inputs, labels in batches:
            inputs, labels = inputs.to(device), labels.to(device)
            logits = self.module(inputs)
            loss = self.loss(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total_loss += float(loss.detach()) * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
        if self.finish_epoch:
            self.finish_epoch()
        learning_rate = float(self.optimizer.param_groups[0]["lr"])
        self.scheduler.step()
        val_loss, val_accuracy = self.evaluate() if self.evaluate else (float("nan"), float("nan"))
        row = {
            "epoch": epoch + 1,
            "phase": self.phase,
            "loss": total_loss / max(seen, 1),
            "train_accuracy": correct / max(seen, 1),
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "learning_rate": learning_rate,
            "seconds": time.perf_counter() - started,
        }
        log.info(
            "%s epoch %d: loss %.4f, train accuracy %.3f, val accuracy %.3f (%.1f s)",
            self.phase, epoch + 1, row["loss"], row["train_accuracy"], val_accuracy, row["seconds"],
        )  # fmt: skip
        return row

    def _save(self, path: Path, history, best_state, best_key, stale: int, fingerprint) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "fingerprint": fingerprint or {},
                "phase": self.phase,
                "module": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "history": history,
                "best_state": best_state,
                "best_key": list(best_key),
                "stale": stale,
            },
            buffer,
        )
        atomic_write_bytes(path, buffer.getvalue())

    def _resume(self, path: Path, fingerprint: dict[str, Any] | None) -> dict[str, Any] | None:
        if not path.is_file():
            log.info("no checkpoint at %s; starting afresh", path)
            return None
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state["fingerprint"] != (fingerprint or {}) or state["phase"] != self.phase:
            raise ParameterError(
                "resume",
                f"{path}: checkpoint of a different run ({state['fingerprint']}); "
                "resume with the same settings or start a new run without resuming",
            )
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        log.info("resuming %s from %s after epoch %d", self.phase, path, len(state["history"]))
        return state


def recalibrate_batch_norm(module: nn.Module, inputs: Iterable[torch.Tensor]) -> None:
    """Replace the running statistics of every batch-norm layer of ``module`` by their average
    over ``inputs`` (batches ``(n, 3, H, W)`` of network inputs) at the current weights
    ("precise BN").

    A network trained from random weights changes fast; the running averages (momentum 0.1)
    of a few optimizer steps per epoch then lag so far behind that in eval mode it predicts
    one class for every image, while its batch-statistics (training) accuracy rises.
    """
    layers = [
        layer for layer in module.modules() if isinstance(layer, nn.modules.batchnorm._BatchNorm)
    ]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    device = next(module.parameters()).device
    was_training = module.training
    module.train()
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # cumulative average over the batches below
    with torch.no_grad():
        for batch in inputs:
            module(batch.to(device))
    for layer, momentum in zip(layers, momenta, strict=True):
        layer.momentum = momentum
    module.train(was_training)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, epochs: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Cosine decay of every group's learning rate to 1% over ``epochs`` epochs."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda epoch: (
            0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(epoch, epochs) / max(epochs, 1)))
        ),
    )


def history_csv(history: list[dict[str, Any]]) -> str:
    """The history as CSV text with :data:`HISTORY_COLUMNS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


def curves_figure(history: list[dict[str, Any]], title: str = "") -> Any:
    """A matplotlib figure: loss and accuracy (train, validation) per epoch, a dotted line
    where the phase changes (head -> finetune)."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axes, accuracy_axes) = pyplot().subplots(1, 2, figsize=(9, 3.6))
    loss_axes.plot(epochs, [row["loss"] for row in history], "o-", label="train")
    loss_axes.plot(epochs, [row["val_loss"] for row in history], "o-", label="validation")
    accuracy_axes.plot(epochs, [row["train_accuracy"] for row in history], "o-", label="train")
    accuracy_axes.plot(epochs, [row["val_accuracy"] for row in history], "o-", label="validation")
    phases = [row["phase"] for row in history]
    for index in range(1, len(phases)):
        if phases[index] != phases[index - 1]:
            for axes in (loss_axes, accuracy_axes):
                axes.axvline(epochs[index] - 0.5, color="grey", linestyle=":")
    loss_axes.set(xlabel="epoch", ylabel="cross-entropy loss")
    accuracy_axes.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02))
    for axes in (loss_axes, accuracy_axes):
        integer_ticks(axes)
    accuracy_axes.legend(loc="lower right")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def plot_curves(history: list[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """:func:`curves_figure` saved as PNG at ``path``."""
    return save_figure(curves_figure(history, title), path)


def write_history(out_dir: str | Path, history: list[dict[str, Any]], title: str = "") -> None:
    """``history.csv`` and ``curves.png`` in ``out_dir``."""
    atomic_write_text(Path(out_dir) / "history.csv", history_csv(history))
    plot_curves(history, Path(out_dir) / "curves.png", title)
