"""Benchmarks of the streams worker against the ceiling, printed and written to BENCHMARKS.md.

Against the broker of ``CITYOPS_KAFKA_PORT`` (``make bench`` starts one), each part with its
own topic prefix and an embedded chdb warehouse held by one ``cityops sink`` process:

* ceiling — plain aiokafka consuming a pre-loaded topic set (the four raw topics, a realistic
  mix), without and with ``orjson.loads`` of every value;
* hops — on the same topics, what each kind of hop costs per record alone (the sink's
  kafka-python reading, aiokafka reading with the feed contract, producing a record at a
  time and a batch at a time), client and broker;
* drain — the same pre-loaded mix, then 1 ``cityops worker --no-sink`` + 1 ``cityops sink``:
  time until every event is a row in the warehouse and the workers have committed every
  raw and clean record (aggregation done), beside the ceiling (ratio); each part's CPU, the
  state logs' sizes and how often the raw partitions' alignment let every partition run
  (``--keep`` keeps a drain's topics and logs to look at afterwards);
* latency — produced → row visible, p50 / p95 / p99 at each ``--rates`` for ``--seconds``;
* alone — the worker with no sink running, then the sink alone over what it published
  (``--scale-events``): which of the two bounds the drain;
* scaling — 1, 2, 3 workers (``--scale``) on ``--partitions`` partitions, per-worker rate;
* profile — py-spy samples of the worker during a drain; the largest costs by function.

The drain and latency parts run once per ``--stages`` layout: ``all``, one worker running
every step; ``split``, a validation worker and an aggregation worker
(``CITYOPS_WORKER_STAGES``), the two steps on different CPUs.

    .venv/bin/python bench/bench_streams.py [--events 1000000] [--only drain,ceiling]

The mix follows the simulator's 12-hour backlog: 63 % footfall, 25 % parking, 8 % air,
4 % incidents, keyed by source id. An incident's updates are the few incident events among
16 consecutive events (about 0.6 on average, each with the status of its place in a cycle of
four), so most incidents get one update and three in four never close: a hard case for the
incidents' state (``CITYOPS_INCIDENT_EXPIRE_AFTER_S`` closes them after a day of event time).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from cityops import compiled
from cityops.core import topics as topic_names
from cityops.core.kafka_security import kafka_python_security
from cityops.core.registry import load_registry
from cityops.core.settings import FEEDS, load_settings
from cityops.deploy.backlog import OffsetReader, backlog_of
from cityops.deploy.kafka_local import ensure_topics
from cityops.streams.alignment import PartitionAligner
from cityops.warehouse.rows import FEED_TABLES
from cityops.warehouse.sink import sink_group

ROOT = Path(__file__).resolve().parents[1]
CITYOPS = str(Path(sys.executable).with_name("cityops"))
PYSPY = str(Path(sys.executable).with_name("py-spy"))
MIX = (("footfall", 63), ("parking", 25), ("air", 8), ("incidents", 4))
RESULTS: list[tuple[str, str, str]] = []  # (part, figure, detail) for BENCHMARKS.md
PROFILE_OUT: Path | None = None  # --profile-out: where the drain's raw py-spy stacks go


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def report(part: str, figure: str, detail: str = "") -> None:
    print(f"  {part}: {figure}" + (f"  ({detail})" if detail else ""), flush=True)
    RESULTS.append((part, figure, detail))


# --- the mix ----------------------------------------------------------------------------------
def event_step_ms() -> float:
    """Event time between two events of the mix: each footfall counter then reports at its
    registry cadence (the district's 20 counters every 30 s: about 945 ms), so windows and
    parking trends hold as many points as in real use and a 1 M backlog spans days."""
    reg = load_registry(load_settings().registry_dir)
    share = dict(MIX)["footfall"] / sum(s for _f, s in MIX)
    cadence = min(c.cadence_s for c in reg.counters.values())
    return 1000.0 * cadence * share / len(reg.counters)


def mix(n: int, tag: str, t0: datetime) -> Iterator[tuple[str, bytes, bytes]]:
    """``n`` valid events (feed, key, value) of the four feeds, event time advancing
    ``event_step_ms`` per event."""
    reg = load_registry(load_settings().registry_dir)
    step_ms = event_step_ms()
    counters = sorted(reg.counters.values(), key=lambda c: c.id)
    carparks = sorted(reg.carparks.values(), key=lambda c: c.id)
    stations = sorted(reg.stations.values(), key=lambda s: s.id)
    zones = sorted(reg.zones)
    wheel = [f for f, share in MIX for _ in range(share)]
    statuses = ("reported", "dispatched", "on_scene", "resolved")
    for i in range(n):
        feed = wheel[(i * 37) % len(wheel)]
        at = (t0 + timedelta(milliseconds=step_ms * i)).isoformat()
        eid = f"{tag}-{i}"
        if feed == "footfall":
            c = counters[i % len(counters)]
            body: dict[str, Any] = {"source": c.id, "zone_id": c.zone_id,
                                    "entries": i % 9, "exits": i % 7, "interval_s": 30}
        elif feed == "parking":
            p = carparks[i % len(carparks)]
            body = {"source": p.id, "carpark_id": p.id, "capacity": p.capacity,
                    "occupied": (i * 13) % p.capacity}
        elif feed == "air":
            s = stations[i % len(stations)]
            body = {"source": s.id, "station_id": s.id, "averaging_s": s.cadence_s,
                    "pm25_ugm3": float(20 + i % 60), "pm10_ugm3": float(40 + i % 80),
                    "no2_ugm3": float(10 + i % 50)}
        else:
            z = zones[i % len(zones)]
            body = {"source": z, "incident_id": f"{tag}-inc-{i // 16}",
                    "incident_type": "fall", "severity": "medium", "zone_id": z,
                    "status": statuses[(i // 4) % 4]}
        body.update(event_id=eid, event_time=at)
        yield feed, body["source"].encode(), json.dumps(body).encode()


def setup_topics(prefix: str, partitions: int) -> None:
    ensure_topics(load_settings(topic_prefix=prefix, topic_partitions=partitions))


def drop_topics(prefix: str) -> None:
    """Delete a part's topics (its own prefix, state logs included) when it ends: left there,
    every run added about 100 partitions to the broker; after two days of runs it held 10,841,
    took 73 s to start, and used 105–210 µs of CPU per drained event (54–73 µs fresh)."""
    from kafka.admin import KafkaAdminClient

    settings = load_settings()
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers,
                             **kafka_python_security(settings))
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix + ".")]
        if names:
            admin.delete_topics(names, timeout_ms=60_000)
    except Exception as exc:  # a bench left running is no reason to fail the figures
        print(f"  (topics of {prefix} not deleted: {type(exc).__name__}: {exc})", flush=True)
    finally:
        admin.close()


def preload(prefix: str, n: int, tag: str) -> Tally:
    from kafka import KafkaProducer

    settings = load_settings(topic_prefix=prefix)
    prod = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                         linger_ms=20, batch_size=512 * 1024, compression_type="lz4")
    t0 = datetime.now(UTC) - timedelta(milliseconds=event_step_ms() * n) - timedelta(hours=1)
    tally: Tally = Tally()
    started = time.monotonic()
    for feed, key, value in mix(n, tag, t0):
        prod.send(settings.topic(topic_names.raw(feed)), key=key, value=value)
        tally[feed] += 1
    prod.flush()
    prod.close(10)
    print(f"  pre-loaded {n:,} events {dict(tally)} in {time.monotonic() - started:.1f} s",
          flush=True)
    return tally


# --- processes --------------------------------------------------------------------------------
def favour(pid: int, nice: int) -> None:
    """Set the CPU weight of a process's session (its Linux autogroup: the supervised worker
    and its child): each part runs in a session of its own, so on a host with autogroups
    (``/proc/sys/kernel/sched_autogroup_enabled``) every busy part gets an equal share of the
    CPUs whatever its threads' nice values, as equal cgroup weights would; a negative value
    gives this part more, as an operator would with systemd's ``CPUWeight=`` or Kubernetes
    CPU requests. Lowering it needs root (``CAP_SYS_NICE``)."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError as exc:
        raise SystemExit(f"cannot set the autogroup nice of pid {pid} to {nice}: {exc}") from exc


