// Shared-memory collectives for the tensor-parallel ranks of one worker group on one host
// (ADR 0018). Every rank maps the same POSIX shared-memory segment:
//
//   header (4 KiB): magic, group size, slot size, the group epoch, one cache line per rank
//                   {seq, joinedEpoch, pid}
//   slots:          [2 parities][size ranks][slotFloats] float32
//
// Every collective is a sequence of "ops". Op k of an epoch: a rank writes its payload into
// slot[k % 2][rank], publishes seq[rank] = k + 1 (release; futex wake), then waits until every
// rank's seq reaches k + 1 and reads the slots. Because a rank can only start op k + 2 after
// every rank published k + 2 (i.e. finished reading op k), two parities are enough: one
// barrier per op. All-reduce sums the slots in rank order, so every rank gets bit-identical
// results. Broadcast is an op where only rank 0's slot carries data.
//
// Failure: a wait gives up when the group epoch changes (the leader restarted the group), when
// the peer's pid no longer exists (kill -9: detected within ~1 ms) or at the deadline (a stalled
// rank). The leader (rank 0) bumps the epoch to (re)form the group; a rank joins an epoch by
// zeroing its seq and then publishing joinedEpoch. Waits only count a peer's seq once it has
// joined the waiter's epoch, so counters of an older epoch are never mistaken for progress.
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>

#include "napi-args.h"

namespace kiln {
namespace {

constexpr uint32_t kMagic = 0x6b746e31;  // "ktn1"
constexpr int kMaxRanks = 16;
constexpr size_t kHeaderBytes = 4096;

struct alignas(64) RankCell {
  std::atomic<uint32_t> seq;
  std::atomic<uint32_t> joinedEpoch;
  std::atomic<int32_t> pid;
};

struct Header {
  uint32_t magic;
  uint32_t size;
  uint32_t slotFloats;
  alignas(64) std::atomic<uint32_t> epoch;
  RankCell ranks[kMaxRanks];
};
static_assert(sizeof(Header) <= kHeaderBytes, "header fits its page");

struct Group {
  std::string name;
  int rank = 0;
  int size = 1;
  uint32_t slotFloats = 0;
  size_t bytes = 0;
  Header* header = nullptr;
  float* slots = nullptr;
  uint32_t epoch = 0;      // the epoch this rank takes part in (0: none, after a failure)
  uint32_t lastEpoch = 0;  // the last epoch joined or seen at open: only a newer one is joined
  uint32_t op = 0;     // ops completed in this epoch
  bool isPublished = false;  // op's payload written and seq published (a resumable wait)
};

enum WaitResult { kOk = 0, kTimeout = 1, kEpoch = 2, kDead = 3 };

double nowMs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void futexWait(std::atomic<uint32_t>* addr, uint32_t expected, long timeoutNs) {
  timespec ts{0, timeoutNs};
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futexWake(std::atomic<uint32_t>* addr) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), FUTEX_WAKE, INT32_MAX, nullptr, nullptr,
          0);
}

bool isPidGone(int32_t pid) { return pid > 0 && kill(pid, 0) == -1 && errno == ESRCH; }

float* slotOf(Group* g, uint32_t parity, int rank) {
  return g->slots + (static_cast<size_t>(parity) * g->size + rank) * g->slotFloats;
}

// Waits until `rank` has joined g's epoch and published seq >= target.
WaitResult waitFor(Group* g, int rank, uint32_t target, double deadline) {
  RankCell& cell = g->header->ranks[rank];
  for (int spins = 0;; spins++) {
    uint32_t seq = cell.seq.load(std::memory_order_acquire);
    if (cell.joinedEpoch.load(std::memory_order_acquire) == g->epoch && seq >= target) return kOk;
    if (g->header->epoch.load(std::memory_order_acquire) != g->epoch) return kEpoch;
    if (spins < 2000) continue;
    if ((spins & 63) == 0 && isPidGone(cell.pid.load(std::memory_order_relaxed))) return kDead;
    if (deadline > 0 && nowMs() > deadline) return kTimeout;
    futexWait(&cell.seq, seq, 1000000);  // 1 ms: epoch and liveness are re-checked often
  }
}

// Publishes this rank's arrival at the current op (its payload is written already).
void publish(Group* g) {
  RankCell& cell = g->header->ranks[g->rank];
  cell.seq.store(g->op + 1, std::memory_order_release);
  futexWake(&cell.seq);
  g->isPublished = true;
}

