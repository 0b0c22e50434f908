"""Job helpers shared by the sync and async clients: ids, terminal states, failures, a progress bar."""

from __future__ import annotations

from collections.abc import Callable
from typing import TextIO

from . import models as m
from ._errors import JobFailedError

ProgressFn = Callable[[m.Job], None]
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def job_id(job: int | m.Job) -> int:
    return job.id if isinstance(job, m.Job) else int(job)


def finished(job: m.Job) -> bool:
    return job.state in TERMINAL


def raise_for_job(job: m.Job) -> m.Job:
    if job.state == "succeeded":
        return job
    raise JobFailedError(f"job {job.id} ({job.kind} {job.model}) {job.state}: {job.message}", job)


def progress_printer(out: TextIO, width: int = 30) -> ProgressFn:
    """A one-line bar redrawn in place (`[#####.....]  52% training`), ended with a newline when done."""
    last: list[str] = [""]

    def show(job: m.Job) -> None:
        filled = int(round(job.progress * width))
        line = f"\rjob {job.id} [{'#' * filled}{'.' * (width - filled)}] {job.progress * 100:3.0f}% {job.stage or job.state}"
        if finished(job):
            line += f" — {job.state}\n"
        if line != last[0]:
            pad = max(0, len(last[0]) - len(line))
            out.write(line + " " * pad)
            out.flush()
            last[0] = line

    return show
