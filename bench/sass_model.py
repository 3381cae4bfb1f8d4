"""A kernel's main loop as the GPU issues it, read from its SASS: what each instruction's control
bits say (stall cycles, scoreboards), where the loop's global loads sit, and a small model of
one SM sub-partition (scheduler) issuing that loop for several warps.

Used by ``python -m bench.sass_schedule`` (offline: NVRTC + cuobjdump, no GPU) to predict what a
change to a main loop does before a GPU is at hand (kernels/conv/NOTES.md "Two blocks per SM for
the large SIMT tile"). The model is deliberately small, and it is a lower bound:
  - one instruction issued per cycle per scheduler, by the next ready warp (round robin);
  - a warp waits its instruction's stall count (control bits) before its next issue, and for
    the scoreboards its next instruction waits on; a scoreboard set by a variable-latency
    instruction clears after LATENCY cycles (shared, global, constant loads);
  - BAR.SYNC releases when every modelled warp has arrived (the other schedulers are assumed to
    run the same warps in step), BARRIER_CYCLES later.
It knows nothing of register-bank conflicts, shared-memory bank conflicts, L2 queueing or the
skew between schedulers. On the H100 it under-estimated the fp32 128 x 128 implicit GEMM's
k-tile by ~25% (1631 modelled cycles for 2 warps per scheduler, 2110 measured).

Control bits (Volta and later; the upper 23 bits of an instruction's second 64-bit word):
stall 4 bits, yield 1, write scoreboard 3 (7: none), read scoreboard 3 (7: none), wait mask 6,
reuse 4 (the layout of "Dissecting the NVIDIA Volta GPU architecture via microbenchmarking",
Jia et al. 2018, unchanged on Ampere and Hopper).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Assumed cycles until a variable-latency result is usable (H100 microbenchmark ballparks: shared
# memory ~30, an L2 hit ~250-300, DRAM ~500-600; the weights and most activations hit L2).
LATENCY = {"LDS": 33, "LDSM": 33, "LDG": 450, "LDC": 12, "S2R": 25, "ULDC": 12}
DEFAULT_LATENCY = 20
READ_SCOREBOARD_CYCLES = 8      # a read scoreboard clears once the sources are read
BARRIER_CYCLES = 20
FMA_OPCODES = ("FFMA", "DFMA", "HFMA2", "HMMA", "HGMMA")
# Tensor-core instructions: a loop holding any is a tensor-core kernel's main loop, however many
# FFMAs another loop has (the epilogue's activations: sigmoid and tanh unrolled over a thread's
# outputs outnumber the 16-32 HMMA of a k-tile).
MMA_OPCODES = ("HMMA", "HGMMA")

_LINE = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;\s*/\* (0x[0-9a-f]{16}) \*/")
_WORD = re.compile(r"/\* (0x[0-9a-f]{16}) \*/")
_BRANCH = re.compile(r"\bBRA\s+(?:`?\()?(0x[0-9a-f]+)")


@dataclass(frozen=True)
class Instruction:
    address: int
    text: str           # e.g. "@P0 LDG.E.CONSTANT R13, desc[UR14][R40.64]"
    stall: int
    write_scoreboard: int | None
    read_scoreboard: int | None
    waits: tuple[int, ...]

    @property
    def opcode(self) -> str:
        """The mnemonic without predicate or modifiers ("LDG" of "@P0 LDG.E.CONSTANT ...")."""
        words = self.text.split()
        word = words[1] if words[0].startswith("@") and len(words) > 1 else words[0]
        return word.split(".")[0]


def decode_control(word: int) -> tuple[int, int | None, int | None, tuple[int, ...]]:
    """(stall, write scoreboard, read scoreboard, waited scoreboards) of an instruction's second
    64-bit word."""
    bits = word >> 41
    stall = bits & 0xF
    write = (bits >> 5) & 7
    read = (bits >> 8) & 7
    mask = (bits >> 11) & 0x3F
    return (stall, None if write == 7 else write, None if read == 7 else read,
            tuple(b for b in range(6) if mask >> b & 1))


def parse_sass(text: str) -> list[Instruction]:
    """The instructions of a cuobjdump -sass listing (one function), in address order."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        m = _LINE.search(line)
        if not m or i + 1 >= len(lines):
            continue
        second = _WORD.search(lines[i + 1])
        if not second:
            continue
        stall, write, read, waits = decode_control(int(second.group(1), 16))
        found.append(Instruction(int(m.group(1), 16), m.group(2).strip(), stall, write, read,
                                 waits))
    return found


