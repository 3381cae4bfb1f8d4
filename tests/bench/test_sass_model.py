"""bench/sass_model.py: control-bit decoding, the main-loop finder and the scheduler model, on
words taken from a real sm_90 listing and on small synthetic loops whose timing is known."""
import pytest

from bench import sass_model as sm


def control_word(stall=1, write=None, read=None, waits=(), reuse=0):
    """The second 64-bit word of an instruction with these control bits (yield set)."""
    bits = (stall | 1 << 4 | (7 if write is None else write) << 5
            | (7 if read is None else read) << 8
            | sum(1 << w for w in waits) << 11 | reuse << 17)
    return bits << 41


def listing(*instructions, start=0x100):
    """A cuobjdump-style listing of (text, control word) pairs, 16 bytes apart."""
    lines = []
    for i, (text, word) in enumerate(instructions):
        lines.append(f"        /*{start + 16 * i:04x}*/   {text} ;   /* 0x0000000000000000 */")
        lines.append(f"                                  /* 0x{word:016x} */")
    return "\n".join(lines)


def test_control_bits_of_real_sm90_words():
    # "FFMA R54, R31.reuse, R42, R54": back to back, no scoreboard, operand a reused.
    assert sm.decode_control(0x040fe20000000036) == (1, None, None, ())
    assert (0x040fe20000000036 >> 41) >> 17 & 0xF == 1
    # "I2F.RP R7, R8" (variable latency): sets write scoreboard 3.
    assert sm.decode_control(0x000ee20000209400) == (1, 3, None, ())
    # "BAR.SYNC.DEFER_BLOCKING 0x0": 6 cycles before the warp's next issue.
    assert sm.decode_control(0x000fec0000010000)[0] == 6


def test_encoder_round_trip():
    assert sm.decode_control(control_word(5, 2, 4, (0, 3))) == (5, 2, 4, (0, 3))


def test_parse_and_find_the_fma_loop():
    text = listing(
        ("IADD3 R1, R1, 0x1, RZ", control_word()),
        ("@P0 BRA 0x100", control_word(5)),                      # a loop without FMAs
        ("@P1 LDG.E.CONSTANT R2, desc[UR4][R4.64]", control_word(1, write=0)),
        ("FFMA R3, R2, R2, R3", control_word(1, waits=(0,))),
        ("FFMA R5, R2, R2, R5", control_word(1)),
        ("@!P2 BRA 0x120", control_word(5)),
    )
    instructions = sm.parse_sass(text)
    assert [i.opcode for i in instructions] == ["IADD3", "BRA", "LDG", "FFMA", "FFMA", "BRA"]
    loop = sm.main_loop(instructions)
    assert [i.address for i in loop] == [0x120, 0x130, 0x140, 0x150]
    s = sm.summarize(loop)
    assert (s.instructions, s.fmas, s.global_loads, s.branches) == (4, 2, (0,), 0)
    assert s.static_stall_cycles == 1 + 1 + 1 + 5


def test_a_tensor_core_loop_wins_over_a_longer_fma_loop():
    text = listing(
        ("HGMMA.64x64x16.F32 R24, gdesc[UR4], R24", control_word()),
        ("@P0 BRA 0x100", control_word(5)),                      # the main loop: one wgmma
        *[(f"FFMA R{i}, R1, R2, R{i}", control_word()) for i in range(10, 14)],
        ("@P1 BRA 0x120", control_word(5)),                      # the epilogue: four FFMAs
    )
    loop = sm.main_loop(sm.parse_sass(text))
    assert [i.opcode for i in loop] == ["HGMMA", "BRA"]
    assert sm.summarize(loop).fmas == 1


def test_no_fma_loop_is_an_error():
    text = listing(("IADD3 R1, R1, 0x1, RZ", control_word()), ("BRA 0x100", control_word()))
    with pytest.raises(ValueError, match="no loop"):
        sm.main_loop(sm.parse_sass(text))


def loop_of(*instructions):
    return sm.main_loop(sm.parse_sass(listing(*instructions, ("BRA 0x100", control_word()))))


def test_model_is_issue_bound_on_independent_fmas():
    loop = loop_of(*[(f"FFMA R{i}, R1, R2, R{i}", control_word()) for i in range(10, 20)])
    assert sm.model_cycles(loop, 1) == pytest.approx(11)      # 10 FMAs + the branch
    assert sm.model_cycles(loop, 2) == pytest.approx(22)      # one issue per cycle, shared


def test_model_exposes_a_load_that_one_warp_cannot_hide_and_two_warps_share():
    loop = loop_of(("LDG.E R2, desc[UR4][R4.64]", control_word(write=0)),
                   ("FFMA R3, R2, R2, R3", control_word(waits=(0,))))
    latency = sm.LATENCY["LDG"]
    one = sm.model_cycles(loop, 1)
    two = sm.model_cycles(loop, 2)
    assert one == pytest.approx(latency + 2, abs=2)          # the wait is the whole iteration
    assert two == pytest.approx(one, abs=3)                  # both warps wait at once
    assert sm.model_cycles(loop, 1, latency={"LDG": 100}) == pytest.approx(102, abs=2)


def test_model_barrier_waits_for_every_warp():
    loop = loop_of(("FFMA R3, R1, R1, R3", control_word()),
                   ("BAR.SYNC.DEFER_BLOCKING 0x0", control_word()))
    # per iteration: 2 warps issue FFMA + BAR (4 slots), then the release costs BARRIER_CYCLES;
    # the branch after it issues for both warps
    cycles = sm.model_cycles(loop, 2)
    assert sm.BARRIER_CYCLES < cycles < sm.BARRIER_CYCLES + 10
