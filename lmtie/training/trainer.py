"""The training loop: updates, validation, checkpoints, preemption and numerical-fault handling.

The loop knows the model only through ``lm_loss`` and ``state_dict``; the data order is a pure
function of (seed, epoch), the learning rate a pure function of the update count, and every
RNG state is checkpointed, so a resumed run continues bit-for-bit (tests/test_train.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from lmtie import preempt
from lmtie.errors import UserError
from lmtie.io import atomic_write_text, is_disk_full
from lmtie.models import check_tie, unwrap
from lmtie import checkpoint as ckpt_io
from lmtie.training import distributed as dist
from lmtie.training.logging import MetricsLogger
from lmtie.training.optim import (build_optimizer, decay_report, load_optimizer_state, lr_at, optimizer_state,
                                  plateau_step, scale_and_clip_, set_lr, split_parameter_state)
from lmtie.training.recipe import describe as describe_recipe
from lmtie.training.setup import TrainSetup


@dataclass
class TrainState:
    """Where the run is; saved in every checkpoint."""

    step: int = 0  # updates done
    epoch: int = 1
    batch_pos: int = 0  # next batch of this epoch's batch list
    best_valid_loss: Optional[float] = None  # the valid loss of checkpoint_best
    best_valid_bleu: Optional[float] = None  # its BLEU (--eval-bleu)
    bad_validations: int = 0
    nonfinite_updates: int = 0
    consecutive_nonfinite: int = 0
    tokens_seen: int = 0
    train_seconds: float = 0.0  # wall time of the training loop, every session, up to this checkpoint
    update_seconds: float = 0.0  # of which forward/backward/step: what training throughput is measured over
    valid_seconds: float = 0.0  # of which validation
    checkpoint_seconds: float = 0.0  # of which writing checkpoints (a checkpoint's own write is not in it)
    last_valid_loss: Optional[float] = None
    last_valid_step: int = -1
    data_digest: str = ""  # running hash of every batch's block ids: paired runs can prove they saw the same data
    lr_shrinks: int = 0  # reduce_lr_on_plateau: times the learning rate shrank
    plateau_best: Optional[float] = None  # reduce_lr_on_plateau: best epoch-end valid loss
    plateau_bad: int = 0  # reduce_lr_on_plateau: epochs since it improved
    python_rng: Any = None
    numpy_rng: Any = None


@dataclass
class StepResult:
    loss_sum: float = 0.0
    ntokens: int = 0
    grad_norm: float = 0.0
    skipped: bool = False
    stop_requested: bool = False


class Preempted(Exception):
    """Raised inside validation when SIGTERM/SIGUSR1 arrives."""


class Trainer:
    """Runs a :class:`TrainSetup` to completion (or to preemption), writing checkpoints and logs."""

    def __init__(self, setup: TrainSetup):
        self.signal_name: str | None = None
        self._install_signal_handlers()  # first: from here on a signal stops the run between steps
        self.s = setup
        self.model = setup.model
        self.optimizer = build_optimizer(unwrap(self.model), setup.optim)
        self.state = TrainState()
        if setup.restore is not None:
            self._check_restorable(setup.restore)  # a damaged checkpoint is refused before anything is written
        self.logger = MetricsLogger(setup)
        self.logger.message(describe_recipe(setup.optim))
        self._clock = time.perf_counter()  # wall time since then is not yet in state.train_seconds
        self._restored = setup.restore is not None and self._restore(setup.restore)
        if self._restored and not setup.ckpt.reset_optimizer:  # with it the update count restarts: append
            self.logger.resume(self.state, setup.restore.path)
        else:
            self.logger.fresh_start(self.state)
        self.logger.message(decay_report(self.optimizer.param_groups))  # not fairseq's rule: say it once
        self._session_start_step = self.state.step
        self._last_saved_step = -1  # the update checkpoint_last was last written at in this session

    # --- the loop -----------------------------------------------------------------------
    def train(self) -> dict:
        """Train until a stopping rule fires; return the summary (also logged)."""
        self._clock = time.perf_counter()
        try:
            if self._restored and not self._should_stop():
                self._finish_interrupted_validation()
            while not self._should_stop():
                self._train_epoch()
        except Preempted:
            pass
        finally:
            self.logger.close_bar()
        if self.signal_name is not None:
            self._stop_for_signal()
        else:
            if self.state.last_valid_step != self.state.step:  # fairseq also validates when training ends
                self._validate_and_track()
            self._save(last=True)
        self._fold_wall()
        return self._summary()

    def _fold_wall(self) -> None:
        """Move the wall time since the last fold into ``train_seconds``, so each checkpoint holds it."""
        now = time.perf_counter()
        self.state.train_seconds += now - self._clock
        self._clock = now

    @contextlib.contextmanager
    def _timed(self, counter: str):
        """Add the block's wall time to the TrainState field ``counter``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            setattr(self.state, counter, getattr(self.state, counter) + time.perf_counter() - start)

    def _train_epoch(self) -> None:
        batches = self._epoch_batches(self.state.epoch)
        freq = self.s.optim.update_freq
        while self.state.batch_pos < len(batches) and not self._should_stop():
            group = batches[self.state.batch_pos:self.state.batch_pos + freq]
            self.state.data_digest = _chain_digest(self.state.data_digest, group)
            with self._timed("update_seconds"):
                result = self._update(group)
            self.state.batch_pos += len(group)
            self._after_update(result)
        if self.state.batch_pos >= len(batches):
            self._end_epoch()

    def _should_stop(self) -> bool:
        o, st = self.s.optim, self.state
        if self.signal_name is not None:
            return True
        if o.max_update > 0 and st.step >= o.max_update:
            return True
        if o.max_epoch > 0 and st.epoch > o.max_epoch:
            return True
        if o.stop_time_hours > 0 and st.train_seconds + time.perf_counter() - self._clock >= o.stop_time_hours * 3600:
            return True
        if o.stop_min_lr >= 0 and st.step >= o.warmup_updates and self._lr() <= o.stop_min_lr:
            self.logger.message(f"stopping at update {st.step}: the learning rate {self._lr():.4g} is <= --stop-min-lr "
                                f"{o.stop_min_lr:g}")
            return True
        return self.s.run.patience > 0 and st.bad_validations >= self.s.run.patience  # fairseq's should_stop_early

    def _lr(self) -> float:
        return lr_at(self.state.step, self.s.optim, self.state.lr_shrinks)

    # --- one update ----------------------------------------------------------------------
    def _update(self, group: list[list[int]]) -> StepResult:
        """Forward/backward over ``update_freq`` batches, then one optimiser step (or a skip)."""
        self.model.train()
        set_lr(self.optimizer, self._lr())
        loss_sum, ntokens = 0.0, 0
        for i, indices in enumerate(group):
            with self._maybe_no_sync(last=i == len(group) - 1):
                loss, n = self._forward(self.s.train_data, self._my_share(indices), self.s.optim.label_smoothing)
                loss.backward()
            loss_sum, ntokens = loss_sum + float(loss.detach()), ntokens + n
        loss_sum, ntokens, stop = dist.all_reduce_sum(
            [loss_sum, float(ntokens), float(self.signal_name is not None)], self.s.device)
        return self._step(loss_sum, int(ntokens), stop > 0)

    def _forward(self, dataset, indices: list[int], label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
        batch = {k: v.to(self.s.device) if torch.is_tensor(v) else v for k, v in dataset.batch(indices).items()}
        with torch.autocast(self.s.device.type, dtype=torch.bfloat16, enabled=self.s.run.bf16):
            return self.s.task.loss(self.model, batch, label_smoothing)

    def _step(self, loss_sum: float, ntokens: int, stop: bool) -> StepResult:
        """Normalise gradients by the global token count, check them, clip, and step."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        scale = self.s.dist.world_size / max(ntokens, 1)  # DDP averages over ranks; we want sum / ntokens
        grad_norm = scale_and_clip_(params, scale, self.s.optim.clip_norm)  # the norm also detects NaN/inf
        finite = math.isfinite(loss_sum) and math.isfinite(grad_norm)
        if finite:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.state.step += 1
        self._untie_if_due()
        return StepResult(loss_sum, ntokens, grad_norm, skipped=not finite, stop_requested=stop)

    def _untie_if_due(self) -> None:
        """--untie-at-update K: right after update K the model splits its tied matrix (so every
        checkpoint from K on holds the split model), and the new head takes the embedding's Adam state."""
        m = unwrap(self.model)
        if not getattr(m, "untie_due", lambda step: False)(self.state.step):  # a family without tying options
            return
        source = m.input_embedding.weight
        m.untie_()
        self.optimizer = split_parameter_state(self.optimizer, m, self.s.optim, source, m.output_head_key)
        self.s.model_cfg = m.cfg  # saved configs say untied from now on
        self.logger.message(f"update {self.state.step}: untied the output layer (--untie-at-update); "
                            f"{m.output_head_key} starts as a copy of the embedding, with its optimiser state")

    def _after_update(self, r: StepResult) -> None:
        st = self.state
        if r.stop_requested and self.signal_name is None:
            self.signal_name = "a signal on another rank"
        if r.skipped:
            self._count_fault(r)
        else:
            st.consecutive_nonfinite = 0
            st.tokens_seen += r.ntokens
        self.logger.train_step(st, r, self.optimizer.param_groups[0]["lr"])
        self._validate_and_save_if_due()

    def _validate_and_save_if_due(self) -> None:
        """The interval validation and checkpoint of this update, if it is one of theirs. A signal
        during the validation still gets the interval checkpoint written (then the run stops)."""
        st = self.state
        interval, save = self.s.run.validate_interval_updates, self.s.ckpt.save_interval_updates
        save_due = save > 0 and st.step % save == 0
        try:
            if interval > 0 and st.step % interval == 0:
                self._validate_and_track()
        except Preempted:
            if save_due:
                self._save(last=True, interval=True)
            raise
        if save_due:
            self._save(last=True, interval=True)

    def _finish_interrupted_validation(self) -> None:
        """A signal that cut the interval validation of update N short left checkpoint_last at N
        without it: run it (and write what it writes) before the next update, as the run would have."""
        st, interval = self.state, self.s.run.validate_interval_updates
        if (interval > 0 and st.step > 0 and st.step % interval == 0 and st.last_valid_step != st.step
                and self.s.valid_data is not None):
            self.logger.message(f"update {st.step}: its validation was interrupted; running it now")
            self._validate_and_save_if_due()

    def _stop_for_signal(self) -> None:
        """After a signal: write checkpoint_last unless it already holds this update (or none was made)."""
        st, where = self.state, self._path("checkpoint_last")
        if st.step == self._session_start_step:
            self.logger.message(f"stopped by {self.signal_name} before the first update of this run; no checkpoint "
                                "written (none is needed); run the same command again to start or resume")
            return
        if self.s.ckpt.no_save or self.s.ckpt.no_last_checkpoints:
            self.logger.message(f"stopped by {self.signal_name} at update {st.step}; no checkpoint_last written "
                                "(--no-save or --no-last-checkpoints)")
            return
        if self._last_saved_step != st.step:
            self._save(last=True)
        self.logger.message(f"stopped by {self.signal_name} at update {st.step}; wrote {where}; run the same "
                            "command again to resume")

    def _count_fault(self, r: StepResult) -> None:
        st = self.state
        st.nonfinite_updates += 1
        st.consecutive_nonfinite += 1
        self.logger.message(f"update {st.step}: non-finite loss or gradient (loss {r.loss_sum:.4g}, grad norm "
                            f"{r.grad_norm:.4g}); step skipped ({st.nonfinite_updates} so far)")
        if st.consecutive_nonfinite >= self.s.optim.max_nonfinite_updates:
            raise UserError(f"{st.consecutive_nonfinite} consecutive updates had a non-finite loss or gradient "
                            f"(last at update {st.step}); lower --lr, set --clip-norm, or check the data. "
                            "The last good checkpoint is untouched")

    def _end_epoch(self) -> None:
        """fairseq's epoch end: validate every --validate-interval epochs, save every --save-interval."""
        st = self.state
        if st.epoch % self.s.run.validate_interval == 0:
            self._validate_and_track()
            if self.s.optim.lr_scheduler == "reduce_lr_on_plateau" and st.last_valid_step == st.step:
                st.plateau_best, st.plateau_bad, shrink = plateau_step(
                    st.last_valid_loss, st.plateau_best, st.plateau_bad, self.s.optim,
                    self.s.ckpt.maximize_best_checkpoint_metric)
                st.lr_shrinks += shrink
        if st.epoch % self.s.ckpt.save_interval == 0:
            self._save(last=True, epoch=not self.s.ckpt.no_epoch_checkpoints)
        self.state.epoch += 1
        self.state.batch_pos = 0

    # --- data -----------------------------------------------------------------------------------
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        """This epoch's global batches (identical on every rank): a pure function of (seed, epoch)."""
        return self.s.task.train_batches(self.s.train_data, self.s.run.seed, epoch)

    def _my_share(self, indices: list[int]) -> list[int]:
        return [int(x) for x in np.array_split(np.asarray(indices), self.s.dist.world_size)[self.s.dist.rank]]

    def _maybe_no_sync(self, last: bool):
        import contextlib

        if not last and hasattr(self.model, "no_sync"):
            return self.model.no_sync()
        return contextlib.nullcontext()

    # --- validation ---------------------------------------------------------------------------
    def validate(self, data=None) -> float | None:
        """Mean NLL in nats on ``data`` (default: the first --valid-subset; None without one)."""
        data = self.s.valid_data if data is None else data
        if data is None:
            return None
        self.model.eval()
        batches = self.s.task.valid_batches(data)
        loss_sum, ntokens = 0.0, 0
        with torch.no_grad():
            for indices in batches:
                if self.signal_name is not None:
                    raise Preempted
                share = self._my_share(indices)
                if share:
                    loss, n = self._forward(data, share)
                    loss_sum, ntokens = loss_sum + float(loss), ntokens + n
        loss_sum, ntokens = dist.all_reduce_sum([loss_sum, float(ntokens)], self.s.device)
        return loss_sum / max(ntokens, 1)

    def _validate_and_track(self) -> None:
        with self._timed("valid_seconds"):
            loss = self.validate()
            others = {name: self.validate(data) for name, data in self.s.more_valid.items()}
            scores = {} if loss is None else self.s.task.valid_scores(self.model, self.s.valid_data, self.s.device)
        if loss is None:
            return
        st = self.state
        st.last_valid_loss, st.last_valid_step = loss, st.step
        self.logger.valid(st, loss, scores=scores)
        for name, other in others.items():
            self.logger.valid(st, other, subset=name)
        maximize = self.s.ckpt.maximize_best_checkpoint_metric  # loss, nll_loss and ppl all rank alike
        by_bleu = self.s.ckpt.best_checkpoint_metric == "bleu"
        value, best = (scores["bleu"], st.best_valid_bleu) if by_bleu else (loss, st.best_valid_loss)
        if best is None or (value > best if maximize else value < best):
            st.best_valid_loss, st.best_valid_bleu, st.bad_validations = loss, scores.get("bleu"), 0
            self._save(best=True)
        else:
            st.bad_validations += 1

    # --- checkpoints ---------------------------------------------------------------------------
    def _path(self, name: str) -> Path:
        return Path(self.s.ckpt.save_dir) / f"{name}{ckpt_io.SUFFIX}"

    def _save(self, last: bool = False, best: bool = False, epoch: bool = False, interval: bool = False) -> None:
        """Write the requested checkpoints (rank 0 only); refuse to persist non-finite weights."""
        if self.s.ckpt.no_save:
            return
        last = last and not self.s.ckpt.no_last_checkpoints
        if last:
            self._last_saved_step = self.state.step
        with self._timed("checkpoint_seconds"):
            state = self._checkpoint()
            if self.s.dist.is_main:
                names = (["checkpoint_last"] * last + ["checkpoint_best"] * best
                         + [f"checkpoint{self.state.epoch}"] * epoch
                         + [f"checkpoint_{self.state.epoch}_{self.state.step}"] * interval)
                self._write_checkpoints(state, names)
            dist.barrier()  # every rank reaches it, also when rank 0 refused to write

    def _write_checkpoints(self, state: ckpt_io.Checkpoint, names: list[str]) -> None:
        if not all(torch.isfinite(t).all() for t in state.model_state.values() if t.is_floating_point()):
            self.logger.message("weights are not finite: checkpoint NOT written (the previous one is kept)")
            return
        config = Path(self.s.ckpt.save_dir) / "config.json"
        target = config
        try:
            for name in names:
                target = self._path(name)
                ckpt_io.save(target, state)
            # the run's configs, readable without lmtie; each checkpoint also carries its own copy
            target = config
            atomic_write_text(config, json.dumps(state.config, indent=1) + "\n")
        except OSError as e:
            if not is_disk_full(e):
                raise
            last = self._path("checkpoint_last")  # atomic writes: still the previous, complete one
            kept = f"the last good checkpoint, {last}, is kept" if last.exists() else "no checkpoint was written yet"
            raise UserError(f"{target.parent}: no space left on device (writing {target.name} at update "
                            f"{self.state.step}); {kept}; free some space and run the same command again to "
                            "resume") from None
        self._prune()

    def _checkpoint(self) -> ckpt_io.Checkpoint:
        self._fold_wall()
        st = self.state
        st.python_rng = _jsonable(random.getstate())
        np_state = np.random.get_state()
        st.numpy_rng = [np_state[0], np_state[1].tolist(), *np_state[2:]]
        optim_state, groups = optimizer_state(self.optimizer)
        rng = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.s.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.s.device)
        return ckpt_io.Checkpoint(
            model_state=self.s.full_state_dict(self.model), config=self.s.config_dict(),
            dictionary=self.s.dictionary, src_dictionary=self.s.src_dictionary, tokenizer=self.s.tokenizer_info,
            tokenizer_model=self.s.tokenizer_model,
            train_state=asdict(st), optim_state=optim_state, optim_groups=groups, rng=rng)

    def _restore(self, ck: ckpt_io.Checkpoint) -> bool:
        """Continue from ``ck`` (weights are already loaded by TrainSetup); False if only the weights are kept
        (every --reset-* flag given). Everything is checked (:meth:`_check_restorable`) before any of it is applied."""
        resets = self._resets()
        if len(resets) == 4:
            self.logger.message(f"restored weights from {ck.path}; optimiser, schedule, data position and meters reset")
            return False
        state, python_rng, numpy_rng = self._check_restorable(ck)
        if not self.s.ckpt.reset_optimizer:
            load_optimizer_state(self.optimizer, ck.optim_state)
        self.state = _reset(state, self.s.ckpt)
        if resets:
            self.logger.message(f"restored {ck.path} with --reset-{', --reset-'.join(resets)}")
        if python_rng is not None:
            random.setstate(python_rng)
            np.random.set_state(numpy_rng)
        torch.set_rng_state(ck.rng["torch"])
        if "cuda" in ck.rng and self.s.device.type == "cuda":
            torch.cuda.set_rng_state(ck.rng["cuda"], self.s.device)
        self.logger.message(f"resumed from {ck.path} at update {self.state.step} (epoch {self.state.epoch})")
        return True

    def _resets(self) -> list[str]:
        """The --reset-* flags given: what a restore starts afresh."""
        c = self.s.ckpt
        return [name for name, on in (("optimizer", c.reset_optimizer), ("lr-scheduler", c.reset_lr_scheduler),
                                      ("dataloader", c.reset_dataloader), ("meters", c.reset_meters)) if on]

    def _check_restorable(self, ck: ckpt_io.Checkpoint):
        """``(TrainState, Python RNG state, NumPy RNG state)`` of ``ck``, or a UserError naming the file and
        the entry: train_state of the wrong types, RNG states that do not fit, optimiser state whose shapes
        are not the parameters'. Pure: nothing is applied or written."""
        if len(self._resets()) == 4:  # only the weights are kept: nothing else to check
            return None, None, None
        state = _checked_train_state(ck)
        python_rng = numpy_rng = None
        if state.python_rng is not None or state.numpy_rng is not None:
            python_rng, numpy_rng = _checked_host_rngs(ck, state.python_rng, state.numpy_rng)
        _check_generator_state(ck, "torch", torch.device("cpu"))
        if "cuda" in ck.rng and self.s.device.type == "cuda":
            _check_generator_state(ck, "cuda", self.s.device)
        for g in self.optimizer.param_groups if not self.s.ckpt.reset_optimizer else ():
            for name, p in zip(g["param_names"], g["params"]):
                for slot, t in ck.optim_state.get(name, {}).items():
                    scalar = slot == "step"
                    if (not t.is_floating_point() or (t.numel() != 1 if scalar else tuple(t.shape) != tuple(p.shape))
                            or (scalar and not (math.isfinite(float(t)) and float(t) >= 0))):
                        want = "a finite scalar >= 0" if scalar else f"floating point of shape {list(p.shape)}"
                        raise UserError(f"{ck.path}: optimiser state optim.{name}.{slot} is {t.dtype} of shape "
                                        f"{list(t.shape)}, not {want}; {_RESTORE_HINT}")
        return state, python_rng, numpy_rng

    def _prune(self) -> None:
        d = Path(self.s.ckpt.save_dir)
        _keep_newest(d, "checkpoint_*_*", self.s.ckpt.keep_interval_updates, key=lambda p: int(p.stem.split("_")[-1]))
        _keep_newest(d, "checkpoint[0-9]*", self.s.ckpt.keep_last_epochs, key=lambda p: int(p.stem[len("checkpoint"):]))

    # --- signals and summary ---------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGUSR1 only record the signal: the loop stops after the current step (or
        validation batch). A start-up signal whose exception was swallowed is picked up here."""
        def handler(signum, frame):
            self.signal_name = self.signal_name or signal.Signals(signum).name

        for sig in preempt.SIGNALS:
            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (e.g. a notebook worker): no preemption handling
                pass
        self.signal_name = self.signal_name or preempt.pending()
        preempt.clear()

    def _summary(self) -> dict:
        st = self.state
        best = st.best_valid_loss
        summary = {
            "updates": st.step, "epochs_completed": st.epoch - 1, "tokens_seen": st.tokens_seen,
            **self._timing(), "parameters": unwrap(self.model).num_parameters(),
            "best_valid_loss": None if best is None else best / math.log(2),  # base 2, as fairseq prints
            "best_valid_ppl": None if best is None else math.exp(best),
            "nonfinite_updates": st.nonfinite_updates, "save_dir": str(self.s.ckpt.save_dir),
            "peak_memory_mb": _peak_memory_mb(self.s.device), "data_digest": st.data_digest,
            "preempted_by": self.signal_name,
        }
        self.logger.summary(summary)
        check_tie(self.model)
        return summary

    def _timing(self) -> dict:
        """Where the wall time went; throughput is over update time only, so validation and checkpoint
        writes do not dilute it (``wall_tokens_per_s`` is the figure over the whole loop)."""
        st = self.state
        accounted = st.update_seconds + st.valid_seconds + st.checkpoint_seconds
        return {"wall_seconds": round(st.train_seconds, 3), "update_seconds": round(st.update_seconds, 3),
                "valid_seconds": round(st.valid_seconds, 3), "checkpoint_seconds": round(st.checkpoint_seconds, 3),
                "other_seconds": round(st.train_seconds - accounted, 3),  # batch lists, data digest, logging
                "tokens_per_s": st.tokens_seen / max(st.update_seconds, 1e-9),
                "wall_tokens_per_s": st.tokens_seen / max(st.train_seconds, 1e-9)}


_METERS = ("tokens_seen", "train_seconds", "update_seconds", "valid_seconds", "checkpoint_seconds",
           "nonfinite_updates", "best_valid_loss", "best_valid_bleu", "bad_validations", "last_valid_loss",
           "last_valid_step")


def _reset(state: TrainState, c) -> TrainState:
    """``state`` with what the --reset-* flags of CheckpointConfig ``c`` name started afresh (fairseq's meaning:
    the update count belongs to the optimiser, the best checkpoint to the optimiser and the meters)."""
    fresh, keep = TrainState(), dict(asdict(state))
    names = ((["step", "last_valid_step", "best_valid_loss", "best_valid_bleu", "bad_validations"]
              if c.reset_optimizer else [])
             + (["lr_shrinks", "plateau_best", "plateau_bad"] if c.reset_lr_scheduler or c.reset_optimizer else [])
             + (["epoch", "batch_pos", "data_digest"] if c.reset_dataloader else [])
             + (list(_METERS) if c.reset_meters else []))
    keep.update({k: getattr(fresh, k) for k in names})
    return TrainState(**keep)


def _keep_newest(d: Path, pattern: str, keep: int, key) -> None:
    if keep < 0:
        return
    files = [p for p in d.glob(pattern + ckpt_io.SUFFIX) if p.stem.replace("checkpoint", "").replace("_", "").isdigit()]
    for p in sorted(files, key=key)[:-keep or None] if keep > 0 else files:
        p.unlink(missing_ok=True)


def _chain_digest(previous: str, group: list[list[int]]) -> str:
    h = hashlib.sha256(previous.encode())
    for batch in group:
        h.update(np.asarray(batch, dtype=np.int64).tobytes())
    return h.hexdigest()[:32]


def _peak_memory_mb(device: torch.device) -> float:
    """Peak RSS of this process on CPU, peak allocated memory on GPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x


