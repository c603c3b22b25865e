"""Which offset a partition may commit, from the offsets acknowledged so far.

Faust (faust-streaming 0.15.3) keeps each partition's acknowledged offsets in a list and
commits up to the end of the first consecutive run in it (``Consumer._new_offset``). The
list can hold an offset twice. Seen with two workers (``kill -USR1`` prints the lists): a
stretch of a few hundred offsets after the start-up rebalance was listed twice over. The
likely path, not proven: records re-read after the rebalance's seek are acknowledged while
a commit has already taken their first copies out of Faust's duplicate check and awaits a
producer flush before it records the new committed offset. A repeated offset breaks the
run, so each commit moved past one offset only. Measured with two workers draining 100,000
events: every record was processed within 74 s, but the group's committed offsets then
crawled at about two per second on eight raw partitions (500 to 13,700 records behind each),
so a restart would have replayed them all.

``next_commit`` reads the acknowledged offsets as a set and ignores those below the
committed offset (already committed; left in the list, they could also make a commit move
backwards). It keeps Faust's rule for the head of the list: the run may start one past
the committed offset, because Faust records a skipped range (a "gap") from one past the
offset it seeked to. ``install`` puts it in place of Faust's method; the gap ranges are
merged in exactly as Faust does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def next_commit(acked: Iterable[int], committed: int | None) -> tuple[int | None, list[int]]:
    """(offset to commit or None, acknowledged offsets still waiting), for one partition.

    ``committed`` is the partition's committed offset (the next one to read), None when the
    group has none. Repeats and offsets below ``committed`` count for nothing.
    """
    pending = sorted({o for o in acked if committed is None or o >= committed})
    if not pending:
        return None, []
    if committed is not None and pending[0] - committed > 1:
        return None, pending  # the records right after the committed offset are not done
    end = pending[0]
    i = 1
    while i < len(pending) and pending[i] == end + 1:
        end = pending[i]
        i += 1
    return end + 1, pending[i:]


def _new_offset(self: Any, tp: Any) -> int | None:
    """``Consumer._new_offset`` with ``next_commit``: gaps merged in as Faust merges them."""
    acked: list[int] = self._acked[tp]
    if not acked:
        return None
    gaps = self._gap[tp]
    if gaps:
        top = max(acked)
        spans = sorted(gaps.overlap(0, top), key=lambda iv: iv.begin)
        if spans:
            filled = [o for iv in spans for o in range(iv.begin, iv.end)]
            acked.extend(filled)
            gaps.chop(0, max(filled[-1], top + 1))
    offset, rest = next_commit(acked, self._committed_offset.get(tp))
    acked[:] = rest
    index = self._acked_index[tp]
    index.clear()
    index.update(rest)
    return offset


def install() -> None:
    """Put ``next_commit`` in Faust's consumer (idempotent)."""
    from faust.transport import consumer as fconsumer

    fconsumer.Consumer._new_offset = _new_offset  # type: ignore[method-assign]
