"""Training runs as background jobs: a subprocess per run, a lock file and a progress file.

A click in Streamlit stops the running script, so the app never trains inside it: :func:`start` spawns
``python -m app.jobs`` (this file) in its own process group and returns at once; every page reads
:func:`status` to draw a progress bar. Nothing here imports streamlit.

Files, under ``ROOT/.jobs/`` (hidden, so the run store never lists them)::

    NAME.lock            {"pid", "started"}: the job owning run NAME. Created with O_EXCL (one winner
                         when two sessions start the same run); removed by the job when it ends; a lock
                         whose pid is gone (a crash, kill -9) is stale and removed by the next reader.
    NAME.progress.json   {"state": running|done|failed, "fraction", "text", "error", "epoch", "pid", ...},
                         replaced atomically.

A job ends in this order: it releases its lock, then writes its final state (done or failed). So a reader
that sees the final state never finds the lock still there; in the instant between the two, the progress
file still says running and names the job's pid, which is alive, so the job still reads as running (and as
failed if it was killed right there).
    NAME.log             the job's stdout and stderr, for whoever debugs it (never shown in the app).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

JOBS = ".jobs"
REPO = Path(__file__).resolve().parent.parent
_CHILDREN: dict[int, subprocess.Popen] = {}  # jobs this process started (reaped in status())


@dataclass(frozen=True)
class JobStatus:
    """What a page shows about run ``name``'s job."""

    name: str
    state: str  # "running", "done", "failed"
    fraction: float
    text: str
    error: str | None = None
    pid: int | None = None


def _dir(root: Path) -> Path:
    return Path(root) / JOBS


def _lock(root: Path, name: str) -> Path:
    return _dir(root) / f"{name}.lock"


def _progress(root: Path, name: str) -> Path:
    return _dir(root) / f"{name}.progress.json"


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj), encoding="utf-8")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process; reaps the job children of this process."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie answers kill(0) but is dead
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _owner(root: Path, name: str) -> int | None:
    """The pid holding run ``name``'s lock, or ``None``; a stale lock (dead pid) is removed."""
    lock = _lock(root, name)
    info = _read_json(lock)
    if info is None:
        if lock.exists() and time.time() - lock.stat().st_mtime > 10:
            lock.unlink(missing_ok=True)  # unreadable and old: a writer died between create and write
        return None
    pid = int(info.get("pid", -1))
    if pid > 0 and pid_alive(pid):
        return pid
    lock.unlink(missing_ok=True)
    prog = _read_json(_progress(root, name))
    if prog is not None and prog.get("state") == "running":
        prog.update(state="failed", error="the training process stopped unexpectedly (killed or crashed)")
        _write_json(_progress(root, name), prog)
    return None


def status(root: str | os.PathLike, name: str) -> JobStatus | None:
    """The job of run ``name`` in ``root``: running, done or failed; ``None`` when there never was one."""
    root = Path(root)
    pid = _owner(root, name)
    prog = _read_json(_progress(root, name))
    if prog is None:
        return JobStatus(name, "running", 0.0, "Starting…", pid=pid) if pid else None
    state = prog.get("state", "running")
    if state == "running" and pid is None:  # no lock: the job is writing its final state, or it died
        finishing = prog.get("pid")
        if isinstance(finishing, int) and finishing > 0 and pid_alive(finishing):
            pid = finishing
        else:
            state = "failed"
    return JobStatus(name, state, float(prog.get("fraction", 0.0)), str(prog.get("text", "")),
                     prog.get("error"), pid)


def running(root: str | os.PathLike) -> list[JobStatus]:
    """Every job still running in ``root``."""
    d = _dir(Path(root))
    if not d.is_dir():
        return []
    out = []
    for lock in sorted(d.glob("*.lock")):
        st = status(root, lock.name[: -len(".lock")])
        if st is not None and st.state == "running":
            out.append(st)
    return out