_RESTORE_HINT = ("the checkpoint is damaged: resume from another checkpoint_*.safetensors (--restore-file), or pass "
                 "--reset-optimizer --reset-lr-scheduler --reset-dataloader --reset-meters to keep only its weights")
_TRAIN_STATE_MIN = {"epoch": 1, "last_valid_step": -1}  # every other int field is a count, >= 0


def _checked_train_state(ck: ckpt_io.Checkpoint) -> TrainState:
    """The checkpoint's ``train_state`` as a TrainState, each known entry of its field's type (unknown
    entries, from a newer lmtie, are ignored)."""
    import typing

    saved = dict(ck.train_state)
    # a checkpoint from before the time split: all the loop time it recorded counts as update time
    saved.setdefault("update_seconds", saved.get("train_seconds", 0.0))
    hints = typing.get_type_hints(TrainState)
    for k, v in saved.items():
        tp = hints.get(k)
        if tp is None or tp is Any:
            continue
        if tp is int:
            ok, what = isinstance(v, int) and not isinstance(v, bool) and v >= _TRAIN_STATE_MIN.get(k, 0), \
                f"an integer >= {_TRAIN_STATE_MIN.get(k, 0)}"
        elif tp is float:
            ok, what = _is_number(v) and math.isfinite(v) and v >= 0, "a finite number >= 0"
        elif tp == Optional[float]:
            ok, what = v is None or _is_number(v), "a number or null"
        else:
            ok, what = isinstance(v, tp), f"a {tp.__name__}"
        if not ok:
            shown = repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..."
            raise UserError(f"{ck.path}: train_state {k!r} is {shown}, not {what}; {_RESTORE_HINT}")
    return TrainState(**{k: saved[k] for k in TrainState.__dataclass_fields__ if k in saved})


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _checked_host_rngs(ck: ckpt_io.Checkpoint, python_rng, numpy_rng):
    """The Python and NumPy RNG states, tried on private generators first (the global ones stay untouched)."""
    try:
        py = _tupled(python_rng)
        random.Random().setstate(py)
    except (TypeError, ValueError, IndexError, OverflowError) as e:
        raise UserError(f"{ck.path}: train_state 'python_rng' is not a Python RNG state ({_short(e)}); {_RESTORE_HINT}")
    try:
        s = numpy_rng
        npy = (s[0], np.asarray(s[1], dtype=np.uint32), *s[2:])
        np.random.RandomState().set_state(npy)
    except (TypeError, ValueError, IndexError, KeyError, OverflowError) as e:
        raise UserError(f"{ck.path}: train_state 'numpy_rng' is not a NumPy RNG state ({_short(e)}); {_RESTORE_HINT}")
    return py, npy


def _check_generator_state(ck: ckpt_io.Checkpoint, name: str, device: torch.device) -> None:
    """rng.``name`` fits a generator on ``device`` (tried on a private one: the global generator stays untouched)."""
    t = ck.rng.get(name)
    why = "missing" if t is None else None
    if why is None:
        try:
            torch.Generator(device).set_state(t)
        except (RuntimeError, TypeError) as e:
            why = f"{t.dtype} of shape {list(t.shape)}, not a {device.type} generator state ({_short(e)})"
    if why:
        raise UserError(f"{ck.path}: RNG state rng.{name} is {why}; {_RESTORE_HINT}")


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:100] if str(e) else type(e).__name__