// Waits for every other rank at the current op; returns the first failure with its rank.
WaitResult waitAll(Group* g, double deadline, int* failedRank) {
  for (int r = 0; r < g->size; r++) {
    if (r == g->rank) continue;
    WaitResult res = waitFor(g, r, g->op + 1, deadline);
    if (res != kOk) {
      *failedRank = r;
      return res;
    }
  }
  return kOk;
}

Group* groupArg(const Napi::CallbackInfo& info, size_t i) {
  if (!info[i].IsExternal()) throw Napi::TypeError::New(info.Env(), "group must be a handle");
  Group* g = info[i].As<Napi::External<Group>>().Data();
  if (g->header == nullptr) throw Napi::Error::New(info.Env(), "the group is closed");
  return g;
}

void throwWait(const Napi::Env& env, Group* g, WaitResult res, int rank) {
  const char* why = res == kEpoch    ? "the group was restarted (epoch changed)"
                    : res == kDead   ? "its process is gone"
                                     : "it did not arrive before the deadline";
  std::string msg = "tensor-parallel rank " + std::to_string(rank) + " of group " + g->name +
                    " lost: " + why;
  g->isPublished = false;
  g->epoch = 0;  // out of the group until the next join
  Napi::Error err = Napi::Error::New(env, msg);
  err.Set("code", Napi::String::New(env, "WORKER_LOST"));
  throw err;
}

void closeGroup(Group* g) {
  if (g->header != nullptr) munmap(g->header, g->bytes);
  g->header = nullptr;
}

// open(name, rank, size, slotFloats) → handle. Rank 0 creates (or re-initialises) the segment.
Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int rank = static_cast<int>(dimArg(info, 1, "rank"));
  int size = static_cast<int>(dimArg(info, 2, "size"));
  uint32_t slotFloats = static_cast<uint32_t>(dimArg(info, 3, "slotFloats"));
  if (size < 1 || size > kMaxRanks || rank >= size || slotFloats < 1024) {
    throw Napi::RangeError::New(env, "bad group shape (size 1..16, rank < size, slot ≥ 1024)");
  }
  size_t bytes = kHeaderBytes + static_cast<size_t>(2) * size * slotFloats * sizeof(float);
  int fd = shm_open(name.c_str(), O_RDWR | (rank == 0 ? O_CREAT : 0), 0600);
  if (fd < 0) {
    if (errno == ENOENT) return env.Null();  // the leader has not created it yet
    throw Napi::Error::New(env, "shm_open " + name + ": " + strerror(errno));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || (static_cast<size_t>(st.st_size) != bytes && rank != 0)) {
    close(fd);
    return env.Null();  // not (yet) sized by the leader
  }
  if (rank == 0 && static_cast<size_t>(st.st_size) != bytes && ftruncate(fd, bytes) != 0) {
    close(fd);
    throw Napi::Error::New(env, "ftruncate " + name + ": " + strerror(errno));
  }
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) throw Napi::Error::New(env, "mmap " + name + ": " + strerror(errno));
  auto* g = new Group();
  g->name = name;
  g->rank = rank;
  g->size = size;
  g->slotFloats = slotFloats;
  g->bytes = bytes;
  g->header = static_cast<Header*>(mem);
  g->slots = reinterpret_cast<float*>(static_cast<char*>(mem) + kHeaderBytes);
  Header* h = g->header;
  if (rank == 0 && (h->magic != kMagic || h->size != static_cast<uint32_t>(size) ||
                    h->slotFloats != slotFloats)) {
    h->size = size;
    h->slotFloats = slotFloats;
    h->magic = kMagic;
  } else if (h->magic != kMagic || h->size != static_cast<uint32_t>(size) ||
             h->slotFloats != slotFloats) {
    closeGroup(g);
    delete g;
    throw Napi::Error::New(env, "segment " + name + " has another group shape");
  }
  h->ranks[rank].joinedEpoch.store(0, std::memory_order_release);
  h->ranks[rank].pid.store(getpid(), std::memory_order_release);
  g->lastEpoch = h->epoch.load(std::memory_order_acquire);
  return Napi::External<Group>::New(env, g, [](Napi::Env, Group* gr) {
    closeGroup(gr);
    delete gr;
  });
}