class Proc:
    """``cityops worker`` (no sink) or ``cityops sink``, with its own port and data dir."""

    def __init__(self, kind: str, prefix: str, work: Path, n: int, partitions: int,
                 profile_s: float = 0.0, stages: str = "all", autogroup_nice: int = 0) -> None:
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ)
        env.update({
            "CITYOPS_TOPIC_PREFIX": prefix,
            "CITYOPS_TOPIC_PARTITIONS": str(partitions),
            "CITYOPS_DATA_DIR": str(work / f"{kind}{n}"),
            "CITYOPS_WAREHOUSE_URL": f"chdb://{work / 'warehouse'}",
            "CITYOPS_WORKER_WEB_PORT": str(self.port),
            "CITYOPS_WORKER_SINK": "false",
            "CITYOPS_STREAM_IDLE_CLOSE_S": "0",
            "CITYOPS_LOG_LEVEL": "WARNING",
            "CITYOPS_WORKER_STAGES": stages,
        })
        # supervised, as deployed: a worker that stops itself on an offset gap is restarted
        args = ["worker"] if kind == "worker" else ["sink"]
        self.log_path = work / f"{kind}{n}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - the child's output
        self.proc = subprocess.Popen([CITYOPS, *args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=ROOT,
                                     start_new_session=True)
        if autogroup_nice:
            try:
                favour(self.proc.pid, autogroup_nice)
            except SystemExit:  # not started for the drain: stopped here, not left running
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
                self.log.close()
                raise
        self.spy: subprocess.Popen | None = None
        self.spy_out = work / f"{kind}{n}.pyspy.txt"
        self.profile_s = profile_s

    def start_profile(self) -> None:
        """py-spy samples of this process from now on (after start-up, during the work)."""
        profile_s = self.profile_s
        if profile_s > 0:
            self.spy = subprocess.Popen(
                [PYSPY, "record", "--pid", str(self.proc.pid), "--format", "raw",
                 "--duration", str(int(profile_s)), "--rate", "50", "--nonblocking",
                 "--subprocesses", "--output", str(self.spy_out)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.kind} exited; see {self.log_path}")
            try:
                body = httpx.get(f"{self.url}/health", timeout=2).json()
                if body.get("running", body.get("ok")):
                    return
            except (httpx.HTTPError, ValueError):
                pass
            time.sleep(0.3)
        raise SystemExit(f"{self.kind} did not become ready; see {self.log_path}")

    def health(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/health", timeout=10).json())

    def sql(self, query: str) -> list[list[Any]]:
        r = httpx.post(f"{self.url}/sql", json={"sql": query}, timeout=60)
        r.raise_for_status()
        return list(r.json()["rows"])

    def stop(self) -> None:
        if self.spy is not None and self.spy.poll() is None:
            self.spy.send_signal(signal.SIGINT)
            try:
                self.spy.wait(30)
            except subprocess.TimeoutExpired:
                self.spy.kill()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(30)
        self.log.close()


#: the drain's CPU timeline: one reading of every part's CPU this often
CPU_SPAN_S = 10.0


def _group_stats(pgid: int) -> Iterator[tuple[Path, list[str]]]:
    """Each live process of a process group: its ``/proc`` directory and its ``stat``
    fields from field 3 (state) on (pgrp is ``[2]``, utime … cstime ``[11:15]``)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            yield d, fields


def cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of the live processes of a process group, with their
    reaped children (a supervised worker's restarts). CPU time, unlike wall time, does not
    count what the other processes took, so it says what one event costs each part (the
    host's neighbours still move it: compare parts of one run, or runs side by side)."""
    total = sum(sum(int(x) for x in f[11:15]) for _d, f in _group_stats(pgid))
    return total / os.sysconf("SC_CLK_TCK")


def cpu_wait_seconds(pgid: int) -> float:
    """Seconds the live threads of a process group's processes have spent runnable but
    waiting for a CPU (``/proc/<pid>/task/<tid>/schedstat``, second field): how much of a
    part's time went to waiting for the others, not to its own work or to I/O."""
    total = 0
    for d, _fields in _group_stats(pgid):
        try:
            for task in (d / "task").iterdir():
                total += int((task / "schedstat").read_text().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return total / 1e9


def broker_pid() -> int | None:
    """The local broker of ``CITYOPS_KAFKA_PORT`` (``cityops kafka up``), if it runs here."""
    from cityops.deploy.kafka_local import LocalKafka

    return LocalKafka(load_settings()).pid()


class CpuMeter:
    """CPU seconds each part of a run used between ``__init__`` and ``per_event``; with
    ``sample`` called now and then, how many CPUs each part used over each span of the run
    and how long its threads waited for a CPU (which part of a drain is its critical path,
    and whether it was starved or idle)."""

    def __init__(self, parts: dict[str, list[Proc]]) -> None:
        self.parts = parts
        self.start = self.read()
        self.samples: list[tuple[float, dict[str, float]]] = [(time.monotonic(), self.start)]
        self.waits0 = self.waits()

    def waits(self) -> dict[str, float]:
        return {name: sum(cpu_wait_seconds(pgid=p.proc.pid) for p in procs)
                for name, procs in self.parts.items()}

    def sample(self) -> None:
        self.samples.append((time.monotonic(), self.read()))

    def timeline(self) -> str:
        """CPUs each part used per span between samples ("validation 0.55 0.53 …")."""
        pairs = list(zip(self.samples, self.samples[1:], strict=False))
        return "; ".join(
            f"{name} " + " ".join(f"{(b[name] - a[name]) / max(tb - ta, 1e-9):.2f}"
                                  for (ta, a), (tb, b) in pairs)
            for name in self.start)

    def waited(self) -> str:
        """Each part's waits for a CPU, in thread-seconds per second of the run."""
        end, took = self.waits(), time.monotonic() - self.samples[0][0]
        return ", ".join(f"{name} {(end[name] - self.waits0[name]) / took:.2f}"
                         for name in end)

    def read(self) -> dict[str, float]:
        out = {name: sum(cpu_seconds(pgid=p.proc.pid) for p in procs)
               for name, procs in self.parts.items()}
        out["broker"] = _broker_cpu()
        out["bench"] = sum(os.times()[:2])
        return out

    def per_event(self, n: int) -> str:
        end = self.read()
        return ", ".join(f"{name} {1e6 * (end[name] - self.start[name]) / n:,.0f} µs"
                         for name in end)


class DrainProgress:
    """How far a drain has come, read from the broker through one ``OffsetReader`` kept open
    for the whole drain: the sink's committed offsets on ``clean.*`` against the topics' ends,
    and what the workers' groups have not committed of ``raw.*`` and ``clean.*``.

    The sink commits a batch only once the warehouse has it, so this tells the drain's
    progress without asking the sink: the warehouse count the drain used to poll every half
    second ran four scans of the growing raw tables inside the sink process (about 260 of
    them in a 1 M drain), on the CPU and the warehouse lock the sink itself needs. The rows
    are still counted once the committed offsets reach the ends (``stored``). New clients per
    reading, with a request per partition for its committed offset, cost the bench 31 ms of
    CPU per sink reading and 126 ms per workers' reading, on the two cores the drain runs on."""

    def __init__(self, prefix: str, split: bool = False) -> None:
        settings = load_settings(topic_prefix=prefix)
        self._reader = OffsetReader(settings.bootstrap_servers,
                                    kafka_python_security(settings), client_id="bench-progress")
        self._sink = sink_group(settings)
        raw = [settings.topic(topic_names.raw(f)) for f in FEEDS]
        self._clean = [settings.topic(topic_names.clean(f)) for f in FEEDS]
        # one group for both, or a validation group for raw and an aggregation group for clean
        self._workers = ([(settings.model_copy(update={"worker_stages": stage}).worker_group,
                           tps) for stage, tps in (("validation", raw),
                                                   ("aggregation", self._clean))]
                         if split else [(settings.worker_id, raw + self._clean)])

    def sink(self) -> tuple[int, int]:
        """(offsets the sink has committed, offsets in the topics) over every clean partition."""
        starts, ends = self._reader.offsets(self._clean)
        group = backlog_of(self._sink, "sink", 0, self._clean,
                           self._reader.committed(self._sink), starts, ends)
        return (sum(t.committed for t in group.topics.values()),
                sum(t.end for t in group.topics.values()))

    def workers_behind(self) -> int:
        """Records of ``raw.*`` and ``clean.*`` the workers' groups have not committed."""
        return sum(self._reader.behind(group, topics) for group, topics in self._workers)

    def close(self) -> None:
        self._reader.close()


def stored(sink: Proc, tag: str) -> int:
    parts = " UNION ALL ".join(f"SELECT count() AS n FROM {t} WHERE event_id LIKE '{tag}-%'"
                               for t in FEED_TABLES.values())
    return int(sink.sql(f"SELECT sum(n) FROM ({parts})")[0][0])


# --- parts ------------------------------------------------------------------------------------
async def _consume(prefix: str, n: int, parse: bool) -> float:
    import orjson
    from aiokafka import AIOKafkaConsumer

    settings = load_settings(topic_prefix=prefix)
    consumer = AIOKafkaConsumer(
        *[settings.topic(topic_names.raw(f)) for f in FEEDS],
        bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest",
        enable_auto_commit=False, group_id=None, max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        seen = 0
        started = 0.0  # from the first record: group-less start-up and metadata excluded
        while seen < n:
            batches = await consumer.getmany(timeout_ms=500, max_records=10_000)
            if batches and not started:
                started = time.monotonic()
            for records in batches.values():
                if parse:
                    for r in records:
                        orjson.loads(r.value)
                seen += len(records)
        return n / (time.monotonic() - started)
    finally:
        await consumer.stop()


def _broker_cpu() -> float:
    broker = broker_pid()  # its own session: the process group is the broker alone
    return cpu_seconds(pgid=os.getpgid(broker)) if broker else 0.0


def _hop(label: str, n: int, run: Callable[[], int], detail: str) -> None:
    """One hop's rate and CPU per record: this process (client) and the broker."""
    b0, c0, t0 = _broker_cpu(), sum(os.times()[:2]), time.monotonic()
    done = run()
    took = time.monotonic() - t0
    report(f"hop: {label}", f"{done / took:,.0f} records/s",
           f"{done:,} records; CPU per record: client "
           f"{1e6 * (sum(os.times()[:2]) - c0) / done:,.1f} µs, broker "
           f"{1e6 * (_broker_cpu() - b0) / done:,.1f} µs; {detail}")


def hops(prefix: str, n: int) -> None:
    """What each kind of hop of the pipeline costs per record on this machine, alone: the
    sink's client reading, the worker's client reading and validating, and producing one
    record at a time against a batch at a time. With these, the floor of a design that
    reads, validates and produces every event twice (raw → clean → aggregates) and stores it
    once can be computed before any of it is written."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    from kafka import KafkaConsumer

    from cityops.core.contract import decode_event
    from cityops.core.feeds import ValidationContext
    from cityops.streams.app import publish_many

    settings = load_settings(topic_prefix=prefix)
    raw = [settings.topic(topic_names.raw(f)) for f in FEEDS]
    clean = settings.topic(topic_names.clean("footfall"))

    def kafka_python() -> int:
        consumer = KafkaConsumer(*raw, bootstrap_servers=settings.bootstrap_servers,
                                 group_id=None, auto_offset_reset="earliest",
                                 enable_auto_commit=False, max_poll_records=5000,
                                 **kafka_python_security(settings))
        seen = 0
        while seen < n:
            seen += sum(len(r) for r in consumer.poll(timeout_ms=500).values())
        consumer.close()
        return seen

    async def aiokafka_decode() -> int:
        ctx = ValidationContext.from_settings(settings, load_registry(settings.registry_dir))
        consumer = AIOKafkaConsumer(*raw, bootstrap_servers=settings.bootstrap_servers,
                                    group_id=None, auto_offset_reset="earliest",
                                    enable_auto_commit=False)
        await consumer.start()
        seen = 0
        while seen < n:
            for tp, records in (await consumer.getmany(timeout_ms=500,
                                                       max_records=5000)).items():
                feed = tp.topic.rsplit(".", 1)[1]
                for r in records:
                    decode_event(feed, r.value, ctx)
                seen += len(records)
        await consumer.stop()
        return seen

    headers = [("cityops-origin", b"1:23"), ("cityops-enrich", b'{"zone_area_m2":1}')]
    value = b"x" * 250

    async def produce(batched: bool) -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                    linger_ms=5, max_batch_size=1 << 20)
        await producer.start()
        for lo in range(0, n, 2000):
            futures = []
            if batched:  # the worker's own batching
                futures = await publish_many(producer, [
                    (clean, b"%d" % (i % 40), value, headers)
                    for i in range(lo, min(n, lo + 2000))])
            else:
                for i in range(lo, min(n, lo + 2000)):
                    futures.append(await producer.send(clean, value, key=b"%d" % (i % 40),
                                                       headers=headers))
            await asyncio.gather(*futures)
        await producer.stop()
        return n

    _hop("kafka-python consume", n, kafka_python, "the sink's client, the raw topics")
    _hop("aiokafka consume + contract", n, lambda: asyncio.run(aiokafka_decode()),
         "the worker's client; `core.contract.decode_event` of each record")
    _hop("aiokafka send, one record at a time", n, lambda: asyncio.run(produce(False)),
         "acks=all, linger 5 ms, 250-byte values with the clean records' two headers")
    _hop("aiokafka send_batch, a batch per partition", n, lambda: asyncio.run(produce(True)),
         "the same records through `streams.app.publish_many`")


def ceiling(prefix: str, n: int) -> float:
    plain = asyncio.run(_consume(prefix, n, parse=False))
    parsed = asyncio.run(_consume(prefix, n, parse=True))
    report("ceiling", f"{plain:,.0f} events/s", f"plain aiokafka, {n:,} pre-loaded events")
    report("ceiling + orjson", f"{parsed:,.0f} events/s", "aiokafka + orjson.loads each value")
    return parsed


def start_workers(prefix: str, work: Path, workers: int, partitions: int,
                  profile_s: float = 0.0, split: bool = False,
                  favour_aggregation: int = 0) -> list[Proc]:
    """``workers`` workers running every step, or (``split``) one validation worker and one
    aggregation worker (``favour_aggregation``: its session's autogroup nice, ``favour``)."""
    if split:
        procs: list[Proc] = []
        try:
            for k, stage in enumerate(("validation", "aggregation")):
                procs.append(Proc(
                    "worker", prefix, work, k, partitions, profile_s if k == 0 else 0.0,
                    stages=stage,
                    autogroup_nice=favour_aggregation if stage == "aggregation" else 0))
        except SystemExit:  # the aggregation worker could not be favoured: stop the other
            for proc in procs:
                proc.stop()
            raise
        return procs
    return [Proc("worker", prefix, work, k, partitions, profile_s if k == 0 else 0.0)
            for k in range(workers)]


def drain(n: int, workers: int, partitions: int, ceiling_rate: float | None,
          profile_s: float = 0.0, label: str = "drain", timeout_s: float = 3600.0,
          split: bool = False, favour_aggregation: int = 0, keep_all: bool = False) -> float:
    """One drain of ``n`` pre-loaded events; its rate (0.0: not finished). ``keep_all``
    (``--keep``) keeps its topics (state logs included) and its directory (every part's
    log, the warehouse) for a look afterwards; an unfinished drain keeps its directory."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    setup_topics(prefix, partitions)
    tag = f"d{uuid.uuid4().hex[:6]}"
    preload(prefix, n, tag)
    sink = Proc("sink", prefix, work, 0, partitions)
    procs = [sink]
    ws: list[Proc] = []
    finished = False
    keep = keep_all  # an unfinished run keeps its logs
    progress = DrainProgress(prefix, split)
    try:
        sink.wait_ready()
        started = time.monotonic()
        ws = start_workers(prefix, work, workers, partitions, profile_s, split,
                           favour_aggregation)
        procs += ws
        for w in ws:
            w.wait_ready()
        ready = time.monotonic() - started
        cpu = CpuMeter({"validation": ws[:1], "aggregation": ws[1:], "sink": [sink]}
                       if split else
                       {"workers" if workers > 1 else "worker": ws, "sink": [sink]})
        ws[0].start_profile()
        first_row: float | None = None
        last_report = last_sample = time.monotonic()
        behind, have = -1, 0
        while True:
            committed, ends = progress.sink()
            now = time.monotonic()
            if now - last_sample >= CPU_SPAN_S:
                cpu.sample()
                last_sample = now
            if committed and first_row is None:
                first_row = now
            if ends and committed >= ends:
                # the sink has stored all the clean records so far; done when every stage
                # is: the workers' groups have committed all of raw.* and clean.*
                # (aggregation included), and the warehouse holds every event's row
                behind = progress.workers_behind()
                if behind == 0:
                    have = stored(sink, tag)
                    if have >= n:
                        break
            if now - last_report > 30:
                print(f"    … sink committed {committed:,}/{ends:,} clean records, workers' lag "
                      f"{behind:,} after {now - started:.0f} s", flush=True)
                last_report = now
            if now - started > timeout_s:  # reported, so the other parts still run
                for w in ws:  # each worker's tasks and offsets, into its log (SIGUSR1)
                    if w.proc.poll() is None:
                        w.proc.send_signal(signal.SIGUSR1)
                time.sleep(3)
                keep = True
                have = stored(sink, tag)
                report(label, "not finished",
                       f"{have:,}/{n:,} stored (sink committed {committed:,}/{ends:,} clean "
                       f"records), workers' lag {behind:,} after "
                       f"{now - started:.0f} s ({workers} worker(s), {partitions} partitions); "
                       f"logs kept in {work}")
                return 0.0
            time.sleep(0.5)
        total = time.monotonic() - started
        cpu.sample()
        cpu_text = cpu.per_event(n)
        rate = n / total
        steady = n / (time.monotonic() - first_row) if first_row else rate
        ratio = f"; {rate / ceiling_rate:.1%} of the ceiling with orjson" if ceiling_rate else ""
        who = ("1 validation + 1 aggregation worker" if split
               else f"{workers} worker(s)")
        report(label, f"{rate:,.0f} events/s",
               f"{n:,} events, {who} + 1 sink, {partitions} partitions, "
               f"{total:.1f} s from worker launch (ready after {ready:.1f} s); "
               f"{steady:,.0f}/s from the first stored row{ratio}"
               + (f"; {rate / workers:,.0f}/s per worker" if workers > 1 else ""))
        report(f"{label} CPU per event", cpu_text,
               "user + system CPU seconds of each part from the workers' readiness to the "
               "end, over the events (start-up excluded)")
        report(f"{label} CPUs used", cpu.timeline(),
               f"CPUs each part used in each {CPU_SPAN_S:g}-s span of the drain (the last one "
               "shorter)")
        report(f"{label} waits for a CPU", cpu.waited(),
               "seconds each part's threads were runnable but waiting for a CPU, per second "
               "of the drain, summed over its threads (Linux schedstat): 0.35 for a part "
               "whose work is one thread means that thread waited 35 % of the drain")
        report(f"{label} footfall state log", *state_log_sizes(prefix, "state-footfall"))
        report(f"{label} incidents state log", *state_log_sizes(prefix, "state-incidents"))
        if profile_s > 0:
            profile(ws[0])
        finished = True
        return rate
    finally:
        progress.close()
        for p in reversed(procs):
            p.stop()
        if finished:  # read once the workers have stopped: their logs are complete then
            report(f"{label} alignment released", *align_releases(
                [w.log_path for w in (ws[:1] if split else ws)]))
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        if keep_all:
            print(f"  kept: topics {prefix}.* and {work}", flush=True)
        else:
            drop_topics(prefix)


def align_releases(logs: list[Path]) -> tuple[str, str]:
    """How often the workers that read ``raw.*`` let every partition of a topic run because
    its oldest partition took no record for a while (``stream.align_floor_stalled``), by
    topic: while released, one raw partition can run hours of event time ahead of another,
    and the zones whose counters it holds keep their windows open (the footfall state log's
    largest snapshot above grows with that)."""
    topics: Tally[str] = Tally()
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if "stream.align_floor_stalled" in line:
                topics[_field(line, "topic").rpartition(".")[2] or "?"] += 1
    figure = f"{sum(topics.values())} time(s)"
    detail = ", ".join(f"{t} {k}" for t, k in sorted(topics.items())) or "never"
    rule = PartitionAligner(0)
    return figure, (f"{detail}: a topic's oldest raw partition took no record for "
                    f"{rule.stall_s:g} s ({rule.queued_stall_s:g} s while its fetched records "
                    "waited in the client) while the others waited, so all ran until it moved "
                    "(the `stream.align_floor_stalled` warnings of the workers reading raw.*)")


def _field(line: str, name: str) -> str:
    """The value of ``name`` in a log line, console (``name=value``) or JSON ('' if absent)."""
    if line.startswith("{"):
        try:
            return str(json.loads(line).get(name, ""))
        except ValueError:
            return ""
    _head, sep, rest = line.partition(f" {name}=")
    return rest.split(" ", 1)[0] if sep else ""


def alone(n: int, partitions: int, timeout_s: float = 3600.0) -> None:
    """The worker alone (no sink running) until its consumer group has committed every raw
    and clean record, then the sink alone over what the worker published: which of the two
    bounds the drain, and what each costs per event without the other beside it."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-alone-"))
    setup_topics(prefix, partitions)
    tag = f"a{uuid.uuid4().hex[:6]}"
    procs: list[Proc] = []
    progress = DrainProgress(prefix)
    # (process, done when, where it stands, what the figure counts)
    stages: list[tuple[str, Callable[[Proc], bool], Callable[[Proc], str], str]] = [
        ("worker", lambda _p: progress.workers_behind() == 0,
         lambda _p: f"lag {progress.workers_behind():,}",
         f"{n:,} events, {partitions} partitions, no sink running, until every raw and "
         f"clean record was committed"),
        ("sink", lambda p: stored(p, tag) >= n, lambda p: f"{stored(p, tag):,}/{n:,} stored",
         f"the same {n:,} events' raw rows stored (with the derived records the worker "
         f"published) by one `cityops sink` started after the worker finished"),
    ]
    try:
        preload(prefix, n, tag)
        for kind, done, where, what in stages:
            proc = Proc(kind, prefix, work, 0, partitions)
            procs.append(proc)
            proc.wait_ready()
            cpu, started = CpuMeter({kind: [proc]}), time.monotonic()
            while not done(proc):
                if time.monotonic() - started > timeout_s:
                    report(f"{kind} alone", "not finished", f"{what}: {where(proc)}")
                    return
                time.sleep(0.3)
            took = time.monotonic() - started
            report(f"{kind} alone", f"{n / took:,.0f} events/s",
                   f"{what}, {took:.1f} s from ready; CPU per event: {cpu.per_event(n)}")
    finally:
        progress.close()
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
        drop_topics(prefix)


def state_log_sizes(prefix: str, log_name: str) -> tuple[str, str]:
    """How big a state log's records were: full snapshots of a unit (a footfall zone's grow
    with the windows it holds open while its counters' partitions are read at different
    speeds, a partition's incidents with the incidents it holds open) and the steps' changes
    to them (``streams.state_chain``)."""
    from kafka import KafkaConsumer, TopicPartition

    settings = load_settings(topic_prefix=prefix)
    topic = f"{settings.worker_id}-{log_name}-changelog"
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers,
                             enable_auto_commit=False, consumer_timeout_ms=5000,
                             max_partition_fetch_bytes=64 << 20, fetch_max_bytes=64 << 20)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        fulls: list[int] = []
        changes: list[int] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for recs in consumer.poll(timeout_ms=1000).values():
                for r in recs:
                    if r.value:
                        (changes if b'"patch"' in r.value else fulls).append(len(r.value))
    finally:
        consumer.close()
    if not fulls:
        return "no records", topic
    fulls.sort()
    changes.sort()
    total = sum(fulls) + sum(changes)
    change_text = (f"{len(changes):,} changes, median {changes[len(changes) // 2] / 1000:,.1f} "
                   f"KB" if changes else "no changes")
    return (f"{total / 1e6:,.1f} MB in all",
            f"{len(fulls):,} full snapshots, the largest {fulls[-1] / 1000:,.1f} KB, median "
            f"{fulls[len(fulls) // 2] / 1000:,.1f} KB; {change_text} ({topic})")


def clean_times(prefix: str, tag: str) -> dict[str, float]:
    """event_id → the broker timestamp (s) of its clean record: when the worker's producer
    appended it, for the latency's hops."""
    from kafka import KafkaConsumer

    settings = load_settings(topic_prefix=prefix)
    consumer = KafkaConsumer(
        *[settings.topic(topic_names.clean(f)) for f in FEEDS],
        bootstrap_servers=settings.bootstrap_servers, group_id=None,
        auto_offset_reset="earliest", consumer_timeout_ms=3000,
        **kafka_python_security(settings))
    out: dict[str, float] = {}
    try:
        for record in consumer:
            eid = json.loads(record.value).get("event_id", "")
            if eid.startswith(f"{tag}-"):
                out[eid] = record.timestamp / 1000
    finally:
        consumer.close()
    return out


def sink_flushes(sink: Proc) -> str:
    """How many warehouse batches the sink wrote and their mean time (its ``/metrics``)."""
    text = httpx.get(f"{sink.url}/metrics", timeout=10).text
    values = {}
    for line in text.splitlines():
        for name in ("cityops_sink_batch_seconds_sum", "cityops_sink_batch_seconds_count"):
            if line.startswith(name + " "):
                values[name] = float(line.split()[1])
    count = values.get("cityops_sink_batch_seconds_count", 0.0)
    if not count:
        return "the sink wrote no batch"
    mean_ms = 1000 * values["cityops_sink_batch_seconds_sum"] / count
    return f"the sink wrote {count:,.0f} batches, {mean_ms:,.0f} ms each on average"


def latency_hops(sent: dict[str, float], published: dict[str, float],
                 ingested: dict[str, float], seen: dict[str, float]) -> str:
    """p50 / p99 (ms) of each hop of the events seen at every point."""
    ids = [e for e in seen if e in sent and e in published and e in ingested]
    if not ids:
        return "no event with every time"
    hops_ms = {"worker": [1000 * (published[e] - sent[e]) for e in ids],
               "sink read": [1000 * (ingested[e] - published[e]) for e in ids],
               "batch + insert + query": [1000 * (seen[e] - ingested[e]) for e in ids]}

    def pct(values: list[float], p: float) -> float:
        values = sorted(values)
        return values[max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))]

    return ", ".join(f"{hop} {pct(v, 50):,.0f} / {pct(v, 99):,.0f} ms"
                     for hop, v in hops_ms.items())


def latency(rate: float, seconds: float, partitions: int, poll_s: float = 0.2,
            split: bool = False) -> None:
    from kafka import KafkaProducer

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-streams-"))
    setup_topics(prefix, partitions)
    sink = Proc("sink", prefix, work, 0, partitions)
    procs = [sink]
    try:
        sink.wait_ready()
        label = " (validation + aggregation workers)" if split else ""
        ws = start_workers(prefix, work, 1, partitions, split=split)
        procs += ws
        for w in ws:
            w.wait_ready()
        settings = load_settings(topic_prefix=prefix)
        prod = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                             linger_ms=5, compression_type="lz4")
        n = int(rate * seconds)
        tag = f"l{uuid.uuid4().hex[:6]}"
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        sent_wall: dict[str, float] = {}  # for the hops: broker and warehouse times are wall
        seen_wall: dict[str, float] = {}
        ingested: dict[str, float] = {}
        parts = " UNION ALL ".join(
            f"SELECT event_id, toUnixTimestamp64Milli(ingested_at) FROM {t} WHERE event_id "
            f"LIKE '{tag}-%' AND ingested_at >= now64(3) - INTERVAL 20 SECOND"
            for t in FEED_TABLES.values())

        asked = [time.monotonic(), time.time()]  # when the previous poll asked

        def poll() -> None:
            """A row first seen now became visible between the previous ask and this one:
            its time is taken as the middle (each ask is a query of 25-35 ms that competes with
            the sink's inserts, so the bench asks every ``poll_s``, not as often as it can)."""
            before, before_wall = time.monotonic(), time.time()
            rows = sink.sql(parts)
            now = (asked[0] + before) / 2
            wall = (asked[1] + before_wall) / 2
            asked[:] = [before, before_wall]
            for eid, ingested_ms in rows:
                if eid not in seen:
                    seen[eid] = now
                    seen_wall[eid] = wall
                    ingested[eid] = int(ingested_ms) / 1000

        events = list(mix(n, tag, datetime.now(UTC) - timedelta(minutes=5)
                          - timedelta(milliseconds=event_step_ms() * n)))
        start = time.monotonic()
        next_poll = start
        for i, (feed, key, value) in enumerate(events):
            due = start + i / rate
            while True:
                now = time.monotonic()
                if now >= due:
                    break
                if now >= next_poll:
                    poll()
                    next_poll = time.monotonic() + poll_s
                else:
                    time.sleep(min(due - now, 0.002))
            sent[f"{tag}-{i}"] = time.monotonic()
            sent_wall[f"{tag}-{i}"] = time.time()
            prod.send(settings.topic(topic_names.raw(feed)), key=key, value=value)
        prod.flush()
        achieved = n / (time.monotonic() - start)
        deadline = time.monotonic() + 120
        while len(seen) < n and time.monotonic() < deadline:
            poll()
            time.sleep(poll_s)
        prod.close(10)
        lat = sorted((seen[e] - sent[e]) * 1000 for e in seen if e in sent)
        if not lat:
            report(f"latency{label} @{rate:,.0f}/s", "no row became visible")
            return

        def pct(p: float) -> float:
            return lat[max(0, min(len(lat) - 1, round(p / 100 * (len(lat) - 1))))]

        report(f"latency{label} @{rate:,.0f}/s",
               f"p50 {pct(50):,.0f} ms, p95 {pct(95):,.0f} ms, p99 {pct(99):,.0f} ms",
               f"{n:,} events over {seconds:.0f} s (producer reached {achieved:,.0f}/s), "
               f"{len(lat):,} seen within 120 s after the last, polled every "
               f"{poll_s * 1000:.0f} ms (a row first seen at a poll counts as visible midway "
               "since the previous one)")
        published = clean_times(prefix, tag)
        flushes = sink_flushes(sink)
        report(f"latency{label} @{rate:,.0f}/s by hop",
               latency_hops(sent_wall, published, ingested, seen_wall),
               "p50 / p99 of each hop: produced → the worker published the clean record "
               "(its broker timestamp) → the sink decoded it (the row's ingested_at) → the "
               f"row was visible to a query; {flushes}")
    finally:
        for p in reversed(procs):
            p.stop()
        shutil.rmtree(work, ignore_errors=True)
        drop_topics(prefix)


