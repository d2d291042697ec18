"""The quality gate: its JSON file, its refusals, and ``quality_filter=`` during insertion."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from synth import insert_tumor, prepare_host
from synth.labels import Label
from synth.realism.classifier import LogisticModel
from synth.realism.compare import inserted_lesion
from synth.realism.features import FEATURE_VERSION
from synth.realism.gate import QualityGate, as_gate, train_gate
from synth.realism.report import CLASSIFIER_FEATURES


def toy_gate(threshold: float, *, max_tries: int = 5) -> QualityGate:
    """A logistic gate on the classifier features with small random weights: lesion features
    (tens of HU, fractions) give log-odds within a few units, scores strictly inside (0, 1)."""
    rng = np.random.default_rng(0)
    n = len(CLASSIFIER_FEATURES)
    model = LogisticModel(mean=np.zeros(n), scale=np.full(n, 100.0), fill=np.zeros(n),
                          weights=rng.normal(size=n), bias=0.0)
    return QualityGate(model, CLASSIFIER_FEATURES, threshold, max_tries=max_tries)


def new_components(result, h) -> int:
    from synth.components import lesion_components

    return lesion_components((result.label == Label.TUMOR) & (h.label != Label.TUMOR))[1]


def test_gate_round_trips_through_its_json_file(tmp_path):
    gate = toy_gate(0.4)
    path = gate.save(tmp_path / "gate.json")
    document = json.loads(path.read_text())
    assert document["feature_version"] == FEATURE_VERSION
    assert document["feature_names"] == list(CLASSIFIER_FEATURES)
    loaded = QualityGate.load(path)
    assert loaded.threshold == gate.threshold and loaded.feature_names == gate.feature_names
    rows = np.random.default_rng(1).normal(size=(5, len(CLASSIFIER_FEATURES)))
    np.testing.assert_allclose(loaded.model.decision(rows), gate.model.decision(rows))
    assert as_gate(str(path)).threshold == gate.threshold


def test_gate_of_another_feature_version_is_refused_naming_both(tmp_path):
    path = toy_gate(0.4).save(tmp_path / "gate.json")
    document = json.loads(path.read_text())
    document["feature_version"] = FEATURE_VERSION - 1
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"version {FEATURE_VERSION - 1}.*version {FEATURE_VERSION}"):
        QualityGate.load(path)


@pytest.mark.parametrize("content, message", [("", "empty"), ('{"format": "tumorsynth-qu', "not valid JSON"),
                                              ("[1, 2]", "not a tumorsynth quality gate")])
def test_empty_corrupt_or_foreign_gate_files_are_refused(tmp_path, content, message):
    path = tmp_path / "gate.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        QualityGate.load(path)


def test_gate_with_mismatched_model_is_corrupt(tmp_path):
    path = toy_gate(0.4).save(tmp_path / "gate.json")
    document = json.loads(path.read_text())
    document["feature_names"] = document["feature_names"][:3]
    path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match="corrupt"):
        QualityGate.load(path)


def test_bad_quality_filter_arguments(host):
    with pytest.raises(TypeError, match="quality_filter"):
        insert_tumor(host.volume, host.label, spacing=host.spacing, seed=0, quality_filter=3)
    with pytest.raises(ValueError, match="threshold"):
        toy_gate(1.5)


@pytest.mark.parametrize("size", ["small", (22.0, 26.0)])  # 22-26 mm: with mass effect
def test_unpassable_gate_tries_max_tries_and_still_inserts_the_best(host, size):
    gate = toy_gate(1.0, max_tries=3)
    scan = prepare_host(host.volume, host.label, spacing=host.spacing)
    result = scan.insert(size=size, count=2, seed=4, quality_filter=gate)
    assert all(lesion.mass_effect == (size != "small") for lesion in result.lesions)
    assert [lesion.quality_tries for lesion in result.lesions] == [3, 3]
    assert all(0.0 <= lesion.quality_score < 1.0 for lesion in result.lesions)
    # Rejected draws were undone: exactly the two kept lesions are new, nothing outside their boxes changed.
    assert new_components(result, host) == 2
    outside = np.ones(host.label.shape, dtype=bool)
    for box in result.changed_boxes:
        outside[box] = False
    np.testing.assert_array_equal(result.volume[outside], host.volume[outside])
    np.testing.assert_array_equal(result.label[outside], host.label[outside])
    # The kept draw is the best-scoring one: its score is measured again on the output, where no
    # later lesion changed the crop it was scored on (the last lesion's always qualifies).
    checked = 0
    for index, lesion in enumerate(result.lesions):
        crop, _ = inserted_lesion(result.label, lesion, host.spacing)
        later = [tuple(slice(a, b) for a, b in other.bbox) for other in result.lesions[index + 1:]]
        if any(all(b.start < c.stop and c.start < b.stop for b, c in zip(box, crop)) for box in later):
            continue
        assert gate.score_inserted(result.volume, result.label, lesion, host.spacing) == pytest.approx(
            lesion.quality_score, abs=1e-9)
        checked += 1
    assert checked >= 1


def test_permissive_gate_takes_the_first_draw_like_no_gate(host):
    scan = prepare_host(host.volume, host.label, spacing=host.spacing)
    gated = scan.insert(size="small", count=2, seed=5, quality_filter=toy_gate(0.0))
    plain = scan.insert(size="small", count=2, seed=5)
    assert [lesion.quality_tries for lesion in gated.lesions] == [1, 1]
    assert [lesion.quality_tries for lesion in plain.lesions] == [0, 0]
    assert plain.lesions[0].quality_score is None
    assert "quality_tries" not in plain.lesions[0].to_dict()  # records without a gate read as before
    assert gated.lesions[0].to_dict()["quality_tries"] == 1
    np.testing.assert_array_equal(gated.volume, plain.volume)
    np.testing.assert_array_equal(gated.label, plain.label)


def test_gated_insertion_is_reproducible_with_a_seed(host, tmp_path):
    path = toy_gate(0.6, max_tries=4).save(tmp_path / "gate.json")
    first = insert_tumor(host.volume, host.label, spacing=host.spacing, size="small", count=2, seed=9,
                         quality_filter=path)
    again = insert_tumor(host.volume, host.label, spacing=host.spacing, size="small", count=2, seed=9,
                         quality_filter=str(path))
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])


def test_train_gate_passes_the_asked_share_of_real_lesions():
    rng = np.random.default_rng(2)
    n = 60
    table = {name: rng.normal(size=2 * n) for name in CLASSIFIER_FEATURES}
    table["contrast_hu"][:n] += 1.5  # real lesions differ in one feature
    table["source"] = np.array(["real"] * n + ["synthetic"] * n, dtype=object)
    table["case"] = np.array(["a"] * (2 * n), dtype=object)
    table["center_mm"] = rng.uniform(0, 100, size=(2 * n, 3))
    gate = train_gate(table, CLASSIFIER_FEATURES, classifier="logistic", real_pass=0.9)
    assert gate.info["real_pass_out_of_fold"] == pytest.approx(0.9, abs=0.03)
    assert gate.info["synthetic_pass_out_of_fold"] < 0.8  # it does reject some synthetic lesions
    with pytest.raises(ValueError, match="real_pass"):
        train_gate(table, CLASSIFIER_FEATURES, real_pass=1.0)
    assert dataclasses.replace(gate, threshold=0.5).threshold == 0.5