// Rank 0: starts a new epoch and waits until every rank joined it. → true, or false at the
// deadline (the group stays incomplete; call again).
Napi::Value Form(const Napi::CallbackInfo& info) {
  Group* g = groupArg(info, 0);
  double deadline = nowMs() + info[1].As<Napi::Number>().DoubleValue();
  Header* h = g->header;
  uint32_t epoch = h->epoch.load(std::memory_order_acquire) + 1;
  if (epoch == 0) epoch = 1;
  h->ranks[0].seq.store(0, std::memory_order_relaxed);
  h->ranks[0].joinedEpoch.store(epoch, std::memory_order_release);
  h->epoch.store(epoch, std::memory_order_release);
  for (int r = 0; r < g->size; r++) futexWake(&h->ranks[r].seq);  // idle ranks notice at once
  g->epoch = epoch;
  g->lastEpoch = epoch;
  g->op = 0;
  g->isPublished = false;
  for (int r = 1; r < g->size; r++) {
    while (h->ranks[r].joinedEpoch.load(std::memory_order_acquire) != epoch) {
      if (nowMs() > deadline || h->epoch.load() != epoch) {
        g->epoch = 0;
        return Napi::Boolean::New(info.Env(), false);
      }
      usleep(500);
    }
  }
  return Napi::Boolean::New(info.Env(), true);
}

// Ranks > 0: joins the current epoch when it is newer than the last one joined (or the one
// current when this rank opened the segment: a restarted rank waits for the leader to form a
// new epoch, never joins one mid-way). → the epoch taken part in (0: none).
Napi::Value Join(const Napi::CallbackInfo& info) {
  Group* g = groupArg(info, 0);
  Header* h = g->header;
  uint32_t epoch = h->epoch.load(std::memory_order_acquire);
  if (epoch != 0 && epoch != g->lastEpoch) {
    h->ranks[g->rank].seq.store(0, std::memory_order_relaxed);
    h->ranks[g->rank].joinedEpoch.store(epoch, std::memory_order_release);
    g->epoch = epoch;
    g->lastEpoch = epoch;
    g->op = 0;
    g->isPublished = false;
  }
  return Napi::Number::New(info.Env(), g->epoch);
}

// allReduce(group, buf, n, timeoutMs): buf[0..n) ← Σ over ranks, in rank order, chunk by chunk.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group* g = groupArg(info, 0);
  Napi::Float32Array buf = float32Arg(info, 1, "buf");
  int64_t n = dimArg(info, 2, "n");
  requireLen(env, buf, n, "buf");
  double deadline = nowMs() + info[3].As<Napi::Number>().DoubleValue();
  if (g->epoch == 0) throw Napi::Error::New(env, "tensor-parallel group " + g->name + " not formed");
  float* data = buf.Data();
  for (int64_t off = 0; off < n; off += g->slotFloats) {
    int64_t len = std::min<int64_t>(g->slotFloats, n - off);
    uint32_t parity = g->op & 1;
    std::memcpy(slotOf(g, parity, g->rank), data + off, len * sizeof(float));
    publish(g);
    int failed = 0;
    WaitResult res = waitAll(g, deadline, &failed);
    if (res != kOk) throwWait(env, g, res, failed);
    float* out = data + off;
    std::memcpy(out, slotOf(g, parity, 0), len * sizeof(float));
    for (int r = 1; r < g->size; r++) {
      const float* src = slotOf(g, parity, r);
      for (int64_t i = 0; i < len; i++) out[i] += src[i];
    }
    g->op++;
    g->isPublished = false;
  }
  return env.Undefined();
}

