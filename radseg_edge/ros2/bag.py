"""rosbag2 in, rosbag2 out, without ROS: segment the images of one topic of a recorded bag.

    summary = process_bag("run1", "run1_seg", "/camera/image_raw", FrameProcessor(segmenter, msgs))

The output bag (MCAP or sqlite3) holds the kept input topics unchanged, and for every segmented image
``<prefix>/labels`` (mono8 / mono16), ``<prefix>/overlay`` (rgb8), optionally ``<prefix>/confidence``
(32FC1), all with the input message's header and bag timestamp, and ``<prefix>/label_info``
(vision_msgs/LabelInfo, offered as transient local) once, before the first result. A bag that cannot be
read to its end (truncated, corrupt) stops the run: everything segmented until then is written and the
output bag is closed properly, and the error says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radseg_edge.errors import InputError, RadsegError, require
from radseg_edge.ros2.params import QosSpec, label_info_qos, qos_profile, rosbags_qos
from radseg_edge.ros2.processor import FrameProcessor
from radseg_edge.ros2.types import COMPRESSED_IMAGE, DISTROS, IMAGE, LABEL_INFO, typestore

STORAGES = ("mcap", "sqlite3")


@dataclass
class BagRun:
    """What :func:`process_bag` did: counts, per-frame stage timings (ms) and the error that stopped it."""

    output: Path
    storage: str
    distro: str
    images: int = 0  # image messages of the topic read
    processed: int = 0
    skipped: int = 0  # left out by ``every``
    copied: int = 0  # messages of kept topics written unchanged
    records: list[dict[str, float]] = field(default_factory=list)
    wall_s: float = 0.0
    error: str | None = None
    topics: dict[str, str] = field(default_factory=dict)  # output topic -> message type


def open_reader(path: str | Path):
    """Open a rosbag2 folder or .mcap / .db3 file; a clear :class:`InputError` if it is not a readable bag."""
    require("rosbags", "ros", "reading rosbag2 files")
    from rosbags.rosbag2 import Reader

    p = Path(path)
    if not p.exists():
        raise InputError(f"bag not found: {p}")
    try:
        reader = Reader(p)
        reader.open()
    except Exception as exc:  # rosbags raises ReaderError, YAML, sqlite3 and struct errors for broken bags
        mcap = p.suffix == ".mcap" or (p.is_dir() and any(q.suffix == ".mcap" for q in p.iterdir()))
        hint = ("; an MCAP cut short (no footer) can be repaired with `mcap recover IN.mcap -o OUT.mcap`"
                if mcap and "magic" in str(exc) else "")
        raise InputError(f"{p}: not a readable rosbag2 ({type(exc).__name__}: {exc}){hint}; "
                         "give a bag folder (metadata.yaml + .mcap/.db3), an .mcap or a .db3 file") from exc
    return reader


def _storage_of(path: Path) -> str:
    files = list(path.iterdir()) if path.is_dir() else [path]
    return "sqlite3" if any(f.suffix == ".db3" for f in files) else "mcap"


def _image_connections(reader, topic: str, path) -> list:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        images = sorted({c.topic for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED_IMAGE)})
        raise InputError(f"topic {topic} is not in {path}; image topics there: {', '.join(images) or 'none'}")
    bad = [c.msgtype for c in conns if c.msgtype not in (IMAGE, COMPRESSED_IMAGE)]
    if bad:
        raise InputError(f"topic {topic} carries {bad[0]}; expected sensor_msgs/msg/Image or CompressedImage")
    return conns


def _copy_args(conn, store) -> dict[str, Any]:
    msgdef = getattr(getattr(conn, "msgdef", None), "data", "") or ""
    if msgdef and conn.digest:
        return {"msgdef": msgdef, "rihs01": conn.digest}
    if conn.msgtype in store.types:
        return {"typestore": store}
    raise InputError(f"cannot copy topic {conn.topic}: the bag has no definition of {conn.msgtype} and it is not a "
                     "ROS 2 humble/jazzy type; leave it out of --keep")


def process_bag(
    input_path: str | Path,
    output_path: str | Path,
    topic: str,
    processor: FrameProcessor,
    every: int = 1,
    prefix: str = "/radseg",
    keep: Sequence[str] | None = None,
    storage: str | None = None,
    distro: str | None = None,
    threshold: float = 0.0,
    output_qos: QosSpec | None = None,
    progress: Callable[[int], None] | None = None,
) -> BagRun:
    """Segment every ``every``-th image message of ``topic`` and write the output bag.

    Args:
        topic: an image topic (sensor_msgs/Image or CompressedImage) of the input bag.
        keep: input topics copied unchanged (default: ``topic``; ``["all"]`` = every topic; ``[]`` = none).
        storage: "mcap" or "sqlite3" (default: the input's).
        distro: "humble" or "jazzy" type definitions (default: the bag's ROS distribution, else humble).
        threshold: the prediction threshold written in LabelInfo.
        progress: called with the number of image messages read so far (a progress bar's update).
    Returns:
        :class:`BagRun`. A read error in the middle of the bag is returned in ``error`` (the output bag
        holds everything before it); errors before the first message are raised.
    """
    require("rosbags", "ros", "writing rosbag2 files")
    from rosbags.rosbag2 import StoragePlugin, Writer

    if every < 1:
        raise InputError(f"--every {every}: expected an integer >= 1")
    out = Path(output_path)
    if out.exists():
        raise InputError(f"output {out} already exists: remove it or choose another -o")
    prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
    reader = open_reader(input_path)
    try:
        conns = _image_connections(reader, topic, input_path)
        distro = distro or _distro_of(reader)
        store = typestore(distro)
        storage = storage or _storage_of(Path(input_path))
        if storage not in STORAGES:
            raise InputError(f"--storage {storage}: expected one of {', '.join(STORAGES)}")
        keep = [topic] if keep is None else list(keep)
        kept = [c for c in reader.connections if "all" in keep or c.topic in keep]
        unknown = set(keep) - {"all"} - {c.topic for c in reader.connections}
        if unknown:
            raise InputError(f"--keep {', '.join(sorted(unknown))}: not in {input_path}")
        run = BagRun(out, storage, distro)
        qos = [rosbags_qos(output_qos or qos_profile("DEFAULT"))]
        out_topics = {"labels": IMAGE}
        if processor.publish_overlay:
            out_topics["overlay"] = IMAGE
        if processor.publish_confidence:
            out_topics["confidence"] = IMAGE
        clash = {f"{prefix}/{k}" for k in (*out_topics, "label_info")} & {c.topic for c in kept}
        if clash:
            raise InputError(f"output topic {sorted(clash)[0]} is also an input topic kept: choose another --prefix")
        writer = Writer(out, version=9 if distro == "jazzy" else 8,
                        storage_plugin=StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3)
        writer.open()
    except BaseException:
        reader.close()
        raise
    t_start = time.perf_counter()
    try:
        copy = {}
        for c in kept:
            copy[c.id] = writer.add_connection(c.topic, c.msgtype, **_copy_args(c, store),
                                               offered_qos_profiles=list(getattr(c.ext, "offered_qos_profiles", [])))
            run.topics[c.topic] = c.msgtype
        outs = {k: writer.add_connection(f"{prefix}/{k}", t, typestore=store, offered_qos_profiles=qos)
                for k, t in out_topics.items()}
        info_conn = writer.add_connection(f"{prefix}/label_info", LABEL_INFO, typestore=store,
                                          offered_qos_profiles=[rosbags_qos(label_info_qos())])
        run.topics.update({f"{prefix}/{k}": t for k, t in out_topics.items()})
        run.topics[f"{prefix}/label_info"] = LABEL_INFO
        image_ids = {c.id for c in conns}
        wanted = {c.id: c for c in (*conns, *kept)}.values()
        info_written = False
        try:
            for conn, stamp, data in reader.messages(connections=list(wanted)):
                if conn.id in copy:
                    writer.write(copy[conn.id], stamp, data)
                    run.copied += 1
                if conn.id not in image_ids:
                    continue
                run.images += 1
                if (run.images - 1) % every:
                    run.skipped += 1
                    if progress:
                        progress(run.images)
                    continue
                t0 = time.perf_counter()
                msg = store.deserialize_cdr(data, conn.msgtype)
                t1 = time.perf_counter()
                res = processor(msg)
                t2 = time.perf_counter()
                blobs = [(outs["labels"], store.serialize_cdr(res.labels, IMAGE))]
                if res.overlay is not None:
                    blobs.append((outs["overlay"], store.serialize_cdr(res.overlay, IMAGE)))
                if res.confidence is not None:
                    blobs.append((outs["confidence"], store.serialize_cdr(res.confidence, IMAGE)))
                if not info_written:
                    info = processor.label_info(msg.header, threshold)
                    blobs.insert(0, (info_conn, store.serialize_cdr(info, LABEL_INFO)))
                    info_written = True
                t3 = time.perf_counter()
                for c, blob in blobs:
                    writer.write(c, stamp, blob)
                t4 = time.perf_counter()
                rec = {"read": (t1 - t0) * 1e3, **{k: v for k, v in res.timings.items() if k != "total"},
                       "serialize": (t3 - t2) * 1e3, "write": (t4 - t3) * 1e3}
                rec["total"] = (t4 - t0) * 1e3
                run.records.append(rec)
                run.processed += 1
                if progress:
                    progress(run.images)
        except RadsegError as exc:  # a message the model cannot take (e.g. an unsupported encoding)
            raise InputError(f"{topic}, image message {run.images}: {exc}; the {run.processed} frame(s) segmented "
                             f"before it are in {out}") from exc
        except Exception as exc:  # truncated / corrupt storage: keep what was written
            run.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.wall_s = time.perf_counter() - t_start
        try:
            writer.close()
        finally:
            reader.close()
    return run


def check_topic(input_path: str | Path, topic: str) -> tuple[int, str]:
    """Open the bag and check that ``topic`` is an image topic of it: (its message count, 0 = unknown;
    the distribution whose types to use: the bag's when humble or jazzy, else humble)."""
    reader = open_reader(input_path)
    try:
        count = sum(int(c.msgcount or 0) for c in _image_connections(reader, topic, input_path))
        return count, _distro_of(reader)
    finally:
        reader.close()


def _distro_of(reader) -> str:
    distro = str(getattr(reader, "ros_distro", "") or "")
    return distro if distro in DISTROS else "humble"


def _stats(values: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(values, 50)), "p90_ms": float(np.percentile(values, 90)),
            "p99_ms": float(np.percentile(values, 99)), "mean_ms": float(values.mean()), "max_ms": float(values.max())}


def run_profile(run: BagRun) -> dict[str, Any]:
    """A profile in the ``stream --profile`` layout (frames, fps, end_to_end, stages with share), so that
    :func:`radseg_edge.runtime.report.format_summary` and ``write_profile`` take it."""
    stop = "end of bag" if run.error is None else f"read error: {run.error}"
    if run.skipped:
        stop += f"; {run.skipped} image(s) skipped by --every"
    out: dict[str, Any] = {
        "frames": {"captured": run.processed, "processed": run.processed, "dropped": 0, "unprocessed_at_stop": 0},
        "drop_policy": "none", "stop_reason": stop, "wall_s": run.wall_s,
        "bag": {"output": str(run.output), "storage": run.storage, "distro": run.distro, "images_read": run.images,
                "skipped": run.skipped, "copied": run.copied, "topics": run.topics, "error": run.error},
    }
    if run.records:
        names = [k for k in dict.fromkeys(k for r in run.records for k in r) if k != "total"]
        e2e = np.array([r["total"] for r in run.records])
        table = {k: np.array([r.get(k, 0.0) for r in run.records]) for k in names}
        out.update({
            "fps": run.processed / run.wall_s if run.wall_s > 0 else None,
            "end_to_end": _stats(e2e),
            "stages": {k: {**_stats(v), "share": float(v.mean() / e2e.mean()) if e2e.mean() > 0 else 0.0}
                       for k, v in table.items()},
        })
    return out
