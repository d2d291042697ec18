"""Results pinned by hash (tests/pinned_outputs.py): a refactoring must not change them."""

import json

import pinned_outputs
import pytest

RECORDED = json.loads(pinned_outputs.PINS_PATH.read_text())


@pytest.fixture(scope="module")
def computed():
    if pinned_outputs.package_versions() != RECORDED["versions"]:
        pytest.skip(f"pins were recorded with {RECORDED['versions']}; floating-point results may differ "
                    f"in the last bit with {pinned_outputs.package_versions()}")
    return pinned_outputs.compute()


@pytest.mark.parametrize("name", sorted(RECORDED["pins"]))
def test_output_matches_its_pin(computed, name):
    if name in pinned_outputs.TORCH_KERNEL_PINS:
        recorded, here = RECORDED.get("torch_cpu_capability"), pinned_outputs.torch_cpu_capability()
        if recorded != here:
            pytest.skip(f"{name} was pinned with torch's {recorded} CPU kernels and this processor runs its {here} "
                        f"kernels, whose floating-point results differ in the last bits")
    assert computed[name] == RECORDED["pins"][name], f"{name} changed: rerun the pins only for an intended change"
