// Warp collectives: each lane publishes its call (kind, mask, operands) and blocks; when every
// non-exited lane of the mask has arrived, the last one (or the scheduler, if the last missing
// lane returned instead) computes every participant's result and releases them. Shuffles follow
// the PTX shfl.sync rules for the lane, width/segment and clamp operands; a lane that reads from
// a lane outside the participating set gets 0xFF bytes (PTX: "unpredictable").
#include <cstdio>
#include <cstring>

#include "runtime_internal.h"

namespace simt {
namespace {

enum class Completion { Incomplete, Completed, Mismatch };

inline uint32_t bit(unsigned lane) { return 1u << lane; }

Fiber* lane_fiber(unsigned warp, unsigned lane) { return &g.fibers[warp * 32 + lane]; }

void* token_of(Fiber* f) { return &f->tsan_tokens[f->collective_seq % kTokenRing]; }

void* completion_token(unsigned warp, unsigned completion) {
  return &g.warp_tokens[static_cast<size_t>(warp) * kTokenRing + completion % kTokenRing];
}

// PTX ISA, shfl.sync: b is the lane or offset operand, c packs the clamp value (bits 0-4) and
// the segment mask (bits 8-12).
unsigned shuffle_source(int kind, unsigned lane, int b, int c) {
  const int l = static_cast<int>(lane);
  const int bval = b & 31;
  const int cval = c & 31;
  const int segmask = (c >> 8) & 31;
  const int max_lane = (l & segmask) | (cval & ~segmask);
  const int min_lane = l & segmask;
  int j;
  bool in_range;
  switch (kind) {
    case SIMT_SHFL_UP: j = l - bval; in_range = j >= max_lane; break;
    case SIMT_SHFL_DOWN: j = l + bval; in_range = j <= max_lane; break;
    case SIMT_SHFL_BFLY: j = l ^ bval; in_range = j <= max_lane; break;
    default: j = min_lane | (bval & ~segmask); in_range = j <= max_lane; break;
  }
  return static_cast<unsigned>(in_range ? j : l);
}

template <class T>
T read_as(const void* p) {
  T v;
  memcpy(&v, p, sizeof v);
  return v;
}

uint32_t reduce(int kind, bool is_signed, unsigned warp, uint32_t group) {
  bool first = true;
  uint32_t acc = 0;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(group & bit(l))) continue;
    const uint32_t v = read_as<uint32_t>(lane_fiber(warp, l)->call.in);
    if (first) {
      acc = v;
      first = false;
      continue;
    }
    switch (kind) {
      case SIMT_REDUCE_ADD: acc += v; break;
      case SIMT_REDUCE_AND: acc &= v; break;
      case SIMT_REDUCE_OR: acc |= v; break;
      case SIMT_REDUCE_XOR: acc ^= v; break;
      case SIMT_REDUCE_MIN:
        if (is_signed ? static_cast<int32_t>(v) < static_cast<int32_t>(acc) : v < acc) acc = v;
        break;
      case SIMT_REDUCE_MAX:
        if (is_signed ? static_cast<int32_t>(v) > static_cast<int32_t>(acc) : v > acc) acc = v;
        break;
    }
  }
  return acc;
}