def profile(worker: Proc) -> None:
    """Largest costs by function (self time, and inclusive for our own and Faust's code)."""
    if worker.spy is None:
        return
    try:
        worker.spy.wait(120)
    except subprocess.TimeoutExpired:
        worker.spy.send_signal(signal.SIGINT)
        worker.spy.wait(30)
    try:
        lines = worker.spy_out.read_text().splitlines()
    except OSError:
        report("profile", "py-spy produced no output (ptrace not permitted?)")
        return
    if PROFILE_OUT is not None:  # the raw folded stacks, for a flame graph or a diff
        PROFILE_OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    own: Tally = Tally()
    incl: Tally = Tally()
    parts: Tally = Tally()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        c = int(count)
        frames = stack.split(";")
        if any(k in frames[-1] for k in ("select (", "epoll", "poll (")):
            own["(waiting for I/O: event loop select)"] += c
            parts["waiting (event loop idle)"] += c
            total += c
            continue
        total += c
        own[_short(frames[-1])] += c
        parts[_part(frames)] += c
        for name in {_area(f) for f in frames}:
            incl[name] += c
    if not total:
        report("profile", "no samples")
        return
    top = ", ".join(f"{name} {c / total:.0%}" for name, c in own.most_common(6))
    areas = ", ".join(f"{name} {c / total:.0%}" for name, c in incl.most_common(8))
    report("profile (self time)", top, f"{total:,} samples of the worker during the drain")
    report("profile (inclusive, by package)", areas)
    report("profile (by part)", ", ".join(f"{name} {c / total:.0%}"
                                          for name, c in parts.most_common()))


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    mod = where.split(":")[0].split("site-packages/")[-1].split("/cityops/")[-1]
    return f"{name} [{mod}]"


