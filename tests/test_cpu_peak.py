"""The CPU peak estimate of `edge-sr bench` reads the CPU family/model, not only the flags: Zen 4 lists the
AVX-512 flags but executes 512-bit FMAs as two 256-bit halves (32 FP32 FLOP/cycle/core, as its 2 x 256-bit
FMA pipes give), Zen 5 has full 512-bit datapaths (64). Figures from AMD's and Intel's optimisation manuals:
FLOP/cycle = FMA pipes x lanes x 2."""

from __future__ import annotations

import pytest

FLAGS_AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi1 bmi2"
FLAGS_AVX512 = FLAGS_AVX2 + " avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni avx512_bf16"


def cpuinfo(vendor, family, model, name, flags, mhz="2600.000"):
    block = (f"processor\t: {{i}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\n"
             f"model name\t: {name}\nstepping\t: 1\ncpu MHz\t\t: {mhz}\nflags\t\t: {flags}\n")
    return "\n".join(block.format(i=i) for i in range(2)) + "\n"


CASES = {
    # vendor, family, model, name, flags -> FP32 FLOP/cycle/core
    "zen4-epyc-genoa": (("AuthenticAMD", 25, 17, "AMD EPYC 9654 96-Core Processor", FLAGS_AVX512), 32),
    "zen4-masked-vm": (("AuthenticAMD", 25, 1, "AMD EPYC", FLAGS_AVX512 + " avx512_vp2intersect"), 32),
    "zen5-epyc-turin": (("AuthenticAMD", 26, 2, "AMD EPYC 9755 128-Core Processor",
                         FLAGS_AVX512 + " avx512_vp2intersect"), 64),
    "zen3-epyc-milan": (("AuthenticAMD", 25, 1, "AMD EPYC 7763 64-Core Processor", FLAGS_AVX2), 32),
    "zen2-epyc-rome": (("AuthenticAMD", 23, 49, "AMD EPYC 7742 64-Core Processor", FLAGS_AVX2), 32),
    "zen1-epyc-naples": (("AuthenticAMD", 23, 1, "AMD EPYC 7601 32-Core Processor", FLAGS_AVX2), 16),
    "intel-skylake-sp": (("GenuineIntel", 6, 85, "Intel(R) Xeon(R) Platinum 8180", FLAGS_AVX512), 64),
    "intel-haswell": (("GenuineIntel", 6, 63, "Intel(R) Xeon(R) CPU E5-2699 v3", FLAGS_AVX2), 32),
}


@pytest.mark.parametrize("case", list(CASES))
def test_flops_per_cycle_from_cpuinfo_text(tmp_path, case):
    from edge_sr.bench import _cpuinfo, flops_per_cycle

    args, want = CASES[case]
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo(*args))
    info = _cpuinfo(tmp_path)
    assert info["cpu family"] == str(args[1]) and info["model"] == str(args[2])  # the first block, parsed
    fpc, unit = flops_per_cycle(info, "x86_64")
    assert fpc == want, (case, unit)


def test_zen4_peak_is_half_what_the_flags_alone_suggest(tmp_path):
    """The whole estimate for the dev machine's CPU class: 2 cores x 32 x 2.6 GHz = 166.4 GFLOP/s, not 332."""
    from edge_sr.bench import device_info

    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/cpuinfo").write_text(cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC", FLAGS_AVX512, mhz="2600.000"))
    d = device_info(2, root=tmp_path)
    used = d["threads"]  # min(2, this machine's physical cores)
    assert d["flops_per_cycle_per_core"] == 32 and "Zen 4" in d["vector_unit"]
    assert d["peak_gflops_estimate"] == pytest.approx(used * 32 * 2.6, abs=0.1)


def test_arm_and_unknown():
    from edge_sr.bench import flops_per_cycle

    pi5 = {"processor": "0", "Features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
           "CPU implementer": "0x41", "CPU part": "0xd0b"}
    assert flops_per_cycle(pi5, "aarch64")[0] == 16  # Cortex-A76: 2 x 128-bit FMA
    assert flops_per_cycle({"vendor_id": "AuthenticAMD", "cpu family": "not a number"}, "x86_64")[0] is None


def test_int8_isa_classes():
    from edge_sr.bench import int8_isa

    assert int8_isa({"flags": FLAGS_AVX512}) == "avx512_vnni"
    assert int8_isa({"flags": FLAGS_AVX2 + " avx_vnni"}) == "avx_vnni"
    assert int8_isa({"flags": FLAGS_AVX2}) == "avx2"
    assert int8_isa({"Features": "fp asimd"}) == "neon"
    assert int8_isa({}) == "other"