void compute(unsigned warp, uint32_t group, int kind) {
  uint32_t votes = 0;
  for (unsigned l = 0; l < 32; ++l)
    if ((group & bit(l)) && (kind == SIMT_VOTE_BALLOT || kind == SIMT_VOTE_ANY || kind == SIMT_VOTE_ALL) &&
        read_as<int>(lane_fiber(warp, l)->call.in) != 0)
      votes |= bit(l);
  const Fiber* first = nullptr;
  for (unsigned l = 0; l < 32 && !first; ++l)
    if (group & bit(l)) first = lane_fiber(warp, l);
  bool all_match = true;
  if (kind == SIMT_MATCH_ALL)
    for (unsigned l = 0; l < 32; ++l)
      if ((group & bit(l)) && memcmp(lane_fiber(warp, l)->call.in, first->call.in, first->call.size) != 0)
        all_match = false;
  uint32_t reduced = 0;
  if (kind >= SIMT_REDUCE_ADD && kind <= SIMT_REDUCE_XOR)
    reduced = reduce(kind, first->call.b != 0, warp, group);

  for (unsigned l = 0; l < 32; ++l) {
    if (!(group & bit(l))) continue;
    const simt_warp_call& c = lane_fiber(warp, l)->call;
    switch (kind) {
      case SIMT_WARP_SYNC: break;
      case SIMT_SHFL_IDX:
      case SIMT_SHFL_UP:
      case SIMT_SHFL_DOWN:
      case SIMT_SHFL_BFLY: {
        const unsigned src = shuffle_source(kind, l, c.b, c.c);
        if (group & bit(src)) memcpy(c.out, lane_fiber(warp, src)->call.in, c.size);
        else memset(c.out, 0xff, c.size);
        break;
      }
      case SIMT_VOTE_BALLOT: memcpy(c.out, &votes, sizeof votes); break;
      case SIMT_VOTE_ANY: {
        const unsigned r = votes != 0;
        memcpy(c.out, &r, sizeof r);
        break;
      }
      case SIMT_VOTE_ALL: {
        const unsigned r = votes == group;
        memcpy(c.out, &r, sizeof r);
        break;
      }
      case SIMT_MATCH_ANY: {
        uint32_t same = 0;
        for (unsigned q = 0; q < 32; ++q)
          if ((group & bit(q)) && memcmp(lane_fiber(warp, q)->call.in, c.in, c.size) == 0)
            same |= bit(q);
        memcpy(c.out, &same, sizeof same);
        break;
      }
      case SIMT_MATCH_ALL: {
        const struct { uint32_t mask; int32_t pred; } r = {all_match ? group : 0u, all_match ? 1 : 0};
        memcpy(c.out, &r, sizeof r);
        break;
      }
      case SIMT_ALLGATHER: {
        char* out = static_cast<char*>(c.out);
        for (unsigned q = 0; q < 32; ++q) {
          if (group & bit(q)) memcpy(out + q * c.size, lane_fiber(warp, q)->call.in, c.size);
          else memset(out + q * c.size, 0xff, c.size);
        }
        break;
      }
      default: memcpy(c.out, &reduced, sizeof reduced); break;  // reductions
    }
  }
}

void report_mismatch(unsigned warp, const Fiber* a, const Fiber* b, const Fiber* culprit) {
  set_error(SIMT_FAULT, culprit,
            "lanes of warp %u in block (%u,%u,%u) of %s disagree on a warp collective: lane %u "
            "calls %s with mask 0x%08x (%u-byte value) at %s:%d, lane %u calls %s with mask "
            "0x%08x (%u-byte value) at %s:%d",
            warp, g.block.x, g.block.y, g.block.z, g.kernel, a->lane, warp_kind_name(a->call.kind),
            a->call.mask, a->call.size, a->call.file, a->call.line, b->lane,
            warp_kind_name(b->call.kind), b->call.mask, b->call.size, b->call.file, b->call.line);
  set_error_source(b->call.file, b->call.line);
  g.aborted = true;
}

// `trigger` waits in a collective; completes it if every lane it needs has arrived.
Completion try_complete(unsigned warp, Fiber* trigger, const Fiber* culprit) {
  const uint32_t group = trigger->call.mask & ~g.warp_exited[warp];
  for (unsigned l = 0; l < 32; ++l)
    if ((group & bit(l)) && lane_fiber(warp, l)->state != State::AtWarp) return Completion::Incomplete;
  for (unsigned l = 0; l < 32; ++l) {
    if (!(group & bit(l))) continue;
    const Fiber* p = lane_fiber(warp, l);
    if (p->call.kind != trigger->call.kind || p->call.mask != trigger->call.mask ||
        p->call.size != trigger->call.size) {
      report_mismatch(warp, p, trigger, culprit);
      return Completion::Mismatch;
    }
  }
  // Happens-before for TSan: every participant's past -> this computation -> every participant.
  for (unsigned l = 0; l < 32; ++l)
    if (group & bit(l)) tsan_acquire(token_of(lane_fiber(warp, l)));
  compute(warp, group, trigger->call.kind);
  const unsigned completion = ++g.warp_completions[warp];
  tsan_release(completion_token(warp, completion));
  for (unsigned l = 0; l < 32; ++l) {
    if (!(group & bit(l))) continue;
    Fiber* p = lane_fiber(warp, l);
    p->state = State::Ready;
    p->warp_completion = completion;
  }
  return Completion::Completed;
}

}  // namespace

