"""realism.hosts: thick-slice versions of a labelled case, and healthy host folders."""

from __future__ import annotations

import numpy as np
import pytest

from synth.cases import Case
from synth.labels import Label
from synth.realism.compare import extract_real_lesions
from synth.realism.hosts import read_host, slice_factor, thick_slice_case


def test_thick_slice_case_averages_slices_and_votes_labels(lits117):
    case = Case("lits", lits117.volume, lits117.label, lits117.spacing, np.diag([*lits117.spacing, 1.0]))
    thick = thick_slice_case(case, thick_mm=2.8)
    k = 2
    assert thick.spacing == pytest.approx((lits117.spacing[0], lits117.spacing[1], k * lits117.spacing[2]))
    assert thick.image.shape == (*lits117.volume.shape[:2], lits117.volume.shape[2] // k)
    np.testing.assert_allclose(thick.image[:, :, 3], lits117.volume[:, :, 6:8].astype(np.float32).mean(axis=2))
    tumour_share = (lits117.label[:, :, 6:8] == Label.TUMOR).mean(axis=2)
    np.testing.assert_array_equal(thick.label[:, :, 3] == Label.TUMOR, tumour_share >= 0.5)
    # The tumour volume survives the vote within a few per cent, and real lesions now have thick-slice edges.
    thin_ml = np.count_nonzero(lits117.label == Label.TUMOR) * np.prod(lits117.spacing)
    thick_ml = np.count_nonzero(thick.label == Label.TUMOR) * np.prod(thick.spacing)
    assert thick_ml == pytest.approx(thin_ml, rel=0.1)
    assert len(extract_real_lesions(thick.image, thick.label, thick.spacing)) > 20
    assert thick.affine[2, 2] == pytest.approx(k * lits117.spacing[2])
    assert not np.shares_memory(thick.image, lits117.volume)


def test_slice_factor_refuses_thinner_slices():
    assert slice_factor(1.4, 2.8) == 2 and slice_factor(1.0, 5.0) == 5 and slice_factor(1.4, 2.0) == 2
    with pytest.raises(ValueError, match="thicker"):
        slice_factor(3.0, 2.0)


def test_read_host_reads_a_ct_and_mask_folder(shared_data, tmp_path):
    [host] = read_host(shared_data / "totalseg_example")
    assert host.case_id == "totalseg_example" and (host.label == Label.LIVER).any()
    assert host.spacing == pytest.approx((3.0, 3.0, 3.0), rel=0.05)
    assert [c.case_id for c in read_host(shared_data / "lits117")] == ["volume-117"]
    with pytest.raises(ValueError, match="exactly one CT"):
        read_host(tmp_path)
