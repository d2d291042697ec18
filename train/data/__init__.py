"""Data for the trainer: loaders, preprocessing, splits, healthy hosts, sample fetch.

Importing this package never imports torch, MONAI or diffusers; cc3d, tqdm and the phantom are
imported by the functions that use them.
"""

from synth.cases import Case, CaseFiles, find_cases

from .cache import default_cache_dir
from .checks import CaseProblem, check_case, find_problems
from .fetch import FetchError, cached_lits117, fetch_lits117
from .hosts import healthy_hosts, phantom_hosts
from .mrc import MrcVolume, read_mrc
from .preprocess import Preprocessing, crop_to_liver, load_cases, preprocess_case, resample
from .splits import AxialFold, Split, axial_folds, split_axial, split_cases

__all__ = [
    "AxialFold",
    "Case",
    "CaseFiles",
    "CaseProblem",
    "FetchError",
    "MrcVolume",
    "Preprocessing",
    "Split",
    "cached_lits117",
    "axial_folds",
    "check_case",
    "crop_to_liver",
    "default_cache_dir",
    "fetch_lits117",
    "find_cases",
    "find_problems",
    "healthy_hosts",
    "load_cases",
    "phantom_hosts",
    "preprocess_case",
    "read_mrc",
    "resample",
    "split_axial",
    "split_cases",
]
