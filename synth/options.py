"""Command-line values: ``--size``, ``--count``, ``--phenotype``, ``--seed`` and whole numbers.

The ``parse_*`` functions are argparse ``type=`` converters: they raise
``argparse.ArgumentTypeError``, so a bad value gets argparse's usage message and exit status 2.
:class:`SynthesisOptions` is what every subcommand passes on to the synthesiser.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

from .heuristic.phase import PHASES

SIZE_NAMES = ("tiny", "small", "medium", "large", "mix")
DEFAULT_COUNT = (1, 3)
# ``synthesize``'s engines: auto (Dask when installed, else the process pool), dask, processes.
Engine = Literal["auto", "dask", "processes"]
ENGINES: tuple[Engine, ...] = get_args(Engine)
DEFAULT_SCHEDULER_TIMEOUT_S = 10.0  # how long ``synthesize --scheduler`` waits for an answer


@dataclass(frozen=True)
class SynthesisOptions:
    """What to insert: ``size`` and ``count`` as the synthesiser takes them."""

    size: str | tuple[float, float] = "mix"
    count: int | tuple[int, int] = DEFAULT_COUNT
    phenotype: str = "mix"
    phase: str = "auto"  # the host's contrast phase (synth.heuristic.phase)
    method: str = "heuristic"
    model: str | None = None  # diffusion model folder
    sampling_steps: int | None = None
    bank: str | None = None  # copy-paste lesion bank folder
    quality_gate: str | None = None  # quality gate JSON file (tumorsynth realism --save-gate)

    def as_json(self) -> dict[str, Any]:
        """The options as recorded in lesions.json (the gate only when one is used, so that records
        without one read as before)."""
        gate = {} if self.quality_gate is None else {"quality_gate": self.quality_gate}
        return {
            "size": list(self.size) if isinstance(self.size, tuple) else self.size,
            "count": list(self.count) if isinstance(self.count, tuple) else self.count,
            "phenotype": self.phenotype,
            "phase": self.phase,
            **self.method_options(),
            **gate,
        }

    def method_options(self) -> dict[str, Any]:
        """Keyword arguments of ``synthesize`` for the method (none for the heuristic)."""
        if self.method == "heuristic":
            return {}
        if self.method == "copy-paste":
            return {"method": self.method, "bank": self.bank}
        return {"method": self.method, "model": self.model, "sampling_steps": self.sampling_steps}

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> SynthesisOptions:
        return cls(size=args.size, count=args.count, phenotype=args.phenotype,
                   phase=getattr(args, "phase", "auto"), method=getattr(args, "method", "heuristic"),
                   model=getattr(args, "model", None), sampling_steps=getattr(args, "sampling_steps", None),
                   bank=None if getattr(args, "bank", None) is None else str(args.bank),
                   quality_gate=None if getattr(args, "quality_gate", None) is None else str(args.quality_gate))


def parse_size(text: str) -> str | tuple[float, float]:
    """``--size``: a class name, ``mix``, or ``MIN,MAX`` equivalent diameters in mm."""
    text = text.strip().lower()
    if "," not in text:
        if text not in SIZE_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown size {text!r}: use one of {', '.join(SIZE_NAMES)} or MIN,MAX in mm"
            )
        return text
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size range {text!r} must be two numbers in mm, e.g. 5,12"
        ) from None
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low <= high):
        raise argparse.ArgumentTypeError(f"size range {text!r} must satisfy 0 < MIN <= MAX (mm)")
    return (low, high)


def parse_count(text: str) -> int | tuple[int, int]:
    """``--count``: ``N`` or an inclusive ``MIN,MAX`` range of lesion counts."""
    parts = text.strip().split(",")
    try:
        values = [int(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"count {text!r} must be a whole number or MIN,MAX, e.g. 3 or 1,4"
        ) from None
    if len(values) == 1 and values[0] >= 0:
        return values[0]
    if len(values) == 2 and 0 <= values[0] <= values[1]:
        return (values[0], values[1])
    raise argparse.ArgumentTypeError(
        f"count {text!r} must be N >= 0 or MIN,MAX with 0 <= MIN <= MAX"
    )


def format_count(count: int | tuple[int, int]) -> str:
    """A count as it is typed on the command line (``3`` or ``1,3``)."""
    return f"{count[0]},{count[1]}" if isinstance(count, tuple) else str(count)


def parse_seed(text: str) -> int:
    """``--seed``: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} must be a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be >= 0, got {value}")
    return value


def parse_positive_int(text: str) -> int:
    """``--variants``, ``--workers``: a whole number >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_positive_seconds(text: str) -> float:
    """``--scheduler-timeout``: a number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (np.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text}")
    return value


def parse_non_negative_mm(text: str) -> float:
    """``--margin-mm``, ``--min-diameter-mm``: a finite number of mm >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of mm") from None
    if not (np.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number of mm >= 0, got {text}")
    return value


def add_synthesis_options(
    parser: argparse.ArgumentParser, *, count_default: int | tuple[int, int]
) -> None:
    """Add ``--size``, ``--count``, ``--phenotype``, ``--phase``; ``SynthesisOptions.from_args``
    reads them."""
    parser.add_argument(
        "--size",
        type=parse_size,
        default="mix",
        metavar="tiny|small|medium|large|mix|MIN,MAX",
        help="lesion size class, 'mix' (real size statistics), or an equivalent-diameter range "
        "in mm (default: mix)",
    )
    parser.add_argument(
        "--count",
        type=parse_count,
        default=count_default,
        metavar="N|MIN,MAX",
        help=f"number of lesions or an inclusive range (default: {format_count(count_default)})",
    )
    parser.add_argument(
        "--phenotype",
        default="mix",
        metavar="NAME|mix|diverse",
        help="hypodense, isodense, hyperdense, rim-enhancing, necrotic; mix (realistic: 92.5%% "
        "hypodense, 1.5%% iso- or hyperdense) or diverse (a deliberately varied mix) (default: mix)",
    )
    parser.add_argument(
        "--phase",
        choices=PHASES,
        default="auto",
        help="the scans' contrast phase, which sets how dark lesions are; auto estimates it from "
        "the liver's median HU (below 80 HU unenhanced, else portal-venous) (default: auto)",
    )


def add_method_options(parser: argparse.ArgumentParser) -> None:
    """Add ``--method``, ``--model``, ``--sampling-steps`` (the diffusion synthesiser), ``--bank``
    (copy-paste) and ``--quality-gate`` (any method)."""
    parser.add_argument(
        "--method",
        choices=("heuristic", "diffusion", "copy-paste"),
        default="heuristic",
        help="heuristic texture model, a trained diffusion model (--model), or real lesions pasted from a "
             "lesion bank (--bank) (default: heuristic)",
    )
    parser.add_argument(
        "--bank", help="copy-paste lesion bank folder (tumorsynth bank build)"
    )
    parser.add_argument(
        "--model", help="diffusion model folder (config.json + weights.safetensors)"
    )
    parser.add_argument(
        "--sampling-steps",
        type=parse_positive_int,
        help="diffusion sampling steps (default: the model's, 10)",
    )
    parser.add_argument(
        "--quality-gate", metavar="GATE_JSON",
        help="redraw lesions that this quality gate scores as unrealistic, at most 5 draws each (train one "
             "with 'tumorsynth realism --save-gate'; see docs/realism.md)",
    )
