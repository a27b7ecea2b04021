"""Networks a user's function builds: 'package.module:function' -> (module, cut points), checked.

The function is called as fn(num_outputs=..., in_channels=...) and returns (torch module, cut point
names in forward order, the head last). The checks make surgery well defined on what it returns:
every cut point is a submodule with parameters, none overlaps another, they come in definition
order, every parameter and buffer lies under one (so surgery copies or re-initialises it), and every
parameter belongs to a module with reset_parameters() (how surgery re-initialises).

Probe (the driver, which never imports torch, validates a spec's factory through it):
    python -P -m workers.factory probe PATH --num-outputs N --in-channels C [--image-size S] [--refuse-under DIR]
prints {"cut_points": [...], "parameters": <count>} as JSON, or one line on stderr and exits 2.
"""
from __future__ import annotations

import argparse
import difflib
import hashlib
import importlib
import json
import sys
from typing import Any, Callable, Sequence

import torch
from torch import nn

from sweepcore.cut_points import cut_point_of
from workers.code_origin import check_module_origin

MAX_NAMES_SHOWN = 8  # submodule names an error lists


def _oneline(text: object) -> str:
    return " ".join(str(text).split())


def load_factory(path: str, refused_roots: Sequence[str] = ()) -> Callable[..., Any]:
    """The function that 'package.module:function' names; one-line ValueError naming `path` when it is
    malformed, its module is not installed code or on PYTHONPATH or lies under `refused_roots` (the
    store: workers.code_origin), cannot be imported, or the attribute is missing or not callable."""
    module_name, colon, attr = path.partition(":")
    if not colon or not module_name or not attr:
        raise ValueError(f"factory {path!r}: expected 'package.module:function'")
    try:
        check_module_origin(module_name, refused_roots)  # before any of its code runs
    except ValueError as exc:
        raise ValueError(f"factory {path!r}: {exc}") from None
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 (user code: any error while importing it means unusable)
        raise ValueError(f"factory {path!r}: cannot import module {module_name!r}: "
                         f"{type(exc).__name__}: {_oneline(exc)}") from None
    if not hasattr(module, attr):
        raise ValueError(f"factory {path!r}: module {module_name!r} has no attribute {attr!r}")
    fn = getattr(module, attr)
    if not callable(fn):
        raise ValueError(f"factory {path!r}: {attr!r} is {type(fn).__name__}, not a function")
    return fn