const char* warp_kind_name(int kind) {
  static const char* const names[SIMT_WARP_KIND_COUNT] = {
      "__syncwarp", "__shfl_sync", "__shfl_up_sync", "__shfl_down_sync", "__shfl_xor_sync",
      "__ballot_sync", "__any_sync", "__all_sync", "__match_any_sync", "__match_all_sync",
      "__reduce_add_sync", "__reduce_min_sync", "__reduce_max_sync", "__reduce_and_sync",
      "__reduce_or_sync", "__reduce_xor_sync", "simt_warp_allgather"};
  return kind >= 0 && kind < SIMT_WARP_KIND_COUNT ? names[kind] : "a warp collective";
}

void on_lane_exit(Fiber* f) {
  const unsigned warp = f->warp;
  g.warp_exited[warp] |= bit(f->lane);
  for (unsigned l = 0; l < 32; ++l) {
    if (g.warp_exited[warp] & bit(l)) continue;
    Fiber* p = lane_fiber(warp, l);
    if (p->state != State::AtWarp || !(p->call.mask & bit(f->lane))) continue;
    if (try_complete(warp, p, p) == Completion::Mismatch) return;
  }
}

void describe_blocked_warps(char* out, size_t capacity) {
  size_t used = 0;
  out[0] = '\0';
  unsigned described = 0;
  for (unsigned w = 0; w < g.nwarps && described < 4; ++w) {
    const Fiber* waiting = nullptr;
    uint32_t waiting_lanes = 0, at_barrier = 0, elsewhere = 0;
    for (unsigned l = 0; l < 32; ++l) {
      if (g.warp_exited[w] & bit(l)) continue;
      const Fiber* p = lane_fiber(w, l);
      if (p->state == State::AtBarrier) at_barrier |= bit(l);
      if (p->state != State::AtWarp) continue;
      if (!waiting) waiting = p;
      if (p->call.kind == waiting->call.kind && p->call.mask == waiting->call.mask)
        waiting_lanes |= bit(l);
      else
        elsewhere |= bit(l);
    }
    if (!waiting) continue;
    const uint32_t mask = waiting->call.mask;
    const int n = snprintf(
        out + used, capacity - used,
        " warp %u: lanes 0x%08x wait in %s with mask 0x%08x at %s:%d; of that mask, lanes 0x%08x "
        "returned, 0x%08x wait at a barrier, 0x%08x wait in another collective.",
        w, waiting_lanes, warp_kind_name(waiting->call.kind), mask, waiting->call.file,
        waiting->call.line, mask & g.warp_exited[w], mask & at_barrier, mask & elsewhere);
    if (n < 0 || static_cast<size_t>(n) >= capacity - used) break;
    used += static_cast<size_t>(n);
    if (described == 0 && g.arrived == 0) set_error_source(waiting->call.file, waiting->call.line);
    ++described;
  }
}

}  // namespace simt

using namespace simt;

extern "C" void simt_warp_op(const simt_warp_call* call) {
  Fiber* f = require_fiber(warp_kind_name(call->kind));
  if (!(call->mask & bit(f->lane))) {
    set_error(SIMT_FAULT, f,
              "lane %u of warp %u in block (%u,%u,%u) of %s calls %s at %s:%d with mask 0x%08x, "
              "which does not include the lane itself",
              f->lane, f->warp, g.block.x, g.block.y, g.block.z, g.kernel,
              warp_kind_name(call->kind), call->file, call->line, call->mask);
    set_error_source(call->file, call->line);
    fault_in_fiber(f);
  }
  f->call = *call;
  f->state = State::AtWarp;
  ++f->collective_seq;
  tsan_release(token_of(f));
  switch (try_complete(f->warp, f, f)) {
    case Completion::Completed:
      f->state = State::Ready;
      return;
    case Completion::Mismatch:
      fault_in_fiber(f);
    case Completion::Incomplete:
      break;
  }
  park(f, false);
  tsan_acquire(completion_token(f->warp, f->warp_completion));
}
