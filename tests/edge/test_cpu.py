"""CPU provenance: what a figure records about the machine that made it."""

from __future__ import annotations

import platform

import pytest

from edge._cpu import ISA_FLAGS, cpu_info, cpu_line

X86 = "processor : 0\nmodel name : AMD EPYC 7B13\nflags : fpu sse2 avx2 fma avx512f avx512_vnni\n"
ARM = (
    "processor : 0\nFeatures : fp asimd evtstrm aes asimddp\n"
    "CPU implementer : 0x41\nCPU part : 0xd0c\n"
)


class TestCpuInfo:
    def test_x86_flags_in_fixed_order(self):
        info = cpu_info(X86)
        assert info["model"] == "AMD EPYC 7B13"
        assert info["flags"] == ["avx2", "fma", "avx512f", "avx512_vnni"]

    def test_aarch64_names_neon_and_dot_product(self):
        info = cpu_info(ARM)
        assert info["flags"] == ["neon", "asimddp"]
        assert info["model"] == "ARM implementer 0x41 part 0xd0c"

    @pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc/cpuinfo")
    def test_this_machine(self):
        info = cpu_info()
        assert info["arch"] == platform.machine() and info["cores"] >= 1
        assert set(info["flags"]) <= set(ISA_FLAGS) and info["model"]
        assert info["model"] in cpu_line(info)