def module_sha256(path: str) -> str:
    """The sha256 of the file that the factory's module was loaded from (load it first): what a factory
    model's settings fingerprint. It covers that one file, not what the module imports (docs/models.md)."""
    module_name = path.partition(":")[0]
    source = getattr(sys.modules.get(module_name), "__file__", None)
    if not source:
        raise ValueError(f"factory {path!r}: module {module_name!r} has no file to fingerprint (a namespace or "
                         "built-in module): put the factory in a module file")
    with open(source, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def build_factory(path: str, num_outputs: int, in_channels: int,
                  refused_roots: Sequence[str] = ()) -> tuple[nn.Module, tuple[str, ...]]:
    """Call the factory at `path` (loaded as load_factory does) and check what it returns: (module, cut
    points as a tuple). Whatever it draws comes from torch's global RNG (networks.build_network seeds that)."""
    fn = load_factory(path, refused_roots)
    try:
        built = fn(num_outputs=num_outputs, in_channels=in_channels)
    except Exception as exc:  # noqa: BLE001 (user code: report its error on one line, whatever it is)
        raise ValueError(f"factory {path!r} failed: {type(exc).__name__}: {_oneline(exc)}") from None
    if not (isinstance(built, tuple) and len(built) == 2 and isinstance(built[0], nn.Module)):
        raise ValueError(f"factory {path!r} returned {type(built).__name__}: expected (torch module, cut points)")
    module, raw_points = built
    if isinstance(raw_points, str) or not isinstance(raw_points, Sequence):
        raise ValueError(f"factory {path!r}: cut points must be a list of submodule names, "
                         f"got {type(raw_points).__name__}")
    cut_points = tuple(raw_points)
    check_cut_points(module, cut_points, f"factory {path!r}")
    return module, cut_points


def _some_names(module: nn.Module, near: str) -> str:
    """A few real submodule names for an error: the closest to `near`, then the top-level ones."""
    names = [n for n, _ in module.named_modules() if n]
    close = difflib.get_close_matches(near, names, n=3, cutoff=0.8)  # a typo's intended name, not lookalikes
    shown = list(dict.fromkeys(close + [n for n, _ in module.named_children()]))
    return ", ".join(shown[:MAX_NAMES_SHOWN]) or "none"


def check_cut_points(module: nn.Module, cut_points: Sequence[str], where: str) -> None:
    """One-line ValueError, starting with `where`, for cut points surgery cannot work with (see the
    module doc); it names the offending cut point, parameter or buffer."""
    points = list(cut_points)
    if len(points) < 2:
        raise ValueError(f"{where}: needs at least 2 cut points (layers to cut after, then the head), got {points}")
    submodules = dict(module.named_modules())
    order = {name: i for i, name in enumerate(submodules)}
    for i, point in enumerate(points):
        if not isinstance(point, str) or point not in submodules or point == "":
            raise ValueError(f"{where}: cut point {point!r} is not a submodule of the network "
                             f"(submodules include: {_some_names(module, str(point))})")
        if point in points[:i]:
            raise ValueError(f"{where}: cut point {point!r} is listed twice")
        for earlier in points[:i]:
            if cut_point_of(point, [earlier]) or cut_point_of(earlier, [point]):
                raise ValueError(f"{where}: cut points {earlier!r} and {point!r} overlap (one lies inside the other)")
        if i and order[point] < order[points[i - 1]]:
            raise ValueError(f"{where}: cut point {point!r} is defined before {points[i - 1]!r}: "
                             "list cut points in forward order")
    owner: dict[int, str] = {}
    for point in points:
        params = list(submodules[point].parameters())
        if not params:
            raise ValueError(f"{where}: cut point {point!r} has no parameters (nothing to copy or freeze)")
        for p in params:
            if owner.setdefault(id(p), point) != point:
                raise ValueError(f"{where}: cut points {owner[id(p)]!r} and {point!r} share a parameter (tied "
                                 "weights cannot be copied or frozen for one of them alone)")
    for name in module.state_dict():
        if cut_point_of(name, points) is None:
            raise ValueError(f"{where}: {name!r} lies under no cut point: every parameter and buffer must "
                             "belong to one, so surgery copies or re-initialises it")
    for name, sub in module.named_modules():
        if any(True for _ in sub.parameters(recurse=False)) and not callable(getattr(sub, "reset_parameters", None)):
            raise ValueError(f"{where}: {name!r} ({type(sub).__name__}) holds parameters but has no "
                             "reset_parameters(), which surgery re-initialises layers with")


def check_forward(module: nn.Module, cut_points: Sequence[str], in_channels: int, image_size: int,
                  num_outputs: int, where: str) -> None:
    """Run one batch of zeros through `module` (eval mode) and refuse, on one line, cut points that the
    forward never calls or calls out of order, and an output that is not (batch, num_outputs)."""
    called: list[str] = []
    hooks = [module.get_submodule(p).register_forward_hook(
        lambda _m, _i, _o, point=p: called.append(point)) for p in cut_points]
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(torch.zeros(2, in_channels, image_size, image_size))
    except Exception as exc:  # noqa: BLE001 (user code: report its error on one line, whatever it is)
        raise ValueError(f"{where}: forward on 2x{in_channels}x{image_size}x{image_size} failed: "
                         f"{type(exc).__name__}: {_oneline(exc)}") from None
    finally:
        for hook in hooks:
            hook.remove()
        module.train(was_training)
    first_calls = list(dict.fromkeys(called))
    if first_calls != list(cut_points):
        raise ValueError(f"{where}: the forward runs cut points as {first_calls}, not as declared {list(cut_points)}")
    shape = tuple(getattr(out, "shape", ()))
    if shape != (2, num_outputs):
        raise ValueError(f"{where}: the output has shape {shape} for a batch of 2, expected (2, {num_outputs})")


def probe(path: str, num_outputs: int, in_channels: int, image_size: int | None = None,
          refused_roots: Sequence[str] = ()) -> dict:
    """What the driver needs to know about a factory: its cut points and parameter count."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the probe's weights are thrown away: any fixed seed will do
        module, cut_points = build_factory(path, num_outputs, in_channels, refused_roots)
    if image_size is not None:
        check_forward(module, cut_points, in_channels, image_size, num_outputs, f"factory {path!r}")
    return {"cut_points": list(cut_points), "parameters": sum(p.numel() for p in module.parameters()),
            "source_sha256": module_sha256(path)}


def main(argv: list[str] | None = None) -> int:
    """CLI: `probe PATH --num-outputs N --in-channels C [--image-size S]` (see the module doc)."""
    parser = argparse.ArgumentParser(prog="python -m workers.factory", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("probe", help="build the factory's network, check it, print its cut points as JSON")
    p.add_argument("path", help="'package.module:function'")
    p.add_argument("--num-outputs", type=int, required=True, help="width of the head")
    p.add_argument("--in-channels", type=int, required=True, help="channels of the input images")
    p.add_argument("--image-size", type=int, default=None, help="also run a forward on SxS inputs")
    p.add_argument("--refuse-under", action="append", default=[], metavar="DIR",
                   help="refuse a module found under DIR (the sweep's store folder; repeatable)")
    args = parser.parse_args(argv)
    try:
        found = probe(args.path, args.num_outputs, args.in_channels, args.image_size, args.refuse_under)
    except ValueError as exc:
        print(_oneline(exc), file=sys.stderr)
        return 2
    print(json.dumps(found))
    return 0


if __name__ == "__main__":
    sys.exit(main())