#: parts of the worker for the profile by part: the first part one of whose markers is in a
#: sample's stack (innermost rules first: a decode inside a step counts as the decode)
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # the aggregation step's decode calls the fast path too: matched first
    ("aggregation: decode clean records", ("decode_clean (", "model_validate_json")),
    ("validation: decode + contract", ("decode_event (", "fast_decode (")),
    ("validation: dedup", ("PartitionDedup", "write_delta", "Delta.")),
    ("aggregation: domain (Aggregator.add)", ("_Keyed.add", "IncidentsByPartition.add")),
    ("producing (records, state, alert inputs)",
     ("publish_many", "publish (", "Outbox.deliver", "StateLog.write", "AlertWiring._send",
      "aiokafka/producer", "sender.py")),
    ("alert engine", ("AlertWiring.step", "alerts/machine")),
    ("state reads", ("read_partitions", "StateLog.read", "StateLog._read")),
    ("validation: rest of the step", ("ValidationStage.",)),
    ("aggregation: rest of the step", ("AggregationStage.",)),
    # not "faust/" or "mode/": every sample of the main thread has their frames at its root
    ("fetching + dispatch (aiokafka, Faust's consumer, streams.dispatch)",
     ("_drain_messages", "_fetch_records", "fetcher.py", "aiokafka/", "faust/transport/")),
)