// broadcast(group, bytes, len, timeoutMs): one op. Rank 0 sends bytes[0..len) (≤ slot bytes
// − 4) and returns len. Other ranks receive into bytes and return the length, or −1 when
// nothing arrived before the timeout (call again: the wait resumes where it was).
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group* g = groupArg(info, 0);
  Napi::Uint8Array bytes = info[1].As<Napi::Uint8Array>();
  int64_t len = dimArg(info, 2, "len");
  double timeoutMs = info[3].As<Napi::Number>().DoubleValue();
  double deadline = nowMs() + timeoutMs;
  size_t capacity = static_cast<size_t>(g->slotFloats) * sizeof(float) - 4;
  if (g->epoch == 0) throw Napi::Error::New(env, "tensor-parallel group " + g->name + " not formed");
  uint32_t parity = g->op & 1;
  auto* slot = reinterpret_cast<uint8_t*>(slotOf(g, parity, 0));
  if (!g->isPublished) {
    if (g->rank == 0) {
      if (static_cast<size_t>(len) > capacity || static_cast<size_t>(len) > bytes.ByteLength()) {
        throw Napi::RangeError::New(env, "broadcast payload exceeds the slot");
      }
      uint32_t len32 = static_cast<uint32_t>(len);
      std::memcpy(slot, &len32, 4);
      std::memcpy(slot + 4, bytes.Data(), len);
    }
    publish(g);
  }
  if (g->rank == 0) {
    int failed = 0;
    WaitResult res = waitAll(g, deadline, &failed);
    if (res != kOk) throwWait(env, g, res, failed);
  } else {
    WaitResult res = waitFor(g, 0, g->op + 1, deadline);
    if (res == kTimeout) return Napi::Number::New(env, -1);
    if (res != kOk) throwWait(env, g, res, 0);
    uint32_t len32 = 0;
    std::memcpy(&len32, slot, 4);
    if (len32 > bytes.ByteLength()) throw Napi::RangeError::New(env, "broadcast buffer too small");
    std::memcpy(bytes.Data(), slot + 4, len32);
    len = len32;
  }
  g->op++;
  g->isPublished = false;
  return Napi::Number::New(env, static_cast<double>(len));
}

// status(group) → [{ pid, isAlive, isJoined }] per rank, as this rank sees the segment.
Napi::Value Status(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group* g = groupArg(info, 0);
  Header* h = g->header;
  uint32_t epoch = h->epoch.load(std::memory_order_acquire);
  Napi::Array out = Napi::Array::New(env, g->size);
  for (int r = 0; r < g->size; r++) {
    int32_t pid = h->ranks[r].pid.load(std::memory_order_acquire);
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", pid);
    o.Set("isAlive", pid > 0 && !isPidGone(pid));
    o.Set("isJoined", epoch != 0 && h->ranks[r].joinedEpoch.load() == epoch);
    out.Set(r, o);
  }
  return out;
}

// peek(name) → status of the segment called name without joining it (null when it does not
// exist yet): what a leader's health check reads from outside its compute thread.
Napi::Value Peek(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  int fd = shm_open(name.c_str(), O_RDONLY, 0);
  if (fd < 0) return env.Null();
  void* mem = mmap(nullptr, kHeaderBytes, PROT_READ, MAP_SHARED, fd, 0);
  close(fd);
  if (mem == MAP_FAILED) return env.Null();
  Header* h = static_cast<Header*>(mem);
  if (h->magic != kMagic || h->size > kMaxRanks) {
    munmap(mem, kHeaderBytes);
    return env.Null();
  }
  uint32_t epoch = h->epoch.load(std::memory_order_acquire);
  Napi::Array out = Napi::Array::New(env, h->size);
  for (uint32_t r = 0; r < h->size; r++) {
    int32_t pid = h->ranks[r].pid.load(std::memory_order_acquire);
    Napi::Object o = Napi::Object::New(env);
    o.Set("pid", pid);
    o.Set("isAlive", pid > 0 && !isPidGone(pid));
    o.Set("isJoined", epoch != 0 && h->ranks[r].joinedEpoch.load() == epoch);
    out.Set(r, o);
  }
  munmap(mem, kHeaderBytes);
  return out;
}

// close(group, unlink): unmaps; rank 0 may also remove the segment's name.
Napi::Value Close(const Napi::CallbackInfo& info) {
  Group* g = groupArg(info, 0);
  bool isUnlink = info[1].ToBoolean().Value();
  g->header->ranks[g->rank].pid.store(0, std::memory_order_release);
  if (isUnlink) shm_unlink(g->name.c_str());
  closeGroup(g);
  return info.Env().Undefined();
}

}  // namespace

void registerShmCollective(Napi::Env env, Napi::Object exports) {
  Napi::Object shm = Napi::Object::New(env);
  shm.Set("open", Napi::Function::New(env, Open, "open"));
  shm.Set("form", Napi::Function::New(env, Form, "form"));
  shm.Set("join", Napi::Function::New(env, Join, "join"));
  shm.Set("allReduce", Napi::Function::New(env, AllReduce, "allReduce"));
  shm.Set("broadcast", Napi::Function::New(env, Broadcast, "broadcast"));
  shm.Set("status", Napi::Function::New(env, Status, "status"));
  shm.Set("peek", Napi::Function::New(env, Peek, "peek"));
  shm.Set("close", Napi::Function::New(env, Close, "close"));
  exports.Set("shm", shm);
}

}  // namespace kiln
