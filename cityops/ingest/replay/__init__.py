"""Replay a file of recorded events (CSV, JSON lines or Parquet) into a raw feed topic.

Each record goes through the same steps, one module each:

1. read (``readers``) — JSON lines byte-wise (a line longer than ``max_message_bytes`` is
   rejected as ``oversized`` without being held in memory); CSV row by row with the stdlib
   reader (all columns as text; undecodable bytes kept so that row alone is rejected as
   ``bad_encoding``; a field over the size limit rejects that row as ``oversized``); Parquet
   in batches with pyarrow → pandas;
2. map (``mapping``) — ``mapping`` renames file columns to contract fields
   (``{"event_time": "ts"}``), ``constants`` fills fields the file lacks
   (``{"zone_id": "jfb_square"}``); ``lat`` / ``lon`` columns become ``position``; CSV text is
   converted to the numbers the contract's fields declare; missing ``source`` / ``event_id``
   are derived (``source`` from the site id, ``event_id`` as ``<source>:<epoch s>``,
   ``<incident_id>:<status>`` for incidents); re-basing (optional) shifts every
   ``event_time`` by one offset so the first record lands on ``rebase_to`` (e.g. now);
3. judge (``judging``) — ``cityops.core.contract.decode_event``; a refused record goes to the
   dead-letter topic with its reason, stage ``replay``, source ``replay:<file name>`` and its
   line number;
4. send (``sending``) — keyed by ``source``, paced by event time divided by ``speed`` (none:
   as fast as the producer goes).
"""

from cityops.ingest.replay.judging import ReplayItem, read_records
from cityops.ingest.replay.mapping import RecordMapper, field_kinds, parse_assignments
from cityops.ingest.replay.readers import FORMATS, detect_format
from cityops.ingest.replay.sending import ReplaySummary, replay_file

__all__ = ["FORMATS", "RecordMapper", "ReplayItem", "ReplaySummary", "detect_format",
           "field_kinds", "parse_assignments", "read_records", "replay_file"]