def main_loop(instructions: list[Instruction]) -> list[Instruction]:
    """The loop (a backward branch's target up to the branch) holding the most tensor-core
    instructions, or where there are none the most FMA-class ones: a GEMM kernel's main loop."""
    best, best_count = None, (0, 0)
    for j, ins in enumerate(instructions):
        m = _BRANCH.search(ins.text)
        if not m or int(m.group(1), 16) > ins.address:
            continue
        start = int(m.group(1), 16)
        body = [x for x in instructions[:j + 1] if x.address >= start]
        count = (sum(x.opcode in MMA_OPCODES for x in body),
                 sum(x.opcode in FMA_OPCODES for x in body))
        if count[1] and count > best_count:
            best, best_count = body, count
    if best is None:
        raise ValueError("no loop with FMA instructions in this listing")
    return best


@dataclass(frozen=True)
class LoopSummary:
    instructions: int
    fmas: int
    static_stall_cycles: int        # the sum of the stall counts: one warp's floor
    global_loads: tuple[int, ...]   # positions of the LDGs in the loop
    shared_stores: tuple[int, ...]
    barriers: tuple[int, ...]
    branches: int                   # branches inside the loop besides the backward one

    @property
    def fma_share(self) -> float:
        return self.fmas / self.instructions


def summarize(loop: list[Instruction]) -> LoopSummary:
    def where(*opcodes):
        return tuple(i for i, x in enumerate(loop) if x.opcode in opcodes)
    return LoopSummary(len(loop), len(where(*FMA_OPCODES)), sum(x.stall for x in loop),
                       where("LDG"), where("STS"), where("BAR"), len(where("BRA")) - 1)


def model_cycles(loop: list[Instruction], warps: int, iterations: int = 12,
                 latency: dict[str, int] | None = None) -> float:
    """Modelled cycles per loop iteration of all ``warps`` on one scheduler (steady state: the
    iterations after the first third). The loop is taken as straight-line code, every branch
    inside it not taken."""
    lat = dict(LATENCY, **(latency or {}))
    n = len(loop)
    pc = [0] * warps
    done = [0] * warps
    ready = [0] * warps
    scoreboard = [[0] * 6 for _ in range(warps)]
    at_barrier = [False] * warps
    finished_at: dict[int, int] = {}
    cycle, last = 0, warps - 1

    def step(w: int) -> None:      # warp w past its current instruction
        pc[w] += 1
        if pc[w] == n:
            pc[w], done[w] = 0, done[w] + 1
            finished_at.setdefault(done[w], cycle)

    while min(done) < iterations:
        waiting = [w for w in range(warps) if at_barrier[w]]
        if waiting and all(at_barrier[w] or done[w] >= iterations for w in range(warps)):
            for w in waiting:
                at_barrier[w] = False
                ready[w] = cycle + BARRIER_CYCLES
                step(w)
        for k in range(warps):
            w = (last + 1 + k) % warps
            if done[w] >= iterations or at_barrier[w] or ready[w] > cycle:
                continue
            ins = loop[pc[w]]
            if any(scoreboard[w][s] > cycle for s in ins.waits):
                continue
            last = w
            if ins.opcode == "BAR":
                at_barrier[w] = True
                break
            if ins.write_scoreboard is not None:
                scoreboard[w][ins.write_scoreboard] = cycle + lat.get(ins.opcode, DEFAULT_LATENCY)
            if ins.read_scoreboard is not None:
                scoreboard[w][ins.read_scoreboard] = max(scoreboard[w][ins.read_scoreboard],
                                                         cycle + READ_SCOREBOARD_CYCLES)
            ready[w] = cycle + max(1, ins.stall)
            step(w)
            break
        cycle += 1
    first = max(1, iterations // 3)
    return (finished_at[iterations] - finished_at[first]) / (iterations - first)
