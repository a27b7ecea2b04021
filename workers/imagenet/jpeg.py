"""JPEG shards: prepared ImageNet at ~1/7 of the raw bytes, decoded where the training runs.

A raw 256x256x3 image is 196,608 bytes; the same image as a quality-90 JPEG is ~25-35 KB, so a half
of ImageNet fits in a worker's host RAM (page cache) and a node reads ~2 GB/s instead of ~12-24 GB/s
(docs/performance.md has the arithmetic). A shard is two files: `<stem>.jpgs` (the images' JPEG
bytes, back to back) and `<stem>.offsets.npy` (int64, count + 1 offsets into it).

Decoding: on a CUDA device with torchvision importable, batched nvJPEG (`torchvision.io.decode_jpeg`
on the GPU); elsewhere Pillow (libjpeg-turbo) in a thread pool (the decoder releases the GIL).

numpy and Pillow at import; torch and torchvision only inside the CUDA decoder.
"""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from workers.imagenet import IMAGE_SIZE, JPEG_QUALITY

QUALITY = JPEG_QUALITY  # Pillow's default 4:2:0 chroma subsampling: what nvJPEG and every decoder handle fastest
MAX_IMAGE_BYTES = 4 << 20  # a 256x256 JPEG above this is not one of ours (untrusted offsets)
DECODE_THREADS = 8

_POOL: ThreadPoolExecutor | None = None


def encode(image: np.ndarray, quality: int = QUALITY) -> bytes:
    """One 256x256x3 uint8 image as baseline JPEG bytes (quality `quality`)."""
    from PIL import Image  # noqa: PLC0415 (Pillow only where images are encoded or decoded)
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def pack(blobs: Sequence[bytes]) -> tuple[bytes, np.ndarray]:
    """Images' JPEG bytes -> (the shard's .jpgs bytes, int64 offsets of length len(blobs) + 1)."""
    offsets = np.zeros(len(blobs) + 1, np.int64)
    offsets[1:] = np.cumsum([len(b) for b in blobs], dtype=np.int64)
    return b"".join(blobs), offsets


def check_offsets(offsets: np.ndarray, count: int, size: int, where: str) -> np.ndarray:
    """`offsets` as int64 if they cut a `size`-byte .jpgs file into `count` images, else ValueError
    naming `where` (the file is as untrusted as the manifest that vouched for it)."""
    o = np.asarray(offsets)
    if o.ndim != 1 or o.dtype.kind not in "iu" or o.shape[0] != count + 1:
        raise ValueError(f"{where}: expected {count + 1} integer offsets, found {o.dtype} array of shape {o.shape}")
    o = o.astype(np.int64)
    steps = np.diff(o)
    if o[0] != 0 or o[-1] != size or (steps.size and (steps.min() < 1 or steps.max() > MAX_IMAGE_BYTES)):
        raise ValueError(f"{where}: offsets do not cut the {size}-byte image file into {count} images "
                         f"of 1 byte to {MAX_IMAGE_BYTES} bytes")
    return o


def _decode_one(blob, out: np.ndarray) -> None:
    from PIL import Image  # noqa: PLC0415 (see encode)
    with Image.open(io.BytesIO(blob)) as im:
        if im.format != "JPEG" or im.size != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"not a {IMAGE_SIZE}x{IMAGE_SIZE} JPEG ({im.format} {im.size[0]}x{im.size[1]})")
        out[...] = np.asarray(im.convert("RGB"))


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="jpeg-decode")
    return _POOL


def decode_cpu(blobs: Sequence, threads: bool = True) -> np.ndarray:
    """JPEG bytes -> B x 256 x 256 x 3 uint8 (Pillow; in DECODE_THREADS threads when `threads`)."""
    out = np.empty((len(blobs), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
    if threads and len(blobs) > 1:
        list(_pool().map(lambda i: _decode_one(blobs[i], out[i]), range(len(blobs))))
    else:
        for i, blob in enumerate(blobs):
            _decode_one(blob, out[i])
    return out


def cuda_decoder_available() -> bool:
    """Whether torchvision's nvJPEG decoder can be used (torchvision importable, CUDA present)."""
    try:
        import torch  # noqa: PLC0415
        import torchvision.io  # noqa: F401, PLC0415 (optional: only the CUDA images carry it)
    except Exception:  # noqa: BLE001 (a CPU torch makes torchvision's import fail with RuntimeError)
        return False
    return bool(torch.cuda.is_available())


def decode_cuda(blobs: Sequence, device: str):
    """JPEG bytes -> B x 256 x 256 x 3 uint8 torch tensor on `device` (batched nvJPEG; the result is
    a channels-last view of torchvision's B x 3 x H x W output)."""
    import torch  # noqa: PLC0415
    from torchvision.io import ImageReadMode, decode_jpeg  # noqa: PLC0415

    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    images = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return torch.stack(images).permute(0, 2, 3, 1)