def start(root: str | os.PathLike, name: str, config: dict) -> bool:
    """Start training ``config`` into run ``root/name`` in the background.

    Returns ``False`` (and starts nothing) when a live job already owns ``name``: two sessions asking for
    the same run share one job. An interrupted earlier attempt (its staging folder) is cleared first.

    Raises:
        ValueError: the run exists already, or the name is invalid.
    """
    from fnlab.storage import runs

    root = Path(root)
    runs.validate_name(name)
    store = runs.RunStore(root)
    if store.exists(name):
        raise ValueError(f"a run named {name!r} already exists in the runs folder")
    _dir(root).mkdir(parents=True, exist_ok=True)
    if _owner(root, name) is not None:
        return False
    try:
        fd = os.open(_lock(root, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False  # another session won the race
    with os.fdopen(fd, "w") as f:
        json.dump({"pid": os.getpid(), "started": time.time()}, f)
    # An interrupted attempt's staging folder is cleared by the run store when the job creates the run, under the
    # run's own lock (so a run that `fnlab train` writes to the same name at this moment is never touched).
    _write_json(_progress(root, name), {"state": "running", "fraction": 0.0, "text": "Starting…"})
    log = open(_dir(root) / f"{name}.log", "w")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.jobs", "--root", str(root), "--name", name, "--config", json.dumps(config)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            env={"OMP_WAIT_POLICY": "PASSIVE", **os.environ})  # as the fnlab command (fnlab/cli/__init__.py) sets it
    except OSError:
        _lock(root, name).unlink(missing_ok=True)
        raise
    finally:
        log.close()
    _CHILDREN[proc.pid] = proc
    _write_json(_lock(root, name), {"pid": proc.pid, "started": time.time()})
    return True


def stop(root: str | os.PathLike, name: str) -> None:
    """Stop run ``name``'s job (SIGTERM to its process group); its lock is released by the next reader."""
    pid = _owner(Path(root), name)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass


# ------------------------------------------------------------------------------------ the job itself
#: where each stage of a job sits on the progress bar (start, end)
STAGES = {"starting": (0.0, 0.04), "dataset": (0.04, 0.12), "training": (0.12, 0.84), "evaluating": (0.84, 0.9),
          "pages": (0.9, 1.0)}


class _Reporter:
    """Writes the job's progress file: a named stage, its share of the bar, and a text. While a stage has no
    finer news (building the dataset, evaluating), a ticker moves the bar on every half second, so the bar never
    stands still."""

    def __init__(self, path: Path) -> None:
        import threading

        self.path, self.pid, self.t0 = path, os.getpid(), time.perf_counter()
        self.stage, self.frac, self.text, self.since = "starting", 0.0, "Starting…", time.perf_counter()
        self.extra: dict = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(target=self._tick, daemon=True).start()

    def set(self, stage: str, within: float, text: str, **extra) -> None:
        lo, hi = STAGES[stage]
        with self._lock:
            if stage != self.stage:
                self.since = time.perf_counter()
            self.stage, self.frac, self.text, self.extra = stage, lo + (hi - lo) * min(1.0, max(0.0, within)), text, extra
            self._write()

    def _write(self) -> None:
        elapsed = time.perf_counter() - self.t0
        _write_json(self.path, {"state": "running", "fraction": self.frac, "stage": self.stage, "pid": self.pid,
                                "text": f"{self.text} ({elapsed:.0f} s)", **self.extra})

    def _tick(self) -> None:
        import math

        while not self._stop.wait(0.5):
            with self._lock:
                if self.stage in ("dataset", "evaluating", "starting"):
                    lo, hi = STAGES[self.stage]
                    creep = lo + (hi - lo) * (1 - math.exp(-(time.perf_counter() - self.since) / 6.0))
                    self.frac = max(self.frac, creep)
                self._write()

    def close(self) -> None:
        self._stop.set()


def _run_job(root: Path, name: str, config: dict) -> dict:
    """Train the run, then store what its pages show (:class:`fnlab.storage.pages.RunPages`); returns the final
    progress record (written by :func:`main` after the lock is released). Stages, named on the bar: building the
    dataset, epoch e/E, evaluating, preparing the pages."""
    rep = _Reporter(_progress(root, name))
    rep.set("starting", 0.5, "Starting: loading torch")
    from fnlab.storage import runs
    from fnlab.training import train

    class Progress(train.Callback):
        total = 1
        epochs = 1
        warmup = 0

        def on_train_start(self, cfg, info) -> None:
            self.steps = max(1, int(info.get("steps_per_epoch", 1)))
            self.epochs = max(1, int(info.get("epochs", 1)))
            self.warmup = int(getattr(cfg, "effective_warmup", 0) or 0)
            self.total = self.epochs * self.steps
            rep.set("training", 0.0, f"Epoch 1/{self.epochs}{self._warm(1)} on {info.get('device', 'cpu')}",
                    epoch=1)

        def _warm(self, epoch: int) -> str:
            return " (warm-up, without the sampler)" if epoch <= self.warmup else ""

        def on_step(self, epoch, step, steps, loss) -> None:
            if step == steps or step % 3 == 0:
                done = ((epoch - 1) * steps + step) / self.total
                rep.set("training", done, f"Epoch {epoch}/{self.epochs}{self._warm(epoch)}, step {step}/{steps}, "
                                          f"loss {loss:.3f}", epoch=epoch)

        def on_epoch_end(self, epoch, metrics) -> None:
            if epoch >= self.epochs:
                rep.set("evaluating", 0.0, "Evaluating the kept epoch and fitting the posterior", epoch=epoch)
            else:
                rep.set("training", epoch / self.epochs, f"Epoch {epoch + 1}/{self.epochs}{self._warm(epoch + 1)}",
                        epoch=epoch + 1)

    try:
        rep.set("dataset", 0.0, f"Building the dataset ({config.get('dataset')})")
        cfg = train.TrainConfig.from_dict(config)
        run = train.train(cfg, callbacks=[Progress()], store=runs.RunStore(root), name=name)
        _prepare_pages(run, rep, first=True)
    except BaseException as err:  # noqa: BLE001 - reported to the app as one line, details in the log
        msg = "stopped" if isinstance(err, SystemExit | KeyboardInterrupt) else (
            " ".join(str(err).split()) if str(err) else type(err).__name__)
        import traceback

        traceback.print_exc()
        return {"state": "failed", "fraction": 0.0, "text": "failed", "error": msg}
    finally:
        rep.close()
    _JOB["run"] = run
    return {"state": "done", "fraction": 1.0, "text": f"Done in {time.perf_counter() - rep.t0:.0f} s"}


_JOB: dict = {}  # the finished run, for the pages prepared after the job says it is done


def _prepare_pages(run, rep: _Reporter | None, *, first: bool) -> None:
    """Store what the run's pages read (:class:`fnlab.storage.pages.RunPages`, test split). ``first``: what the
    first page shows (the example), before the job says it is done; then (``first=False``, after the final state
    is written, while the app already shows the run) the rankings, distributions, the map's projection and the
    example of every saved split, so every page (and a split change) reads them. A failure here never fails the run: a page computes what is missing when it asks."""
    from fnlab.storage.loader import LoadedRun
    from fnlab.storage.pages import RunPages

    try:
        loaded = LoadedRun(run)
        if "test" not in loaded.saved_splits:
            return
        pages = RunPages(loaded)
        if first:
            rep.set("pages", 0.0, "Preparing the pages: the lesson's example")
            pages.example("test")
            return
        pages.prepare(loaded.saved_splits)  # test first: what the app shows first
    except Exception:  # noqa: BLE001 - logged; the app computes what is missing when a page asks for it
        import traceback

        traceback.print_exc()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train one run in the background for the fnlab app.")
    ap.add_argument("--root", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--config", required=True, help="the TrainConfig as JSON")
    args = ap.parse_args(argv)
    root = Path(args.root)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    final = {"state": "failed", "fraction": 0.0, "text": "failed", "error": "the training process stopped"}
    try:
        final = _run_job(root, args.name, json.loads(args.config))
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the end is not interrupted half way
        info = _read_json(_lock(root, args.name))
        if info is not None and int(info.get("pid", -1)) == os.getpid():
            _lock(root, args.name).unlink(missing_ok=True)  # first the lock ...
        _write_json(_progress(root, args.name), final)  # ... then the final state
    if final["state"] == "done" and "run" in _JOB:  # the run is shown now; store the rest of what its pages read
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # nothing left to interrupt half way
        _prepare_pages(_JOB["run"], None, first=False)
    return 0 if final["state"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