def _part(frames: list[str]) -> str:
    for name, markers in PARTS:
        if any(m in f for f in frames for m in markers):
            return name
    return "other"


def _area(frame: str) -> str:
    where = frame.partition(" (")[2]
    for key in ("cityops/", "faust/", "mode/", "aiokafka/", "pydantic", "orjson",
                "kafka/", "asyncio/", "chdb", "structlog", "prometheus_client"):
        if key in where:
            return key.strip("/")
    return "other"


def write_markdown(path: Path, argv: list[str], started: datetime) -> None:
    load = os.getloadavg()
    lines = [
        "# Benchmarks", "",
        f"Written by `make bench` (bench/bench_streams.py) on {started:%Y-%m-%d %H:%M} UTC.",
        "",
        f"- machine: {platform.node()}, {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- hot modules: {compiled.STATUS.reason}",
        f"- load average at the end: {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
        "(the machine is shared: figures measured under load from other work)",
        f"- command: `{' '.join(['python bench/bench_streams.py', *argv])}`", "",
        "| part | figure | detail |", "| --- | --- | --- |",
    ]
    lines += [f"| {p} | {f} | {d} |" for p, f, d in RESULTS]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"written to {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000, help="events of the drain")
    ap.add_argument("--scale-events", type=int, default=100_000,
                    help="events per scaling run")
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--rates", default="1000,5000")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--poll-ms", type=float, default=200.0,
                    help="latency: how often the bench asks the warehouse which rows it holds "
                         "(each ask is a query competing with the sink's inserts)")
    ap.add_argument("--scale", default="1,2,3")
    ap.add_argument("--profile-s", type=float, default=30.0)
    ap.add_argument("--timeout-s", type=float, default=3600.0,
                    help="longest a drain or scaling run may take before it is reported "
                    "unfinished")
    ap.add_argument("--only", default="ceiling,hops,drain,alone,latency,scaling",
                    help="comma-separated parts")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    ap.add_argument("--profile-out", type=Path, default=None,
                    help="also keep the drain's raw py-spy stacks (folded) in this file")
    ap.add_argument("--stages", default="all,split",
                    help="drain and latency, comma-separated: all (one worker running every "
                    "step), split (one validation worker beside one aggregation worker)")
    ap.add_argument("--keep", action="store_true",
                    help="drain: keep each drain's topics (state logs included) and its "
                    "directory (every part's log, the warehouse), and print where")
    ap.add_argument("--favour-aggregation", type=int, default=0, choices=range(-20, 20),
                    metavar="NICE",
                    help="split drain: the aggregation worker's autogroup nice (e.g. -10: a "
                    "larger CPU share than the other parts; needs root); 0: equal shares")
    args = ap.parse_args()
    if not set(args.stages.split(",")) <= {"all", "split"}:
        ap.error(f"--stages {args.stages!r}: all, split or all,split")
    # `kill` / `timeout` stop the bench as Ctrl-C does: the parts' `finally` blocks stop the
    # workers and the sink (each in its own session, so no signal reaches them otherwise)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    global PROFILE_OUT
    PROFILE_OUT = args.profile_out
    layouts = [x == "split" for x in args.stages.split(",")]
    parts = set(args.only.split(","))
    started = datetime.now(UTC)
    print(f"bench_streams: broker {load_settings().bootstrap_servers}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}, hot modules: {compiled.STATUS.reason}", flush=True)
    ceiling_rate = None
    if "ceiling" in parts or "hops" in parts:
        prefix = f"bench{uuid.uuid4().hex[:8]}"
        setup_topics(prefix, args.partitions)
        try:
            preload(prefix, args.events, "c")
            if "ceiling" in parts:
                ceiling_rate = ceiling(prefix, args.events)
            if "hops" in parts:
                hops(prefix, min(args.scale_events, args.events))
        finally:
            drop_topics(prefix)
        write_markdown(Path(args.out), sys.argv[1:], started)  # each part kept as it ends
    if "drain" in parts:
        for split in layouts:
            drain(args.events, 1, args.partitions, ceiling_rate,
                  profile_s=0.0 if split else args.profile_s, timeout_s=args.timeout_s,
                  split=split, favour_aggregation=args.favour_aggregation if split else 0,
                  keep_all=args.keep,
                  label=("drain (validation + aggregation workers"
                         + (f", aggregation at autogroup nice {args.favour_aggregation})"
                            if args.favour_aggregation else ")")) if split else "drain")
            write_markdown(Path(args.out), sys.argv[1:], started)
    if "alone" in parts:
        alone(min(args.scale_events, args.events), args.partitions, timeout_s=args.timeout_s)
        write_markdown(Path(args.out), sys.argv[1:], started)
    if "latency" in parts:
        for split in layouts:
            for rate in (float(r) for r in args.rates.split(",") if r):
                latency(rate, args.seconds, args.partitions, args.poll_ms / 1000,
                        split=split)
        write_markdown(Path(args.out), sys.argv[1:], started)
    if "scaling" in parts:
        n = min(args.scale_events, args.events)
        base = None
        for k in (int(x) for x in args.scale.split(",") if x):
            rate = drain(n, k, args.partitions, ceiling_rate, label=f"scaling {k} worker(s)",
                         timeout_s=args.timeout_s)
            base = base or rate
            if rate and base:
                RESULTS[-1] = (*RESULTS[-1][:2],
                               RESULTS[-1][2] + f"; {rate / base:.2f}× of 1 worker")
    write_markdown(Path(args.out), sys.argv[1:], started)


if __name__ == "__main__":
    main()
