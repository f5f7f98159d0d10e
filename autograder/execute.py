"""nbgrader's Execute with a bound on a cell that ignores its interrupt.

At a cell's time limit nbgrader interrupts the kernel and goes on with the next cell; a
cell that ignores SIGINT keeps the kernel busy, so every later cell waits its whole time
limit too and the slot is held until the per-notebook limit. `BoundedExecute` waits
`interrupt_grace` seconds for the kernel to answer the interrupt; if it does not, the
kernel is stopped (SIGKILL to its process group: its init and PID namespace with it), the
cell keeps its `CellTimeoutError`, and every later code cell is recorded as not run (an
error, so its test cells score 0) without waiting. The cells before keep their points.

nbgrader_config.py puts it in place of Execute in `Autograde.autograde_preprocessors`.
"""
from __future__ import annotations

from queue import Empty

from nbclient.util import ensure_async, run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.converters.autograde import Autograde
from nbgrader.preprocessors import Execute
from traitlets import Integer

NOT_RUN = "KernelStopped"


class BoundedExecute(Execute):
    interrupt_grace = Integer(
        10, help="Seconds a kernel has to answer the interrupt sent at a cell's time limit "
                 "before it is stopped and the rest of the notebook is not run.").tag(config=True)

    def reset_execution_trackers(self) -> None:
        super().reset_execution_trackers()
        self.stopped_at: str | None = None   # the cell whose interrupt was ignored
        self._running: str = "a cell"

    async def _async_handle_timeout(self, timeout: int, cell: NotebookNode | None = None) -> dict:
        self.log.error("Timeout waiting for execute reply (%is): interrupting the kernel", timeout)
        await ensure_async(self.km.interrupt_kernel())
        try:  # the reply to the interrupted request (the only one outstanding)
            await ensure_async(self.kc.shell_channel.get_msg(timeout=self.interrupt_grace))
        except Empty:
            self.log.error("The kernel ignored the interrupt for %d s: stopping it", self.interrupt_grace)
            self.stopped_at = self._running
            self.raise_on_iopub_timeout = False   # a stopped kernel sends nothing more
            await ensure_async(self.km.shutdown_kernel(now=True))
        return {"content": {**self.error_on_timeout, "status": "error"}}

    async def async_execute_cell(self, cell: NotebookNode, cell_index: int, execution_count: int | None = None,
                                 store_history: bool = True) -> NotebookNode:
        if self.stopped_at is not None and cell.cell_type == "code" and cell.source.strip():
            cell.outputs = [NotebookNode(
                output_type="error", ename=NOT_RUN,
                evalue=f"not run: the grader stopped the kernel because {self.stopped_at} kept running "
                       "after it was interrupted at its time limit",
                traceback=[f"{NOT_RUN}: not run ({self.stopped_at} ignored the interrupt at its time limit)"])]
            return cell
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        self._running = f"cell {cell_index + 1}" + (f" ({gid})" if gid else "")
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)

    execute_cell = run_sync(async_execute_cell)   # the base class binds its own at definition


def autograde_preprocessors() -> list:
    """nbgrader's autograde preprocessors with BoundedExecute in place of Execute."""
    default = Autograde.class_traits()["autograde_preprocessors"].default()
    return [BoundedExecute if p is Execute else p for p in default]
