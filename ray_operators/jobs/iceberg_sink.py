"""The one subclass of Ray's private ``IcebergDatasink``: a write that checks its run key on the
very snapshot it commits against.

It relies on two things of Ray's sink, pinned by
``tests/unit/ray_operators/jobs/test_iceberg_sink.py`` so that a Ray upgrade that changes them
fails loudly instead of silently duplicating a commit:

- ``on_write_start(self, schema=None)`` loads the table into ``self._table``, the base the final
  commit asserts (pyiceberg's ``AssertRefSnapshotId`` on ``main``);
- ``write(self, blocks, ctx)`` writes the data files of a task's blocks, using
  ``self._table_metadata``;
- and of pyiceberg: ``Transaction.commit_transaction`` reads ``commit.retry.num-retries`` from
  ``table.metadata.properties``. pyiceberg (0.12) rebases a conflicting commit onto the new head
  and retries it, which would commit over a concurrent commit of the same run key: every commit
  of ours turns that off (:func:`without_commit_rebase`) and handles a conflict itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: pyiceberg's table property for its automatic rebase-and-retry of a conflicting commit.
COMMIT_NUM_RETRIES = "commit.retry.num-retries"


def without_commit_rebase(table: Any) -> Any:
    """``table``, whose commits fail on a concurrent commit instead of being rebased onto it.

    Exactly-once rests on "the run key is not on the commit's base, and the commit lands on that
    base or not at all". The table's stored properties are untouched; only this handle changes.
    """
    metadata = table.metadata
    if metadata.properties.get(COMMIT_NUM_RETRIES) != "0":
        table.metadata = metadata.model_copy(
            update={"properties": {**metadata.properties, COMMIT_NUM_RETRIES: "0"}}
        )
    return table


class AlreadyCommitted(Exception):
    """The run key is on the write's base snapshot's branch: nothing was written."""


def guarded_sink_class():
    """``RunKeyGuardedSink``, built on first use (this module is importable without Ray)."""
    from ray.data._internal.datasource.iceberg_datasink import IcebergDatasink

    class RunKeyGuardedSink(IcebergDatasink):
        """``IcebergDatasink`` + a run-key check on the commit's base + a schema check per block.

        :param run_key: refuse the write (:class:`AlreadyCommitted`) when the base snapshot's branch
            already carries it.
        :param is_committed: ``(table, run_key) -> snapshot | None``: the run-key lookup.
        :param evolve_schema: the schema the table is evolved to before any file is written (the
            data's validated schema), or None to leave it to the commit's own reconciliation.
            What Ray passes ``on_write_start`` is not used: when Ray fuses the write with the maps
            before it, that is the schema of the fused operator's *input*.
        :param check_block: ``(table_schema, block_schema) -> None``, raising on a mismatch, run
            on every block before its file is written (when the data's schema was not known
            before the write, this is where it is checked: a failing block fails the write before
            anything is committed).
        """

        def __init__(
            self,
            *args: Any,
            run_key: str,
            is_committed: Callable[[Any, str], Any],
            evolve_schema: Any = None,
            check_block: Callable[[Any, Any], None] | None = None,
            **kwargs: Any,
        ) -> None:
            super().__init__(*args, **kwargs)
            self._run_key = run_key
            self._is_committed = is_committed
            self._evolve_schema = evolve_schema
            self._check_block = check_block

        def on_write_start(self, _fused_input_schema: Any = None) -> None:
            super().on_write_start(self._evolve_schema)
            if self._is_committed(self._table, self._run_key) is not None:
                raise AlreadyCommitted(self._run_key)
            # The commit (on_write_complete) is made on this very base, or fails.
            without_commit_rebase(self._table)

        def on_write_complete(self, *args: Any, **kwargs: Any) -> Any:
            from ray_operators.jobs.timing import phase

            with phase("iceberg commit"):
                return super().on_write_complete(*args, **kwargs)

        def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
            if self._check_block is None:
                return super().write(blocks, ctx)
            return super().write(self._checked(blocks, self._check_block), ctx)

        def _checked(self, blocks: Iterable[Any], check: Callable[[Any, Any], None]) -> Iterable[Any]:
            from ray.data.block import BlockAccessor

            for block in blocks:
                table = BlockAccessor.for_block(block).to_arrow()
                if table.num_rows:
                    check(self._table_metadata.schema(), table.schema)
                yield block

    return RunKeyGuardedSink
